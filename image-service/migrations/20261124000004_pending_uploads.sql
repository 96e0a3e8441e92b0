-- Presigned uploads: the row is committed before the client may write the
-- staging object `uploads/<id>`, so the object is always explained. After
-- `complete` the verified bytes are stored as the original of a new image;
-- the staging object is removed by the sweeper when the policy expired.
CREATE TABLE pending_uploads (
    id            UUID        PRIMARY KEY,
    uploader_id   TEXT        NOT NULL,
    object_key    TEXT        NOT NULL UNIQUE,
    expires_at    TIMESTAMPTZ NOT NULL,
    completed_at  TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX pending_uploads_expiry ON pending_uploads (expires_at);
