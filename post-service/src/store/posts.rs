use crate::domain::{ImageStatus, NewPost, Post, PostImage};
use chrono::{DateTime, Utc};
use proto::{ImageId, PostId, UserId, Variant};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

pub async fn insert_post(
    tx: &mut Transaction<'_, Postgres>,
    id: PostId,
    author: &UserId,
    post: &NewPost,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO posts (id, author_id, title, body) VALUES ($1, $2, $3, $4)")
        .bind(id.0)
        .bind(&author.0)
        .bind(&post.title)
        .bind(&post.body)
        .execute(&mut **tx)
        .await?;
    let ids: Vec<Uuid> = post.image_ids.iter().map(|i| i.0).collect();
    sqlx::query(
        "INSERT INTO post_images (post_id, image_id, position)
         SELECT $1, image_id, (ordinality - 1)::int FROM unnest($2::uuid[]) WITH ORDINALITY AS t(image_id, ordinality)",
    )
    .bind(id.0)
    .bind(&ids)
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
    image_id: Uuid,
    status: String,
    variants: serde_json::Value,
    error: Option<String>,
}

pub async fn get(pool: &PgPool, id: PostId) -> Result<Option<Post>, sqlx::Error> {
    let Some(row): Option<PostRow> = sqlx::query_as(
        "SELECT id, author_id, title, body, version, created_at, updated_at FROM posts WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let images: Vec<ImageRow> = sqlx::query_as(
        "SELECT image_id, status, variants, error FROM post_images WHERE post_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?;
    let images = images
        .into_iter()
        .map(|r| {
            Ok(PostImage {
                image_id: ImageId(r.image_id),
                status: ImageStatus::parse(&r.status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("bad status {}", r.status).into())
                })?,
                variants: serde_json::from_value(r.variants)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                error: r.error,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(Post {
        id: PostId(row.id),
        author: UserId(row.author_id),
        title: row.title,
        body: row.body,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        images,
    }))
}

/// Records what the image service reported for one image of one post.
/// Returns whether the post still has that image.
pub async fn record_image_result(
    tx: &mut Transaction<'_, Postgres>,
    post_id: PostId,
    image_id: ImageId,
    status: ImageStatus,
    variants: &[Variant],
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let variants = serde_json::to_value(variants).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let updated = sqlx::query(
        "UPDATE post_images SET status = $3, variants = $4, error = $5
         WHERE post_id = $1 AND image_id = $2",
    )
    .bind(post_id.0)
    .bind(image_id.0)
    .bind(status.as_str())
    .bind(variants)
    .bind(error)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}
