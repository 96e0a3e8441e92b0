-- One row per uploaded file. The row is committed before the original is
-- written to S3, so no object exists that this table does not know about.
CREATE TABLE images (
    id              UUID        PRIMARY KEY,
    uploader_id     TEXT        NOT NULL,
    state           TEXT        NOT NULL
        CHECK (state IN ('uploaded', 'assigned', 'attached', 'abandoned', 'deleted')),
    process_status  TEXT        NOT NULL
        CHECK (process_status IN ('pending', 'processing', 'ready', 'failed')),
    owner_type      TEXT,
    owner_id        UUID,
    content_type    TEXT        NOT NULL,
    width           INTEGER     NOT NULL CHECK (width > 0),
    height          INTEGER     NOT NULL CHECK (height > 0),
    bytes           BIGINT      NOT NULL CHECK (bytes > 0),
    original_key    TEXT        NOT NULL UNIQUE,
    variants        JSONB       NOT NULL DEFAULT '[]',
    placeholder     TEXT,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((owner_type IS NULL) = (owner_id IS NULL))
);

CREATE INDEX images_owner ON images (owner_type, owner_id) WHERE owner_id IS NOT NULL;
