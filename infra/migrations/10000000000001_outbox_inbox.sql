-- Transactional outbox: rows are written in the business transaction and
-- published by the relay. `position` orders publication; `id` is the event id
-- consumers deduplicate on; `sequence` grows by one per aggregate.
CREATE TABLE outbox (
    position        BIGSERIAL PRIMARY KEY,
    id              UUID        NOT NULL UNIQUE,
    event_type      TEXT        NOT NULL,
    version         INTEGER     NOT NULL,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    UUID        NOT NULL,
    sequence        BIGINT      NOT NULL,
    data            JSONB       NOT NULL,
    traceparent     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

-- The relay's claim query reads only unpublished rows in position order; a
-- partial index keeps it off the (growing) published part of the table.
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Last sequence handed out per aggregate. The upsert's row lock serialises
-- concurrent writers of one aggregate, so sequences follow commit order.
CREATE TABLE outbox_sequences (
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    UUID   NOT NULL,
    last_sequence   BIGINT NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Inbox: ids of events already applied, written in the same transaction as
-- their effect, so a redelivered event has no second effect.
CREATE TABLE inbox (
    event_id    UUID        PRIMARY KEY,
    event_type  TEXT        NOT NULL,
    handled_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
