-- `handled_at` records when the event was applied, not when its transaction
-- began: a consumer waiting on the aggregate's sequence lock applies an
-- event after its predecessor committed, though its transaction may have
-- begun first. With `clock_timestamp()` the inbox's time order is the order
-- of application (bench/faults checks it per aggregate).
ALTER TABLE inbox ALTER COLUMN handled_at SET DEFAULT clock_timestamp();
