use crate::domain::{FileState, ImageRecord, ProcessStatus};
use chrono::{DateTime, Utc};
use proto::{ImageId, Owner, UserId, Variant};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

const COLUMNS: &str = "id, uploader_id, state, process_status, owner_type, owner_id, content_type,
    width, height, bytes, original_key, variants, placeholder, attempts, last_error, created_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    uploader_id: String,
    state: String,
    process_status: String,
    owner_type: Option<String>,
    owner_id: Option<Uuid>,
    content_type: String,
    width: i32,
    height: i32,
    bytes: i64,
    original_key: String,
    variants: serde_json::Value,
    placeholder: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for ImageRecord {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let decode =
            |what: &str| sqlx::Error::Decode(format!("bad {what} in images row {}", row.id).into());
        Ok(ImageRecord {
            id: ImageId(row.id),
            uploader: UserId(row.uploader_id.clone()),
            state: FileState::parse(&row.state).ok_or_else(|| decode("state"))?,
            process_status: ProcessStatus::parse(&row.process_status)
                .ok_or_else(|| decode("process_status"))?,
            owner: ImageRecord::owner_from_columns(row.owner_type.clone(), row.owner_id),
            content_type: row.content_type.clone(),
            width: row.width as u32,
            height: row.height as u32,
            bytes: row.bytes as u64,
            original_key: row.original_key.clone(),
            variants: serde_json::from_value(row.variants.clone())
                .map_err(|_| decode("variants"))?,
            placeholder: row.placeholder.clone(),
            attempts: row.attempts,
            last_error: row.last_error.clone(),
            created_at: row.created_at,
        })
    }
}

/// A new upload, before its bytes are stored.
pub struct NewUpload<'a> {
    pub id: ImageId,
    pub uploader: &'a UserId,
    pub content_type: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub original_key: &'a str,
}

/// Records a new upload (one statement: no transaction of its own needed).
pub async fn insert_uploaded(
    db: impl sqlx::PgExecutor<'_>,
    upload: &NewUpload<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO images (id, uploader_id, state, process_status, content_type, width, height, bytes, original_key)
         VALUES ($1, $2, 'uploaded', 'pending', $3, $4, $5, $6, $7)",
    )
    .bind(upload.id.0)
    .bind(&upload.uploader.0)
    .bind(upload.content_type)
    .bind(upload.width as i32)
    .bind(upload.height as i32)
    .bind(upload.bytes as i64)
    .bind(upload.original_key)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the row of an upload whose bytes could not be stored.
pub async fn delete_unstored(pool: &PgPool, id: ImageId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM images WHERE id = $1 AND state = 'uploaded'")
        .bind(id.0)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: ImageId) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM images WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// Reads and locks one image for a state change.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM images WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// The change that attaches an image to post `$2`. Built (`ready`) and
/// in-progress (`processing`) images keep their status, so a re-attach never
/// starts a second build; `pending` and `failed` ones are (re)queued.
const ATTACH: &str = "SET state = 'attached', owner_type = 'post', owner_id = $2, abandoned_at = NULL,
    process_status = CASE WHEN process_status IN ('ready', 'processing') THEN process_status ELSE 'pending' END,
    updated_at = now()";

