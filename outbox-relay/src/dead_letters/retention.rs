//! Housekeeping of the `dead_letters` table: letters replayed or discarded
//! longer ago than the retention are deleted (their audit trail with them),
//! and the pending-letters gauge is refreshed from the table, so replays and
//! discards made with the command line show in the relay's metrics too.
use super::store;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the gauge is refreshed and old letters purged.
const EVERY: Duration = Duration::from_secs(30);

pub async fn run(pool: PgPool, retention: Duration, cancel: CancellationToken) {
    loop {
        if let Err(e) = once(&pool, retention).await {
            tracing::warn!(error = %e, "dead-letter housekeeping failed; trying again later");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

pub async fn once(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let now = chrono::Utc::now();
    let before = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let purged = store::purge_resolved(pool, before).await?;
    if purged > 0 {
        tracing::info!(purged, "old resolved dead letters deleted");
    }
    infra::metrics::DEAD_LETTERS_PENDING.reset();
    for (queue, count) in store::pending_by_queue(pool).await? {
        infra::metrics::DEAD_LETTERS_PENDING
            .with_label_values(&[&queue])
            .set(count as f64);
    }
    Ok(purged)
}
