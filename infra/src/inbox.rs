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

/// Where an event stands in its aggregate's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InOrder {
    /// The next one: apply it (the sequence is advanced in the transaction).
    Next,
    /// Already applied or superseded: skip it.
    Stale { last: i64 },
    /// Its predecessor has not been applied yet: retry later.
    Early { expected: i64 },
}

/// Checks `sequence` against the last applied one of the aggregate and, when
/// it is the next, advances it inside `tx`. The row lock serialises
/// consumers of one aggregate; other aggregates are not affected.
///
/// The usual cases take one statement: the first event of a new aggregate
/// creates its row, the next event of a known one advances it only if it
/// still holds the predecessor (a concurrent consumer that advanced it
/// first makes the condition false once its commit is seen). Anything
/// else (early, stale, or a row an early event created) is read under the
/// row lock.
pub async fn advance_sequence(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_type: &str,
    aggregate_id: uuid::Uuid,
    sequence: i64,
) -> Result<InOrder, sqlx::Error> {
    let advanced = if sequence == 1 {
        sqlx::query(
            "INSERT INTO applied_sequences (aggregate_type, aggregate_id, last_sequence)
             VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
    } else {
        sqlx::query(
            "UPDATE applied_sequences SET last_sequence = $3
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence = $3 - 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
    }
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if advanced == 1 {
        return Ok(InOrder::Next);
    }
    sqlx::query(
        "INSERT INTO applied_sequences (aggregate_type, aggregate_id, last_sequence)
         VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .execute(&mut **tx)
    .await?;
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM applied_sequences
         WHERE aggregate_type = $1 AND aggregate_id = $2 FOR UPDATE",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(&mut **tx)
    .await?;
    if sequence <= last {
        return Ok(InOrder::Stale { last });
    }
    if sequence > last + 1 {
        return Ok(InOrder::Early { expected: last + 1 });
    }
    sqlx::query(
        "UPDATE applied_sequences SET last_sequence = $3 WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .execute(&mut **tx)
    .await?;
    Ok(InOrder::Next)
}
