CREATE TABLE posts (
    id          UUID        PRIMARY KEY,
    author_id   TEXT        NOT NULL,
    title       TEXT        NOT NULL,
    body        TEXT        NOT NULL,
    -- Grows by one per change; the ETag of the post.
    version     BIGINT      NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The post's images in order, with what the image service reported.
CREATE TABLE post_images (
    post_id   UUID    NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    image_id  UUID    NOT NULL,
    position  INTEGER NOT NULL CHECK (position >= 0),
    status    TEXT    NOT NULL DEFAULT 'processing'
        CHECK (status IN ('processing', 'ready', 'failed')),
    variants  JSONB   NOT NULL DEFAULT '[]',
    error     TEXT,
    PRIMARY KEY (post_id, image_id),
    UNIQUE (post_id, position)
);

CREATE INDEX post_images_image ON post_images (image_id);
