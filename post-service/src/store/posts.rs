use crate::domain::{ImageStatus, NewPost, Post, PostImage};
use chrono::{DateTime, Utc};
use proto::{EventId, ImageId, PostId, UserId, Variant};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

/// Inserts a post and its images (all `processing`) in one statement and
/// returns it as stored.
pub async fn insert_post(
    tx: &mut Transaction<'_, Postgres>,
    id: PostId,
    author: &UserId,
    post: &NewPost,
) -> Result<Post, sqlx::Error> {
    let ids: Vec<Uuid> = post.image_ids.iter().map(|i| i.0).collect();
    let (version, created_at, updated_at): (i64, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "WITH post AS (
             INSERT INTO posts (id, author_id, title, body) VALUES ($1, $2, $3, $4)
             RETURNING version, created_at, updated_at),
         images AS (
             INSERT INTO post_images (post_id, image_id, position, status, variants, error, placeholder)
             SELECT $1, t.image_id, (t.ordinality - 1)::int, 'processing', '[]'::jsonb, NULL, NULL
             FROM unnest($5::uuid[]) WITH ORDINALITY AS t(image_id, ordinality))
         SELECT version, created_at, updated_at FROM post",
    )
    .bind(id.0)
    .bind(&author.0)
    .bind(&post.title)
    .bind(&post.body)
    .bind(&ids)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Post {
        id,
        author: author.clone(),
        title: post.title.clone(),
        body: post.body.clone(),
        version,
        created_at,
        updated_at,
        images: post
            .image_ids
            .iter()
            .map(|&id| PostImage::processing(id))
            .collect(),
    })
}

/// Writes the image list in order (positions 0..n).
async fn insert_images(
    tx: &mut Transaction<'_, Postgres>,
    post: PostId,
    images: &[PostImage],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = images.iter().map(|i| i.image_id.0).collect();
    let statuses: Vec<&str> = images.iter().map(|i| i.status.as_str()).collect();
    let variants: Vec<serde_json::Value> = images
        .iter()
        .map(|i| serde_json::to_value(&i.variants).unwrap_or_default())
        .collect();
    let errors: Vec<Option<String>> = images.iter().map(|i| i.error.clone()).collect();
    let placeholders: Vec<Option<String>> = images.iter().map(|i| i.placeholder.clone()).collect();
    sqlx::query(
        "INSERT INTO post_images (post_id, image_id, position, status, variants, error, placeholder)
         SELECT $1, t.image_id, (t.ordinality - 1)::int, t.status, t.variants, t.error, t.placeholder
         FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::text[])
              WITH ORDINALITY AS t(image_id, status, variants, error, placeholder, ordinality)",
    )
    .bind(post.0)
    .bind(&ids)
    .bind(&statuses)
    .bind(&variants)
    .bind(&errors)
    .bind(&placeholders)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct PostRow {
    id: Uuid,
    author_id: String,
    title: String,
    body: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ImageRow {
    post_id: Uuid,
    image_id: Uuid,
    status: String,
    variants: serde_json::Value,
    error: Option<String>,
    placeholder: Option<String>,
}

impl TryFrom<ImageRow> for PostImage {
    type Error = sqlx::Error;

    fn try_from(r: ImageRow) -> Result<Self, sqlx::Error> {
        Ok(PostImage {
            image_id: ImageId(r.image_id),
            status: ImageStatus::parse(&r.status)
                .ok_or_else(|| sqlx::Error::Decode(format!("bad status {}", r.status).into()))?,
            variants: serde_json::from_value(r.variants)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            error: r.error,
            placeholder: r.placeholder,
        })
    }
}

const POST_COLUMNS: &str = "id, author_id, title, body, version, created_at, updated_at";

pub async fn get(pool: &PgPool, id: PostId) -> Result<Option<Post>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    read(&mut conn, id, false).await
}

/// Reads the post and locks its row until the transaction ends, so
/// concurrent changes of one post are serialised.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    id: PostId,
) -> Result<Option<Post>, sqlx::Error> {
    read(tx, id, true).await
}

