-- Every dead-lettered message, kept for SREs to query, replay or discard.
-- `dedup_key` (a hash of queue, headers and body) makes a redelivered DLQ
-- message land once.
CREATE TABLE dead_letters (
    id                    BIGSERIAL   PRIMARY KEY,
    dedup_key             TEXT        NOT NULL UNIQUE,
    queue                 TEXT        NOT NULL,
    message_id            TEXT,
    event_type            TEXT,
    aggregate_id          UUID,
    original_exchange     TEXT,
    original_routing_key  TEXT,
    headers               JSONB       NOT NULL,
    body                  BYTEA       NOT NULL,
    reason                TEXT        NOT NULL,
    fingerprint           TEXT        NOT NULL,
    attempts              INTEGER,
    consumer              TEXT,
    first_failed_at       TIMESTAMPTZ,
    last_failed_at        TIMESTAMPTZ,
    status                TEXT        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'replayed', 'discarded')),
    received_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_by_queue ON dead_letters (queue, received_at);
CREATE INDEX dead_letters_by_fingerprint ON dead_letters (fingerprint);
CREATE INDEX dead_letters_pending ON dead_letters (received_at) WHERE status = 'pending';
