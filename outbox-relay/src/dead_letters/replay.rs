//! Replaying dead letters: the original message (same `message_id`, body and
//! headers, plus `x-replay-count`) goes back to its original exchange and
//! routing key with publisher confirms and `mandatory`.
//!
//! Each letter is replayed under its row lock, so two replays never send the
//! same letter at once. The attempt is committed as `publishing` on its own
//! connection *before* the publish and finished after the confirm: a replay
//! killed in between leaves the letter `pending` with a record saying it may
//! have been sent, never a message that went out unrecorded. Sending it again
//! later is safe: consumers drop an event id they have handled.
use super::store;
use infra::amqp::{headers, Outgoing, PublishError, Publisher};
use lapin::{
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties,
};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;

/// Headers a message gains while failing; a replay sends it without them,
/// as it was first published, so it gets a fresh set of retries.
const FAILURE_HEADERS: &[&str] = &[
    headers::FAILURE_REASON,
    headers::ORIGINAL_EXCHANGE,
    headers::ORIGINAL_ROUTING_KEY,
    headers::CONSUMER,
    headers::FIRST_FAILED_AT,
    headers::LAST_FAILED_AT,
    headers::ATTEMPTS,
    headers::DEFERRALS,
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// What happened to one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Confirmed by the broker and routed; the letter is `replayed`.
    Published,
    /// `--dry-run`: it would have been published.
    WouldReplay,
    /// No queue took it (`mandatory` returned it); it stays `pending`.
    Returned,
    /// The broker refused it, or the letter has no route; it stays `pending`.
    Failed,
    /// Not pending any more, or another replay holds it.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub id: i64,
    pub queue: String,
    pub event_type: Option<String>,
    pub message_id: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

pub struct Replayer<'a> {
    pub pool: &'a PgPool,
    pub publisher: &'a Publisher,
    /// Who replays (an SRE's user name, or a token's `sub`).
    pub actor: String,
    /// Messages per second; `None` sends as fast as confirms come back.
    pub rate: Option<f64>,
}

impl Replayer<'_> {
    /// Replays the letters with these ids, in order, calling `report` after
    /// each. Stops at the first broker failure (the connection is likely
    /// gone); every letter before it is recorded.
    pub async fn replay(
        &self,
        ids: &[i64],
        mut report: impl FnMut(&Replayed),
    ) -> anyhow::Result<Vec<Replayed>> {
        let mut done = Vec::with_capacity(ids.len());
        let mut pace = self.rate.map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        for &id in ids {
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            let (replayed, broker_down) = self.replay_one(id).await?;
            report(&replayed);
            done.push(replayed);
            if let Some(e) = broker_down {
                anyhow::bail!("the broker failed during replay: {e}");
            }
        }
        Ok(done)
    }

    async fn replay_one(&self, id: i64) -> anyhow::Result<(Replayed, Option<PublishError>)> {
        let mut tx = self.pool.begin().await?;
        let Some(letter) = store::lock_pending(&mut tx, id).await? else {
            let replayed = Replayed {
                id,
                queue: String::new(),
                event_type: None,
                message_id: None,
                exchange: None,
                routing_key: None,
                outcome: Outcome::Skipped,
                detail: Some("not pending, or being replayed by someone else".into()),
            };
            return Ok((replayed, None));
        };
        // Attempts that never finished were cut off; nobody else holds the row.
        store::mark_interrupted(&mut tx, id).await?;
        let earlier = store::replay_attempts(&mut tx, id).await?;
        let mut replayed = Replayed {
            id,
            queue: letter.queue.clone(),
            event_type: letter.event_type.clone(),
            message_id: letter.message_id.clone(),
            exchange: letter.original_exchange.clone(),
            routing_key: letter.original_routing_key.clone(),
            outcome: Outcome::Failed,
            detail: None,
        };
        let (Some(exchange), Some(routing_key)) = (
            letter.original_exchange.as_deref(),
            letter.original_routing_key.as_deref(),
        ) else {
            replayed.detail = Some("no original exchange and routing key recorded".into());
            store::record_action(
                &mut *tx,
                id,
                "replay",
                &self.actor,
                None,
                "failed",
                replayed.detail.as_deref(),
            )
            .await?;
            tx.commit().await?;
            return Ok((replayed, None));
        };
        let properties = replay_properties(&letter, earlier);
        // Committed before the publish, on its own connection.
        let action = store::begin_replay(self.pool, id, &self.actor).await?;
        let result = self
            .publisher
            .publish_all(vec![Outgoing {
                exchange,
                routing_key,
                body: &letter.body,
                properties,
            }])
            .await
            .pop()
            .expect("one result per message");
        let mut broker_down = None;
        let outcome = match result {
            Ok(()) => {
                store::mark_replayed(&mut tx, id).await?;
                Outcome::Published
            }
            Err(PublishError::Returned(text)) => {
                replayed.detail = Some(format!("unroutable: {text}"));
                Outcome::Returned
            }
            Err(e) => {
                replayed.detail = Some(e.to_string());
                if matches!(e, PublishError::Broker(_)) {
                    broker_down = Some(e);
                }
                Outcome::Failed
            }
        };
        replayed.outcome = outcome;
        let label = match outcome {
            Outcome::Published => "published",
            Outcome::Returned => "returned",
            _ => "failed",
        };
        store::finish_replay(&mut tx, action, label, replayed.detail.as_deref()).await?;
        tx.commit().await?;
        infra::metrics::DEAD_LETTER_REPLAYS
            .with_label_values(&[&letter.queue, label])
            .inc();
        tracing::info!(id, queue = %letter.queue, outcome = label, actor = %self.actor, "dead letter replayed");
        Ok((replayed, broker_down))
    }
}

