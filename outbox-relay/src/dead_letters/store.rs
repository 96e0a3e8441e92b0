//! SQL for the `dead_letters` table.
use super::record::DeadLetter;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Stores a dead letter; `false` when the same message was stored before.
pub async fn insert(pool: &PgPool, letter: &DeadLetter) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO dead_letters
            (dedup_key, queue, message_id, event_type, aggregate_id, original_exchange,
             original_routing_key, headers, body, reason, fingerprint, attempts, consumer,
             first_failed_at, last_failed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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
    pub received_at: DateTime<Utc>,
}

/// Filters of `dlq list`; `None` matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub queue: Option<String>,
    pub event_type: Option<String>,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
}

pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, queue, event_type, message_id, aggregate_id, attempts, status, reason, received_at
         FROM dead_letters
         WHERE ($1::text IS NULL OR queue = $1)
           AND ($2::text IS NULL OR event_type = $2)
           AND ($3::text IS NULL OR strpos(reason, $3) > 0)
           AND ($4::text IS NULL OR status = $4)
         ORDER BY id DESC
         LIMIT $5",
    )
    .bind(&filter.queue)
    .bind(&filter.event_type)
    .bind(&filter.reason)
    .bind(&filter.status)
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
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Detail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, queue, message_id, event_type, aggregate_id, original_exchange, original_routing_key,
                headers, body, reason, fingerprint, attempts, consumer, first_failed_at, last_failed_at,
                status, received_at
         FROM dead_letters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
