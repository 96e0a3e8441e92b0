//! Writing events to the transactional outbox. The only entry point takes the
//! caller's transaction, so an event cannot be written outside the business
//! change it describes.
use crate::trace_context::TraceParent;
use proto::{Event, EventId};
use sqlx::{Postgres, Transaction};

/// The `LISTEN`/`NOTIFY` channel the relay waits on.
pub const NOTIFY_CHANNEL: &str = "outbox";

/// A process sends at most one notification per this interval. PostgreSQL
/// serialises the commits of notifying transactions on one lock, so a
/// notification per write caps a busy writer at a few thousand commits a
/// second. A write that skips it is found by the relay, which keeps polling
/// every few milliseconds for a while after each batch it publishes
/// (`outbox-relay`'s `Relay::run`), and by its poll otherwise.
pub const NOTIFY_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether this write should notify: true when no write of this process
/// claimed a notification within [`NOTIFY_EVERY`].
fn claim_notification() -> bool {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static GATE: NotifyGate = NotifyGate::new();
    let now = START.get_or_init(std::time::Instant::now).elapsed();
    GATE.claim(now.as_micros() as u64, NOTIFY_EVERY.as_micros() as u64)
}

/// At most one successful claim per interval, across threads.
struct NotifyGate {
    /// Time of the last successful claim, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
}

impl NotifyGate {
    const fn new() -> Self {
        Self {
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `now` and `every` in any one unit (microseconds above).
    fn claim(&self, now: u64, every: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last.load(Relaxed);
        if last != 0 && now + 1 < last + every {
            return false;
        }
        self.last
            .compare_exchange(last, now + 1, Relaxed, Relaxed)
            .is_ok()
    }
}

/// Creates the outbox, sequence and inbox tables (idempotent).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut shared = sqlx::migrate!("./migrations");
    shared.set_ignore_missing(true);
    shared.run(pool).await
}

/// Appends `event` to the outbox inside `tx` and returns its id. The row and
/// the notification become visible only when the caller commits. With
/// traces exported, the row carries this write's own span (a child of the
/// caller's), so the relay's publish hangs under it.
#[tracing::instrument(
    name = "outbox write",
    skip_all,
    fields(event_type = E::TYPE, aggregate_id = %event.aggregate_id(), event_id = tracing::field::Empty)
)]
pub async fn write<E: Event>(
    tx: &mut Transaction<'_, Postgres>,
    event: &E,
    traceparent: Option<&TraceParent>,
) -> Result<EventId, sqlx::Error> {
    let own = traceparent.and(TraceParent::of_span(&tracing::Span::current()));
    let traceparent = own.as_ref().or(traceparent);
    let aggregate_id = event.aggregate_id();
    let id = EventId::new();
    tracing::Span::current().record("event_id", tracing::field::display(id));
    let data = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // The aggregate's next sequence and the row, in one round trip.
    let sequence: i64 = sqlx::query_scalar(
        "WITH next AS (
             INSERT INTO outbox_sequences (aggregate_type, aggregate_id, last_sequence)
             VALUES ($4, $5, 1)
             ON CONFLICT (aggregate_type, aggregate_id)
             DO UPDATE SET last_sequence = outbox_sequences.last_sequence + 1
             RETURNING last_sequence)
         INSERT INTO outbox
             (id, event_type, version, aggregate_type, aggregate_id, sequence, data, traceparent)
         SELECT $1, $2, $3, $4, $5, next.last_sequence, $6, $7 FROM next
         RETURNING sequence",
    )
    .bind(id.0)
    .bind(E::TYPE)
    .bind(E::VERSION as i32)
    .bind(E::AGGREGATE_TYPE)
    .bind(aggregate_id)
    .bind(data)
    .bind(traceparent.map(ToString::to_string))
    .fetch_one(&mut **tx)
    .await?;

    // Delivered at commit (and dropped on rollback), waking the relay at once.
    if claim_notification() {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    tracing::debug!(event_id = %id, sequence, "event written to outbox");
    Ok(id)
}

/// A database URL without credentials or parameters, e.g. `db:5432/posts`:
/// the `source` label of the outbox gauges.
pub fn describe_source(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

/// Sets the backlog gauges of the outbox in `pool`: unpublished rows and
/// the oldest one's age (both read through the partial index of
/// unpublished rows).
pub async fn measure_backlog(pool: &sqlx::PgPool, source: &str) -> Result<(), sqlx::Error> {
    let (count, age): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
         FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    crate::metrics::OUTBOX_BACKLOG
        .with_label_values(&[source])
        .set(count as f64);
    crate::metrics::OUTBOX_OLDEST_AGE
        .with_label_values(&[source])
        .set(age.unwrap_or(0.0));
    Ok(())
}

/// Measures the service's own outbox backlog every `every` until `cancel`
/// fires, so a stalled or stopped relay shows on the service's `/metrics`.
pub async fn watch_backlog(
    pool: sqlx::PgPool,
    source: String,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    while !cancel.is_cancelled() {
        if let Err(e) = measure_backlog(&pool, &source).await {
            tracing::warn!(error = %e, "measuring the outbox backlog failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{describe_source, NotifyGate};

    #[test]
    fn notifications_are_claimed_at_most_once_per_interval() {
        let gate = NotifyGate::new();
        assert!(gate.claim(0, 10), "the first claim");
        assert!(!gate.claim(0, 10), "a second claim at the same time");
        assert!(!gate.claim(9, 10), "a claim within the interval");
        assert!(gate.claim(10, 10), "a claim after the interval");
        assert!(!gate.claim(15, 10), "within the next interval");
        assert!(gate.claim(100, 10), "after a quiet while");
    }

    #[test]
    fn sources_are_described_without_credentials() {
        assert_eq!(
            describe_source("postgres://user:secret@db:5432/posts?sslmode=require"),
            "db:5432/posts"
        );
    }
}