/// Attaches the image to `owner` (see [`ATTACH`]).
pub async fn attach(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
    owner: &Owner,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("UPDATE images {ATTACH} WHERE id = $1"))
        .bind(id.0)
        .bind(owner.id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Attaches an image no post holds (`uploaded`, `assigned` or
/// `abandoned`) that `uploader` uploaded, in one statement, and returns it
/// as attached. `None` when the image is missing, someone else's, deleted
/// or attached already: the caller then reads it under its lock to say why.
pub async fn attach_unclaimed(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
    owner: &Owner,
    uploader: &UserId,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE images {ATTACH}
         WHERE id = $1 AND uploader_id = $3 AND state IN ('uploaded', 'assigned', 'abandoned')
         RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(owner.id)
    .bind(&uploader.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// Abandons the images attached to `owner` that are not in `keep`.
/// Returns how many were abandoned.
pub async fn abandon_others(
    tx: &mut Transaction<'_, Postgres>,
    owner: &Owner,
    keep: &[ImageId],
) -> Result<u64, sqlx::Error> {
    let keep: Vec<Uuid> = keep.iter().map(|i| i.0).collect();
    let abandoned = sqlx::query(
        "UPDATE images SET state = 'abandoned', abandoned_at = now(), updated_at = now()
         WHERE owner_type = 'post' AND owner_id = $1 AND state = 'attached' AND NOT (id = ANY($2))",
    )
    .bind(owner.id)
    .bind(&keep)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(abandoned)
}

/// Abandons those of `ids` that are still unclaimed (`uploaded`/`assigned`).
pub async fn abandon_unclaimed(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[ImageId],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let abandoned = sqlx::query(
        "UPDATE images SET state = 'abandoned', abandoned_at = now(), updated_at = now()
         WHERE id = ANY($1) AND state IN ('uploaded', 'assigned')",
    )
    .bind(&ids)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(abandoned)
}

/// Conditions of the two sweep queries (`$1` seconds, `$2` limit); public
/// so a test can check their plans use the partial indexes.
pub const SWEEP_ABANDONED: &str =
    "state = 'abandoned' AND abandoned_at < now() - make_interval(secs => $1) ORDER BY abandoned_at LIMIT $2";
pub const SWEEP_UNCLAIMED: &str =
    "state = 'uploaded' AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2";

/// Files due for deletion: abandoned longer than `grace_secs`, or uploaded
/// and never claimed for `ttl_secs`. Locked (skipping rows another sweeper
/// holds) until the caller's transaction ends, so nothing re-attaches them
/// while their objects are deleted. Each half reads its own partial index.
pub async fn lock_sweepable(
    tx: &mut Transaction<'_, Postgres>,
    grace_secs: i64,
    ttl_secs: i64,
    limit: i64,
) -> Result<Vec<ImageRecord>, sqlx::Error> {
    let mut rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM images WHERE {SWEEP_ABANDONED} FOR UPDATE SKIP LOCKED"
    ))
    .bind(grace_secs as f64)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let left = limit - rows.len() as i64;
    if left > 0 {
        let unclaimed: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM images WHERE {SWEEP_UNCLAIMED} FOR UPDATE SKIP LOCKED"
        ))
        .bind(ttl_secs as f64)
        .bind(left)
        .fetch_all(&mut **tx)
        .await?;
        rows.extend(unclaimed);
    }
    rows.into_iter().map(ImageRecord::try_from).collect()
}

/// Marks files whose objects are gone; the rows stay as tombstones.
pub async fn mark_deleted(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[ImageId],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    sqlx::query(
        "UPDATE images SET state = 'deleted', variants = '[]', updated_at = now() WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Puts an attached image back to `pending` so its variants are rebuilt.
pub async fn request_reprocess(
    pool: &PgPool,
    id: ImageId,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE images SET process_status = 'pending', last_error = NULL, updated_at = now()
         WHERE id = $1 AND state = 'attached' AND process_status IN ('ready', 'failed')
         RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// Ready images that list no AVIF variant and have not changed for `secs`:
/// their AVIF step was cut short (a crash) or AVIF was turned on later.
pub async fn lacking_avif(
    pool: &PgPool,
    secs: i64,
    limit: i64,
) -> Result<Vec<ImageId>, sqlx::Error> {
    unchanged_for(
        pool,
        "process_status = 'ready' AND NOT variants @> '[{\"format\": \"avif\"}]'::jsonb",
        secs,
        limit,
    )
    .await
}

/// Marks the image as just changed (`updated_at`), nothing else.
pub async fn touch(pool: &PgPool, id: ImageId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET updated_at = now() WHERE id = $1")
        .bind(id.0)
        .execute(pool)
        .await?;
    Ok(())
}

/// Attached images left unfinished for longer than `secs`.
pub async fn stalled(pool: &PgPool, secs: i64, limit: i64) -> Result<Vec<ImageId>, sqlx::Error> {
    unchanged_for(
        pool,
        "process_status IN ('pending', 'processing')",
        secs,
        limit,
    )
    .await
}

/// Attached images matching `condition` (fixed SQL, never user input) and
/// unchanged for `secs`, the longest unchanged first.
async fn unchanged_for(
    pool: &PgPool,
    condition: &'static str,
    secs: i64,
    limit: i64,
) -> Result<Vec<ImageId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM images
         WHERE state = 'attached' AND {condition}
           AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2"
    ))
    .bind(secs as f64)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(ImageId).collect())
}

/// Every row, for reconciliation against the bucket.
pub async fn all(pool: &PgPool) -> Result<Vec<ImageRecord>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM images"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(ImageRecord::try_from).collect()
}

/// Of `ids`, the rows that are not deleted and that no sweep holds locked
/// right now (`FOR KEY SHARE` waits for no one: rows under a sweep's
/// `FOR UPDATE` are skipped).
pub async fn not_being_swept(
    pool: &PgPool,
    ids: &[ImageId],
) -> Result<std::collections::HashSet<ImageId>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM images WHERE id = ANY($1) AND state <> 'deleted'
         FOR KEY SHARE SKIP LOCKED",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ImageId).collect())
}

