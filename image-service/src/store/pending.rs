//! Presigned uploads awaiting `complete`.
use chrono::{DateTime, Utc};
use proto::{ImageId, UserId};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct PendingUpload {
    pub id: Uuid,
    pub uploader_id: String,
    pub object_key: String,
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    pool: &PgPool,
    id: ImageId,
    uploader: &UserId,
    key: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO pending_uploads (id, uploader_id, object_key, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id.0)
        .bind(&uploader.0)
        .bind(key)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// The caller's pending upload, locked.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
    uploader: &UserId,
) -> Result<Option<PendingUpload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, uploader_id, object_key, expires_at, completed_at FROM pending_uploads
         WHERE id = $1 AND uploader_id = $2 FOR UPDATE",
    )
    .bind(id.0)
    .bind(&uploader.0)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn mark_completed(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE pending_uploads SET completed_at = now() WHERE id = $1")
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Expired pending uploads, locked for the sweeper.
pub async fn lock_expired(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<PendingUpload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, uploader_id, object_key, expires_at, completed_at FROM pending_uploads
         WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

pub async fn delete(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM pending_uploads WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Staging keys still explained by a pending upload.
pub async fn keys(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT object_key FROM pending_uploads")
        .fetch_all(pool)
        .await
}
