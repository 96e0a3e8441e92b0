//! Claims committed outbox rows, publishes them with confirms, and marks them
//! published only after the broker confirmed them. A crash between publish
//! and mark causes a duplicate (consumers deduplicate), never a loss.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` in `position` order among
//! *all* unpublished rows, not "after the last position seen", so a row whose
//! transaction commits late (with a lower position) is still found.
use chrono::{DateTime, Utc};
use infra::amqp::{event_properties, Outgoing, Publisher, Sent};
use infra::trace_context::TraceParent;
use proto::{topology, Envelope};
use sqlx::PgPool;
use std::collections::{HashSet, VecDeque};
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
        match self.claim().await? {
            None => Ok(BatchOutcome::default()),
            Some(claimed) => Ok(self
                .send(claimed)
                .await
                .finish(&HashSet::new())
                .await?
                .outcome),
        }
    }

    /// Claims up to one batch in a transaction that holds the rows locked
    /// until they are marked; `None` when nothing is waiting.
    async fn claim(&self) -> anyhow::Result<Option<Claimed>> {
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
        Ok((!rows.is_empty()).then_some(Claimed { tx, rows }))
    }

    /// Publishes a claimed batch; its confirms are awaited by [`InFlight::finish`].
    async fn send(&self, claimed: Claimed) -> InFlight<'_> {
        let Claimed { tx, rows } = claimed;
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
        let sent = self.publisher.send_all(messages).await;
        InFlight {
            relay: self,
            tx,
            rows,
            sent,
            spans,
        }
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
    /// messages failed and the caller should back off. Up to [`IN_FLIGHT`]
    /// batches are claimed and sent while the broker confirms the oldest, so the
    /// database and the broker work at the same time; batches go out in
    /// claim order on one channel, so each aggregate's events reach the
    /// queue in order. When `cancel` fires it stops claiming: the batches
    /// in flight have their confirms awaited and their rows marked, so a
    /// stop publishes nothing twice.
    async fn drain(&self, cancel: &CancellationToken) -> anyhow::Result<Drained> {
        let (mut published, mut failed, mut short) = (0, false, false);
        let mut error = None;
        let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::with_capacity(IN_FLIGHT);
        // Aggregates with an event this drain did not mark: their later
        // events are not marked either.
        let mut blocked = HashSet::new();
        loop {
            let claiming = !(failed || short || error.is_some() || cancel.is_cancelled());
            if claiming {
                match self.claim().await {
                    Ok(Some(claimed)) => {
                        short = claimed.rows.len() < self.batch_size as usize;
                        in_flight.push_back(self.send(claimed).await);
                    }
                    Ok(None) => short = true,
                    Err(e) => error = Some(e),
                }
            }
            // Oldest first, once the pipeline is full or nothing more comes.
            if in_flight.len() < IN_FLIGHT && claiming && !short && error.is_none() {
                continue;
            }
            let Some(oldest) = in_flight.pop_front() else {
                break;
            };
            match oldest.finish(&blocked).await {
                Ok(Finished {
                    outcome,
                    unconfirmed,
                }) => {
                    published += outcome.published;
                    failed |= outcome.failed > 0;
                    blocked.extend(unconfirmed);
                }
                Err(e) => {
                    // Its rows stay unpublished. The later batches are rolled
                    // back too (they may hold the same aggregates' later
                    // events), and all are sent again in order.
                    in_flight.clear();
                    error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = error {
            tracing::error!(error = %format_args!("{e:#}"), source = %self.source, "relay batch failed");
            return Err(e);
        }
        Ok(match failed {
            true => Drained::Failed,
            false => Drained::Empty { published },
        })
    }
}

/// Rows claimed and locked, not yet published.
struct Claimed {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<OutboxRow>,
}

/// A batch published and awaiting its confirms; its transaction still
/// holds the rows.
struct InFlight<'r> {
    relay: &'r Relay,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<OutboxRow>,
    sent: Sent,
    /// Kept open until the confirms are in.
    spans: Vec<(tracing::Span, Option<String>)>,
}

/// What finishing a batch did.
struct Finished {
    outcome: BatchOutcome,
    /// Aggregates with an event of this batch that was not marked.
    unconfirmed: HashSet<Uuid>,
}

impl InFlight<'_> {
    /// Awaits the confirms and marks what was confirmed. A row is marked
    /// only if it and every earlier row of its aggregate (in this batch, or
    /// in an earlier batch when its aggregate is in `blocked`) were
    /// confirmed, so a failed event is retried before the later events of
    /// its aggregate are considered done.
    async fn finish(self, blocked: &HashSet<Uuid>) -> anyhow::Result<Finished> {
        use anyhow::Context;
        let InFlight {
            relay,
            mut tx,
            rows,
            sent,
            spans,
        } = self;
        let results = sent.confirmed().await;
        drop(spans);
        let mut unconfirmed = HashSet::new();
        let mut confirmed = Vec::new();
        let (mut failed, mut returned) = (0, 0);
        for (row, result) in rows.iter().zip(results) {
            let held =
                blocked.contains(&row.aggregate_id) || unconfirmed.contains(&row.aggregate_id);
            match result {
                Ok(()) if !held => confirmed.push(row.position),
                Ok(()) => {
                    unconfirmed.insert(row.aggregate_id);
                    failed += 1;
                }
                Err(e) => {
                    tracing::warn!(event_id = %row.id, event_type = %row.event_type, error = %e, "publish failed; will retry");
                    unconfirmed.insert(row.aggregate_id);
                    if matches!(e, infra::amqp::PublishError::Returned(_)) {
                        returned += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        sqlx::query("UPDATE outbox SET published_at = clock_timestamp() WHERE position = ANY($1)")
            .bind(&confirmed)
            .execute(&mut *tx)
            .await
            .context("mark rows published")?;
        tx.commit().await.context("commit published marks")?;
        let source = relay.source.as_str();
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
        Ok(Finished {
            outcome: BatchOutcome {
                claimed: rows.len(),
                published: confirmed.len(),
                failed,
            },
            unconfirmed,
        })
    }
}

/// Batches published and awaiting their confirms at once: while the broker
/// confirms the oldest, the next are claimed and sent.
pub const IN_FLIGHT: usize = 3;

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