/// The message as first published: the stored properties without the
/// failure headers and without the expiration a retry queue may have set,
/// plus the replay count.
fn replay_properties(letter: &store::Replayable, earlier_attempts: i64) -> BasicProperties {
    let original = letter
        .properties
        .clone()
        .and_then(|p| serde_json::from_value::<BasicProperties>(p).ok())
        // Stored before properties were kept: rebuild them from the headers.
        .unwrap_or_else(|| {
            infra::amqp::event_properties(
                letter.message_id.as_deref().unwrap_or_default(),
                letter.event_type.as_deref().unwrap_or_default(),
                None,
            )
            .with_headers(table_from_json(&letter.headers))
        });
    let stored = original.headers().clone().unwrap_or_default();
    let mut table = FieldTable::default();
    for (name, value) in stored.inner() {
        if !FAILURE_HEADERS.contains(&name.as_str()) && name.as_str() != headers::REPLAY_COUNT {
            table.insert(name.clone(), value.clone());
        }
    }
    table.insert(
        headers::REPLAY_COUNT.into(),
        AMQPValue::LongLongInt(replay_count(&stored) + earlier_attempts + 1),
    );
    let mut properties = BasicProperties::default()
        .with_headers(table)
        .with_delivery_mode(original.delivery_mode().unwrap_or(2))
        .with_content_type(
            original
                .content_type()
                .clone()
                .unwrap_or_else(|| ShortString::from("application/json")),
        );
    let message_id = original
        .message_id()
        .clone()
        .or_else(|| letter.message_id.as_deref().map(ShortString::from));
    if let Some(id) = message_id {
        properties = properties.with_message_id(id);
    }
    let kind = original
        .kind()
        .clone()
        .or_else(|| letter.event_type.as_deref().map(ShortString::from));
    if let Some(kind) = kind {
        properties = properties.with_type(kind);
    }
    if let Some(encoding) = original.content_encoding().clone() {
        properties = properties.with_content_encoding(encoding);
    }
    if let Some(correlation) = original.correlation_id().clone() {
        properties = properties.with_correlation_id(correlation);
    }
    if let Some(app) = original.app_id().clone() {
        properties = properties.with_app_id(app);
    }
    if let Some(timestamp) = *original.timestamp() {
        properties = properties.with_timestamp(timestamp);
    }
    properties
}

fn replay_count(table: &FieldTable) -> i64 {
    match table.inner().get(headers::REPLAY_COUNT) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    }
}

/// Readable JSON headers back to a table: strings as long strings, whole
/// numbers as 64-bit integers, booleans as booleans.
fn table_from_json(value: &serde_json::Value) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in value.as_object().into_iter().flatten() {
        let value = match value {
            serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
            serde_json::Value::Number(n) if n.is_i64() => {
                AMQPValue::LongLongInt(n.as_i64().unwrap_or_default())
            }
            _ => continue,
        };
        table.insert(name.as_str().into(), value);
    }
    table
}