async fn read(
    conn: &mut PgConnection,
    id: PostId,
    for_update: bool,
) -> Result<Option<Post>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row: Option<PostRow> = sqlx::query_as(&format!(
        "SELECT {POST_COLUMNS} FROM posts WHERE id = $1{lock}"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut posts = with_images(conn, vec![row]).await?;
    Ok(posts.pop())
}

/// A page of posts, newest first, strictly older than `before` when given.
pub async fn list(
    pool: &PgPool,
    limit: i64,
    before: Option<PostId>,
) -> Result<Vec<Post>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<PostRow> = sqlx::query_as(&format!(
        "SELECT {POST_COLUMNS} FROM posts
         WHERE $1::uuid IS NULL OR id < $1
         ORDER BY id DESC
         LIMIT $2"
    ))
    .bind(before.map(|b| b.0))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    with_images(&mut conn, rows).await
}

/// Loads the images of all `rows` in one query.
async fn with_images(
    conn: &mut PgConnection,
    rows: Vec<PostRow>,
) -> Result<Vec<Post>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let images: Vec<ImageRow> = sqlx::query_as(
        "SELECT post_id, image_id, status, variants, error, placeholder FROM post_images
         WHERE post_id = ANY($1) ORDER BY post_id, position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_post: HashMap<Uuid, Vec<PostImage>> = HashMap::new();
    for image in images {
        by_post
            .entry(image.post_id)
            .or_default()
            .push(image.try_into()?);
    }
    Ok(rows
        .into_iter()
        .map(|row| Post {
            images: by_post.remove(&row.id).unwrap_or_default(),
            id: PostId(row.id),
            author: UserId(row.author_id),
            title: row.title,
            body: row.body,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
        .collect())
}

/// Writes new text and bumps the version.
pub async fn update_text(
    tx: &mut Transaction<'_, Postgres>,
    id: PostId,
    title: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE posts SET title = $2, body = $3, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id.0)
    .bind(title)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the image list; images kept from the old list keep what the
/// image service reported about them, new ones start `processing`.
pub async fn replace_images(
    tx: &mut Transaction<'_, Postgres>,
    post: &Post,
    image_ids: &[ImageId],
) -> Result<(), sqlx::Error> {
    let mut old: HashMap<ImageId, PostImage> = post
        .images
        .iter()
        .map(|i| (i.image_id, i.clone()))
        .collect();
    let images: Vec<PostImage> = image_ids
        .iter()
        .map(|id| old.remove(id).unwrap_or_else(|| PostImage::processing(*id)))
        .collect();
    sqlx::query("DELETE FROM post_images WHERE post_id = $1")
        .bind(post.id.0)
        .execute(&mut **tx)
        .await?;
    insert_images(tx, post.id, &images).await
}

pub async fn delete(tx: &mut Transaction<'_, Postgres>, id: PostId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM posts WHERE id = $1")
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One `image.processed`, as the post service records it.
pub struct ImageResult<'a> {
    pub event_id: EventId,
    pub event_type: &'a str,
    /// The post that owns the image, if a post does.
    pub post: Option<PostId>,
    pub image_id: ImageId,
    pub status: ImageStatus,
    pub variants: &'a [Variant],
    pub error: Option<&'a str>,
    pub placeholder: Option<&'a str>,
}

/// What became of an [`ImageResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its event id was handled before: nothing changed.
    Duplicate,
    /// Recorded; `found` says whether the post still has the image.
    Applied { found: bool },
}

/// Records what the image service reported for one image of one post, once
/// per event: the inbox row and the image's new status commit together in
/// one statement (a data-modifying CTE; the update runs only if the inbox
/// row was new).
pub async fn record_image_result_once(
    pool: &PgPool,
    result: &ImageResult<'_>,
) -> Result<Recorded, sqlx::Error> {
    let variants =
        serde_json::to_value(result.variants).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let (recorded, found): (bool, bool) = sqlx::query_as(&format!(
        "WITH recorded AS ({inbox} RETURNING 1),
         updated AS (
             UPDATE post_images SET status = $5, variants = $6, error = $7,
                    placeholder = COALESCE($8, placeholder)
             WHERE post_id = $3 AND image_id = $4 AND EXISTS (SELECT 1 FROM recorded)
             RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM recorded), EXISTS (SELECT 1 FROM updated)",
        inbox = infra::inbox::INSERT
    ))
    .bind(result.event_id.0)
    .bind(result.event_type)
    .bind(result.post.map(|p| p.0))
    .bind(result.image_id.0)
    .bind(result.status.as_str())
    .bind(variants)
    .bind(result.error)
    .bind(result.placeholder)
    .fetch_one(pool)
    .await?;
    Ok(match recorded {
        false => Recorded::Duplicate,
        true => Recorded::Applied { found },
    })
}
