-- The image's ThumbHash (base64) as reported by the image service.
ALTER TABLE post_images ADD COLUMN placeholder TEXT;
