//! Claims committed outbox rows, publishes them with confirms, and marks them
//! published only after the broker confirmed them. A crash between publish
//! and mark causes a duplicate (consumers deduplicate), never a loss.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` in `position` order among
//! *all* unpublished rows, not "after the last position seen", so a row whose
//! transaction commits late (with a lower position) is still found.
use chrono::{DateTime, Utc};
use infra::amqp::{event_properties, Outgoing, Publisher};
use infra::trace_context::TraceParent;
use proto::{topology, Envelope};
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    position: i64,
    id: Uuid,
    event_type: String,
    version: i32,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    data: serde_json::Value,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub claimed: usize,
    pub published: usize,
    pub failed: usize,
}

/// Relays one database's outbox.
pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    batch_size: i64,
    /// Names the source in logs without exposing credentials.
    source: String,
}

impl Relay {
    pub fn new(pool: PgPool, publisher: Publisher, batch_size: u32, source: String) -> Self {
        Self {
            pool,
            publisher,
            batch_size: batch_size.into(),
            source,
        }
    }

    /// Claims up to one batch, publishes it and marks what was confirmed.
    #[tracing::instrument(skip_all, fields(source = %self.source))]
    pub async fn publish_batch(&self) -> anyhow::Result<BatchOutcome> {
        use anyhow::Context;
        let mut tx = self.pool.begin().await.context("begin claim transaction")?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT position, id, event_type, version, aggregate_type, aggregate_id,
                    sequence, data, traceparent, created_at
             FROM outbox
             WHERE published_at IS NULL
             ORDER BY position
             LIMIT $1
             FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("claim outbox rows")?;
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }

        let bodies: Vec<Vec<u8>> = rows.iter().map(envelope_bytes).collect();
        // One span per event, from publish to confirm, continuing the trace
        // stored with the row (not this batch's).
        let spans: Vec<(tracing::Span, Option<String>)> = rows.iter().map(publish_span).collect();
        let mut messages = Vec::with_capacity(rows.len());
        for ((row, body), (_, traceparent)) in rows.iter().zip(&bodies).zip(&spans) {
            let exchange = topology::exchange_for(&row.event_type).unwrap_or(topology::POST_EVENTS);
            messages.push(Outgoing {
                exchange,
                routing_key: &row.event_type,
                body,
                properties: event_properties(
                    &row.id.to_string(),
                    &row.event_type,
                    traceparent.as_deref(),
                ),
            });
        }
        let results = self.publisher.publish_all(messages).await;
        drop(spans);

