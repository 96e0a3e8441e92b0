-- The sweeper finds uploads never claimed within the TTL through this index.
CREATE INDEX images_unclaimed ON images (created_at) WHERE state = 'uploaded';
