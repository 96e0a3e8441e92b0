//! SQL for the `dead_letters` and `dead_letter_actions` tables.
use super::{filter::Filter, record::DeadLetter};
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

/// Stores a dead letter; `false` when the same message was stored before.
pub async fn insert(pool: &PgPool, letter: &DeadLetter) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO dead_letters
            (dedup_key, queue, message_id, event_type, aggregate_id, original_exchange,
             original_routing_key, headers, properties, body, reason, fingerprint, attempts,
             consumer, first_failed_at, last_failed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&letter.dedup_key)
    .bind(&letter.queue)
    .bind(&letter.message_id)
    .bind(&letter.event_type)
    .bind(letter.aggregate_id)
    .bind(&letter.original_exchange)
    .bind(&letter.original_routing_key)
    .bind(&letter.headers)
    .bind(&letter.properties)
    .bind(&letter.body)
    .bind(&letter.reason)
    .bind(&letter.fingerprint)
    .bind(letter.attempts.map(|a| a as i32))
    .bind(&letter.consumer)
    .bind(letter.first_failed_at)
    .bind(letter.last_failed_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// One group of `dlq stats`.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct Group {
    pub queue: String,
    pub event_type: Option<String>,
    pub fingerprint: String,
    pub status: String,
    pub count: i64,
    pub oldest: DateTime<Utc>,
    pub newest: DateTime<Utc>,
}

pub async fn stats(pool: &PgPool) -> Result<Vec<Group>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, event_type, fingerprint, status, count(*) AS count,
                min(received_at) AS oldest, max(received_at) AS newest
         FROM dead_letters
         GROUP BY queue, event_type, fingerprint, status
         ORDER BY count(*) DESC, queue, fingerprint",
    )
    .fetch_all(pool)
    .await
}

/// One row of `dlq list`.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct Listed {
    pub id: i64,
    pub queue: String,
    pub event_type: Option<String>,
    pub message_id: Option<String>,
    pub aggregate_id: Option<uuid::Uuid>,
    pub attempts: Option<i32>,
    pub status: String,
    pub reason: String,
    pub fingerprint: String,
    pub received_at: DateTime<Utc>,
}

/// The filter's conditions; `$1`…`$10` are bound by [`bind_filter`].
const MATCHES: &str = "
    ($1::text IS NULL OR queue = $1)
    AND ($2::text IS NULL OR event_type = $2)
    AND ($3::text IS NULL OR strpos(reason, $3) > 0)
    AND ($4::text IS NULL OR reason ~ $4)
    AND ($5::text IS NULL OR fingerprint = $5)
    AND ($6::timestamptz IS NULL OR received_at >= $6)
    AND ($7::timestamptz IS NULL OR received_at < $7)
    AND ($8::uuid IS NULL OR aggregate_id = $8)
    AND ($9::text IS NULL OR status = $9)
    AND (cardinality($10::bigint[]) = 0 OR id = ANY($10))";

macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {
        $query
            .bind(&$filter.queue)
            .bind(&$filter.event_type)
            .bind(&$filter.reason)
            .bind(&$filter.reason_regex)
            .bind(&$filter.fingerprint)
            .bind($filter.since)
            .bind($filter.until)
            .bind($filter.aggregate)
            .bind($filter.status.map(|s| s.as_str()))
            .bind(&$filter.ids)
    };
}

/// Newest first; at most `filter.limit` (default 50).
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<Listed>, sqlx::Error> {
    let sql = format!(
        "SELECT id, queue, event_type, message_id, aggregate_id, attempts, status, reason,
                fingerprint, received_at
         FROM dead_letters WHERE {MATCHES} ORDER BY id DESC LIMIT $11"
    );
    bind_filter!(sqlx::query_as(&sql), filter)
        .bind(filter.limit.unwrap_or(50))
        .fetch_all(pool)
        .await
}

/// The letters with these ids (what a dry run would touch), newest first.
pub async fn listed(pool: &PgPool, ids: &[i64]) -> Result<Vec<Listed>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let filter = Filter {
        ids: ids.to_vec(),
        limit: Some(ids.len() as i64),
        ..Default::default()
    };
    list(pool, &filter).await
}

/// Ids of every matching letter, oldest first (up to `filter.limit`).
pub async fn matching_ids(pool: &PgPool, filter: &Filter) -> Result<Vec<i64>, sqlx::Error> {
    let sql = format!("SELECT id FROM dead_letters WHERE {MATCHES} ORDER BY id LIMIT $11");
    bind_filter!(sqlx::query_scalar(&sql), filter)
        .bind(filter.limit)
        .fetch_all(pool)
        .await
}

