//! Remembering handled events, in the same transaction as their effect.
use proto::EventId;
use sqlx::{Postgres, Transaction};

/// Records event `$1` of type `$2` as handled, unless it was before. A
/// consumer may add `RETURNING 1` and run it inside a larger statement, so
/// that the event's effect applies only when this row is new.
pub const INSERT: &str =
    "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Records `event_id` as handled. Returns `false` when it was handled before,
/// in which case the caller must not apply the event again.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    event_id: EventId,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(INSERT)
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
    advance_locked(tx, aggregate_type, aggregate_id, sequence).await
}

/// Whether an event may be applied, from [`admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The next of its aggregate and new to the inbox: apply it.
    Apply,
    /// The next of its aggregate, but its id was handled before: skip it,
    /// and roll back (the sequence was advanced in the transaction).
    Seen,
    /// Already applied or superseded: skip it.
    Stale { last: i64 },
    /// Its predecessor has not been applied yet: retry later.
    Early { expected: i64 },
}

/// [`advance_sequence`] and then [`record`], in one statement in the usual
/// cases (the next event of a known aggregate, the first of a new one).
pub async fn admit(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_type: &str,
    aggregate_id: uuid::Uuid,
    sequence: i64,
    event_id: EventId,
    event_type: &str,
) -> Result<Admission, sqlx::Error> {
    // The inbox row is written only if the sequence moved (it reads the
    // sequence statement's RETURNING rows).
    let advance = if sequence == 1 {
        "INSERT INTO applied_sequences (aggregate_type, aggregate_id, last_sequence)
         VALUES ($1, $2, 1) ON CONFLICT DO NOTHING RETURNING 1"
    } else {
        "UPDATE applied_sequences SET last_sequence = $3
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence = $3 - 1
         RETURNING 1"
    };
    let (advanced, recorded): (bool, bool) = sqlx::query_as(&format!(
        "WITH advanced AS ({advance}),
              recorded AS (
                  INSERT INTO inbox (event_id, event_type)
                  SELECT $4, $5 FROM advanced
                  ON CONFLICT DO NOTHING RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM advanced), EXISTS (SELECT 1 FROM recorded)"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_id.0)
    .bind(event_type)
    .fetch_one(&mut **tx)
    .await?;
    let order = match advanced {
        true => InOrder::Next,
        false => advance_locked(tx, aggregate_type, aggregate_id, sequence).await?,
    };
    Ok(match order {
        InOrder::Next if advanced && recorded => Admission::Apply,
        InOrder::Next if advanced => Admission::Seen,
        InOrder::Next => match record(tx, event_id, event_type).await? {
            true => Admission::Apply,
            false => Admission::Seen,
        },
        InOrder::Stale { last } => Admission::Stale { last },
        InOrder::Early { expected } => Admission::Early { expected },
    })
}

/// The slow path of [`advance_sequence`]: reads the aggregate's row under
/// its lock (creating it at 0 if missing) and advances it if `sequence` is
/// the next.
async fn advance_locked(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_type: &str,
    aggregate_id: uuid::Uuid,
    sequence: i64,
) -> Result<InOrder, sqlx::Error> {
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