/// Attached images of `owner` whose variants are still to be built.
pub async fn unprocessed_of_owner(
    pool: &PgPool,
    owner: &Owner,
) -> Result<Vec<ImageRecord>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM images
         WHERE owner_type = 'post' AND owner_id = $1 AND state = 'attached'
           AND process_status IN ('pending', 'processing')
         ORDER BY id"
    ))
    .bind(owner.id)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(ImageRecord::try_from).collect()
}

/// How long an attempt may stay `processing` without a heartbeat before
/// another worker may take the image over (its worker is presumed dead).
pub const STALLED_AFTER_SECS: i64 = 30;

/// How often a worker marks the image it builds as still in hand.
pub const HEARTBEAT_SECS: u64 = 10;

/// The heartbeat of a build in progress: keeps the claim from looking
/// stalled however long the build takes.
pub async fn touch_processing(pool: &PgPool, id: ImageId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE images SET updated_at = now() WHERE id = $1 AND process_status = 'processing'",
    )
    .bind(id.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims the image for an attempt: `pending`, or `processing` for longer
/// than [`STALLED_AFTER_SECS`]. `None` when there is nothing to do or another
/// worker is on it, so two consumers never build the same image at once.
pub async fn start_processing(
    pool: &PgPool,
    id: ImageId,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE images SET process_status = 'processing', attempts = attempts + 1, updated_at = now()
         WHERE id = $1 AND state = 'attached'
           AND (process_status = 'pending'
                OR (process_status = 'processing' AND updated_at < now() - make_interval(secs => $2)))
         RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(STALLED_AFTER_SECS as f64)
    .fetch_optional(pool)
    .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// Claims the attached image that has waited longest for its build (the
/// build queue, shared by every instance): `pending`, or `processing`
/// without a heartbeat for [`STALLED_AFTER_SECS`] (its worker died), →
/// `processing`. `None` when nothing waits; rows other workers hold are
/// skipped.
pub async fn claim_next(pool: &PgPool) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE images SET process_status = 'processing', attempts = attempts + 1, updated_at = now()
         WHERE id = (
             SELECT id FROM images
             WHERE state = 'attached'
               AND (process_status = 'pending'
                    OR (process_status = 'processing'
                        AND updated_at < now() - make_interval(secs => $1)))
             ORDER BY updated_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(STALLED_AFTER_SECS as f64)
    .fetch_optional(pool)
    .await?;
    row.map(ImageRecord::try_from).transpose()
}

/// Hands a claimed image back (`processing` → `pending`) after a transient
/// failure, so the retried event builds it at once instead of waiting for
/// the claim to look stalled.
pub async fn release_processing(pool: &PgPool, id: ImageId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE images SET process_status = 'pending', updated_at = now()
         WHERE id = $1 AND process_status = 'processing'",
    )
    .bind(id.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the outcome of processing. Returns `false` when the image was no
/// longer being processed (a concurrent duplicate finished first).
pub async fn finish_processing(
    tx: &mut Transaction<'_, Postgres>,
    id: ImageId,
    status: ProcessStatus,
    variants: &[Variant],
    error: Option<&str>,
    placeholder: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let variants = serde_json::to_value(variants).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let updated = sqlx::query(
        "UPDATE images SET process_status = $2, variants = $3, last_error = $4,
                placeholder = COALESCE($5, placeholder), updated_at = now()
         WHERE id = $1 AND process_status = 'processing'",
    )
    .bind(id.0)
    .bind(status.as_str())
    .bind(variants)
    .bind(error)
    .bind(placeholder)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// What became of AVIF variants offered for a row.
#[derive(Debug, PartialEq, Eq)]
pub enum AvifListed {
    /// The row lists them now.
    Listed,
    /// The file was deleted meanwhile: the objects must go.
    Deleted,
    /// The image is being rebuilt (or failed): the rebuild decides.
    Rebuilding,
}

/// Replaces the AVIF entries of a `ready` image's variants with `avif`.
pub async fn set_avif_variants(
    pool: &PgPool,
    id: ImageId,
    avif: &[Variant],
) -> Result<AvifListed, sqlx::Error> {
    let avif = serde_json::to_value(avif).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let listed = sqlx::query(
        "UPDATE images SET variants = COALESCE(
                (SELECT jsonb_agg(v) FROM jsonb_array_elements(variants) v WHERE v->>'format' <> 'avif'),
                '[]'::jsonb) || $2::jsonb,
            updated_at = now()
         WHERE id = $1 AND state <> 'deleted' AND process_status = 'ready'",
    )
    .bind(id.0)
    .bind(avif)
    .execute(pool)
    .await?
    .rows_affected();
    if listed == 1 {
        return Ok(AvifListed::Listed);
    }
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM images WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    Ok(match state.as_deref() {
        Some("deleted") | None => AvifListed::Deleted,
        _ => AvifListed::Rebuilding,
    })
}