/// Everything stored about one dead letter (`dlq show`).
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct Detail {
    pub id: i64,
    pub queue: String,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<uuid::Uuid>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub headers: serde_json::Value,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub reason: String,
    pub fingerprint: String,
    pub attempts: Option<i32>,
    pub consumer: Option<String>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_failed_at: Option<DateTime<Utc>>,
    pub status: String,
    pub received_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Detail {
    /// The letter as JSON with its body (as JSON when it is JSON, else as
    /// text) and its replays and discards.
    pub fn to_json(&self, actions: &[Action]) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["body"] = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).into_owned().into());
        value["actions"] = serde_json::to_value(actions).unwrap_or_default();
        value
    }
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Detail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, queue, message_id, event_type, aggregate_id, original_exchange, original_routing_key,
                headers, body, reason, fingerprint, attempts, consumer, first_failed_at, last_failed_at,
                status, received_at, resolved_at
         FROM dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// One replay attempt or discard of a letter.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct Action {
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A letter's replays and discards, oldest first.
pub async fn actions(pool: &PgPool, id: i64) -> Result<Vec<Action>, sqlx::Error> {
    sqlx::query_as(
        "SELECT action, actor, reason, outcome, detail, started_at, finished_at
         FROM dead_letter_actions WHERE dead_letter_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// What a replay needs of a letter.
#[derive(Debug, sqlx::FromRow)]
pub struct Replayable {
    pub queue: String,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub headers: serde_json::Value,
    pub properties: Option<serde_json::Value>,
    pub body: Vec<u8>,
}

/// The letter if it is pending and nobody else holds it, locked until `tx`
/// ends. `NO KEY UPDATE`, not `UPDATE`: recording an action on another
/// connection checks its foreign key with a key-share lock on this row,
/// which a full update lock would block.
pub async fn lock_pending(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<Replayable>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, message_id, event_type, original_exchange, original_routing_key,
                headers, properties, body
         FROM dead_letters WHERE id = $1 AND status = 'pending' FOR NO KEY UPDATE SKIP LOCKED",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Replay attempts of the letter that never finished were cut off.
pub async fn mark_interrupted(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letter_actions SET outcome = 'interrupted'
         WHERE dead_letter_id = $1 AND outcome = 'publishing'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replay attempts of the letter so far.
pub async fn replay_attempts(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM dead_letter_actions WHERE dead_letter_id = $1 AND action = 'replay'",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

/// Records a replay attempt as `publishing`, committed at once (outside the
/// caller's transaction), and returns its id.
pub async fn begin_replay(pool: &PgPool, id: i64, actor: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO dead_letter_actions (dead_letter_id, action, actor, outcome)
         VALUES ($1, 'replay', $2, 'publishing') RETURNING id",
    )
    .bind(id)
    .bind(actor)
    .fetch_one(pool)
    .await
}

pub async fn finish_replay(
    tx: &mut Transaction<'_, Postgres>,
    action: i64,
    outcome: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letter_actions SET outcome = $2, detail = $3, finished_at = now() WHERE id = $1",
    )
    .bind(action)
    .bind(outcome)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn mark_replayed(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET status = 'replayed', resolved_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a finished action (a replay that could not start, or a discard).
pub async fn record_action(
    executor: impl PgExecutor<'_>,
    id: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
    outcome: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letter_actions
            (dead_letter_id, action, actor, reason, outcome, detail, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())",
    )
    .bind(id)
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(outcome)
    .bind(detail)
    .execute(executor)
    .await?;
    Ok(())
}

/// Marks the pending letters among `ids` discarded, with who and why;
/// returns the ids it discarded with their queues.
pub async fn discard(
    pool: &PgPool,
    ids: &[i64],
    actor: &str,
    reason: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let discarded: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE dead_letters SET status = 'discarded', resolved_at = now()
         WHERE id = ANY($1) AND status = 'pending' RETURNING id, queue",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let discarded_ids: Vec<i64> = discarded.iter().map(|(id, _)| *id).collect();
    sqlx::query(
        "INSERT INTO dead_letter_actions
            (dead_letter_id, action, actor, reason, outcome, finished_at)
         SELECT unnest($1::bigint[]), 'discard', $2, $3, 'discarded', now()",
    )
    .bind(&discarded_ids)
    .bind(actor)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(discarded)
}

/// Deletes letters replayed or discarded before `before`; returns how many.
pub async fn purge_resolved(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM dead_letters WHERE status <> 'pending' AND resolved_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Pending letters per dead-letter queue.
pub async fn pending_by_queue(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, count(*) FROM dead_letters WHERE status = 'pending' GROUP BY queue",
    )
    .fetch_all(pool)
    .await
}
