-- Replays and discards of dead letters, and what replay needs to send the
-- message again exactly as it was.

-- The message's AMQP properties with their wire types (message id, type,
-- content type, delivery mode, typed headers), so a replay republishes the
-- same message; `headers` stays as the readable form.
ALTER TABLE dead_letters ADD COLUMN properties JSONB;
-- When the letter was replayed or discarded; retention counts from here.
ALTER TABLE dead_letters ADD COLUMN resolved_at TIMESTAMPTZ;

-- Every replay attempt and every discard, kept for audit. A replay attempt
-- is committed as `publishing` *before* the message is published, and
-- finished after the broker's confirm, so a replay killed in between leaves
-- a record of what may have been sent (`interrupted` once looked at again).
CREATE TABLE dead_letter_actions (
    id              BIGSERIAL   PRIMARY KEY,
    dead_letter_id  BIGINT      NOT NULL REFERENCES dead_letters (id) ON DELETE CASCADE,
    action          TEXT        NOT NULL CHECK (action IN ('replay', 'discard')),
    actor           TEXT        NOT NULL,
    reason          TEXT,
    outcome         TEXT        NOT NULL
        CHECK (outcome IN ('publishing', 'published', 'returned', 'failed', 'interrupted', 'discarded')),
    detail          TEXT,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ
);

CREATE INDEX dead_letter_actions_by_letter ON dead_letter_actions (dead_letter_id, id);
CREATE INDEX dead_letters_resolved ON dead_letters (resolved_at) WHERE status <> 'pending';
CREATE INDEX dead_letters_by_aggregate ON dead_letters (aggregate_id);
