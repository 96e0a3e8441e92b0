-- Responses to POST /v1/posts by (caller, Idempotency-Key), written in the
-- same transaction as the post, so a retry gets the first result and a
-- concurrent retry waits on the key's row instead of creating a second post.
CREATE TABLE idempotency_keys (
    user_id          TEXT        NOT NULL,
    key              TEXT        NOT NULL,
    request          JSONB       NOT NULL,
    response_status  SMALLINT,
    response_body    JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Keyset pagination walks posts newest first by id (UUIDv7, time-ordered).
CREATE INDEX posts_newest_first ON posts (id DESC);
