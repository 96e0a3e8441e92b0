-- Finds attached images whose processing stalled (a crash mid-way, or a
-- reprocess request whose worker died) so they can be resumed.
CREATE INDEX images_unfinished ON images (updated_at)
    WHERE state = 'attached' AND process_status IN ('pending', 'processing');