        // A row is marked only if it and every earlier row of its aggregate in
        // this batch were confirmed, so a failed event is retried before the
        // later events of its aggregate are considered done.
        let mut blocked = HashSet::new();
        let mut confirmed = Vec::new();
        let (mut failed, mut returned) = (0, 0);
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) if !blocked.contains(&row.aggregate_id) => confirmed.push(row.position),
                Ok(()) => failed += 1,
                Err(e) => {
                    tracing::warn!(event_id = %row.id, event_type = %row.event_type, error = %e, "publish failed; will retry");
                    blocked.insert(row.aggregate_id);
                    if matches!(e, infra::amqp::PublishError::Returned(_)) {
                        returned += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE position = ANY($1)")
            .bind(&confirmed)
            .execute(&mut *tx)
            .await
            .context("mark rows published")?;
        tx.commit().await.context("commit published marks")?;
        let source = self.source.as_str();
        for (outcome, count) in [
            ("published", rows.len()),
            ("confirmed", confirmed.len()),
            ("returned", returned),
            ("failed", failed),
        ] {
            infra::metrics::PUBLISHES
                .with_label_values(&[source, outcome])
                .inc_by(count as f64);
        }
        tracing::debug!(
            claimed = rows.len(),
            published = confirmed.len(),
            failed,
            "batch relayed"
        );
        Ok(BatchOutcome {
            claimed: rows.len(),
            published: confirmed.len(),
            failed,
        })
    }

    /// Publishes until the outbox is empty, then waits for a notification or
    /// the poll interval, until `cancel` fires. For [`HOT_WINDOW`] after a
    /// batch that published anything it polls every [`HOT_POLL`] instead:
    /// writers notify at most once per `infra::outbox::NOTIFY_EVERY`, so a
    /// row written just after a notifying one commits without a wake-up.
    pub async fn run(
        &self,
        poll_interval: Duration,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(infra::outbox::NOTIFY_CHANNEL).await?;
        let mut failures = 0u32;
        let mut hot_until = tokio::time::Instant::now();
        let mut measured: Option<tokio::time::Instant> = None;
        while !cancel.is_cancelled() {
            let drained = self.drain(&cancel).await;
            // Not on every hot poll: once per interval is enough for a gauge.
            if measured.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                measured = Some(tokio::time::Instant::now());
                if let Err(e) = self.measure_backlog().await {
                    tracing::warn!(error = %e, "could not measure the outbox backlog");
                }
            }
            if !self.publisher.channel().status().connected() {
                // A closed channel never recovers: let the caller reconnect.
                anyhow::bail!("publisher channel closed");
            }
            let now = tokio::time::Instant::now();
            let wait = match drained {
                Ok(Drained::Empty { published }) => {
                    failures = 0;
                    if published > 0 {
                        hot_until = now + HOT_WINDOW;
                    }
                    if now < hot_until {
                        HOT_POLL
                    } else {
                        poll_interval
                    }
                }
                Ok(Drained::Failed) | Err(_) => {
                    failures += 1;
                    // Back off while the broker or database misbehaves.
                    Duration::from_millis((100u64 << failures.min(7)).min(10_000))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                // `try_recv` returns `Ok(None)` when the connection dropped;
                // sqlx reconnects on the next call, and the drain above
                // catches anything missed meanwhile.
                _ = listener.try_recv() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        Ok(())
    }

    /// Updates the backlog gauges of this outbox.
    pub async fn measure_backlog(&self) -> Result<(), sqlx::Error> {
        infra::outbox::measure_backlog(&self.pool, &self.source).await
    }

    /// Publishes batches until one comes back short, or until some
    /// messages failed and the caller should back off. When `cancel` fires
    /// it stops after the batch in flight: that batch's confirms are awaited
    /// and its rows marked, so a stop publishes nothing twice.
    async fn drain(&self, cancel: &CancellationToken) -> anyhow::Result<Drained> {
        let mut published = 0;
        loop {
            match self.publish_batch().await {
                Ok(outcome) if outcome.failed > 0 => return Ok(Drained::Failed),
                Ok(outcome) => {
                    published += outcome.published;
                    if outcome.claimed < self.batch_size as usize || cancel.is_cancelled() {
                        return Ok(Drained::Empty { published });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format_args!("{e:#}"), source = %self.source, "relay batch failed");
                    return Err(e);
                }
            }
        }
    }
}

/// How often the relay loop refreshes the backlog gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// How long the relay keeps polling quickly after publishing something.
pub const HOT_WINDOW: Duration = Duration::from_millis(500);
/// The poll interval within [`HOT_WINDOW`].
pub const HOT_POLL: Duration = Duration::from_millis(5);

/// How a drain ended.
enum Drained {
    /// The outbox had no more rows to claim.
    Empty { published: usize },
    /// Some messages were not confirmed.
    Failed,
}

/// The span of one event's publish and the `traceparent` its message
/// carries: with traces exported, the span is the stored context's child
/// and the message names the span; otherwise the stored value goes as is.
fn publish_span(row: &OutboxRow) -> (tracing::Span, Option<String>) {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("{} publish", row.event_type),
        otel.kind = "producer",
        event_id = %row.id,
        event_type = %row.event_type,
        aggregate_id = %row.aggregate_id,
        sequence = row.sequence,
    );
    let traceparent = match row.traceparent.as_deref().and_then(TraceParent::parse) {
        Some(stored) => {
            stored.adopt(&span);
            Some(TraceParent::of_span(&span).unwrap_or(stored).to_string())
        }
        None => row.traceparent.clone(),
    };
    (span, traceparent)
}

fn envelope_bytes(row: &OutboxRow) -> Vec<u8> {
    let envelope = Envelope {
        id: row.id,
        event_type: row.event_type.clone(),
        version: row.version as u32,
        aggregate_type: row.aggregate_type.clone(),
        aggregate_id: row.aggregate_id,
        sequence: row.sequence,
        occurred_at: row.created_at,
        traceparent: row.traceparent.clone(),
        data: &row.data,
    };
    serde_json::to_vec(&envelope).expect("an envelope of JSON values serialises")
}

/// `host:port/database` of a URL, without credentials, for logs and labels.
pub use infra::outbox::describe_source;
