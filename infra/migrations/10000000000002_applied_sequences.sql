-- Last event sequence applied per aggregate by this service's consumers:
-- events of one aggregate are applied in order, an early one waits (is
-- retried) until its predecessor was applied, a stale one is skipped.
CREATE TABLE applied_sequences (
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    UUID   NOT NULL,
    last_sequence   BIGINT NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);
