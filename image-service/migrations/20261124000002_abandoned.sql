-- When an image was abandoned (dropped by an update, owner deleted); the
-- sweeper deletes abandoned files after a grace period.
ALTER TABLE images ADD COLUMN abandoned_at TIMESTAMPTZ;
CREATE INDEX images_abandoned ON images (abandoned_at) WHERE state = 'abandoned';
