//! Remembering handled events, in the same transaction as their effect.
use proto::EventId;
use sqlx::{Postgres, Transaction};

/// Records `event_id` as handled. Returns `false` when it was handled before,
/// in which case the caller must not apply the event again.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    event_id: EventId,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(event_id.0)
    .bind(event_type)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
