-- Runs once, when the PostgreSQL volume is first initialised (files in
-- /docker-entrypoint-initdb.d are skipped on an existing data directory).
-- One database per owner: each program migrates its own schema at start-up.
CREATE DATABASE posts;   -- post-service (and its outbox)
CREATE DATABASE images;  -- image-service (and its outbox)
CREATE DATABASE relay;   -- outbox-relay's dead_letters
