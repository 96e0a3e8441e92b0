//! Outbox retention: rows published longer ago than `outbox.retention_hours`
//! are deleted, in batches, by whichever relay gets to them first, so the
//! outbox holds the unpublished backlog and a short published history only.
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often each outbox is purged.
const EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement, so no purge holds locks for long.
const BATCH: i64 = 10_000;

/// Purges `pool`'s outbox every minute until `cancel`.
pub async fn run(pool: PgPool, retention: Duration, source: String, cancel: CancellationToken) {
    loop {
        match purge(&pool, retention).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(%source, deleted, "published outbox rows past retention deleted")
            }
            Err(e) => {
                tracing::warn!(%source, error = %e, "outbox retention failed; trying again later")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Deletes every row published more than `retention` ago; returns how many.
/// Unpublished rows are never touched. Rows another relay is deleting are
/// skipped, not waited for.
pub async fn purge(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE position IN (
                 SELECT position FROM outbox
                 WHERE published_at < now() - make_interval(secs => $1)
                 ORDER BY position
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(retention.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
