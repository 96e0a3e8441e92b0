//! Writing events to the transactional outbox. The only entry point takes the
//! caller's transaction, so an event cannot be written outside the business
//! change it describes.
use crate::trace_context::TraceParent;
use proto::{Event, EventId};
use sqlx::{Postgres, Transaction};

/// The `LISTEN`/`NOTIFY` channel the relay waits on.
pub const NOTIFY_CHANNEL: &str = "outbox";

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
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO outbox_sequences (aggregate_type, aggregate_id, last_sequence)
         VALUES ($1, $2, 1)
         ON CONFLICT (aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = outbox_sequences.last_sequence + 1
         RETURNING last_sequence",
    )
    .bind(E::AGGREGATE_TYPE)
    .bind(aggregate_id)
    .fetch_one(&mut **tx)
    .await?;

    let id = EventId::new();
    tracing::Span::current().record("event_id", tracing::field::display(id));
    let data = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO outbox
            (id, event_type, version, aggregate_type, aggregate_id, sequence, data, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.0)
    .bind(E::TYPE)
    .bind(E::VERSION as i32)
    .bind(E::AGGREGATE_TYPE)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(data)
    .bind(traceparent.map(ToString::to_string))
    .execute(&mut **tx)
    .await?;

    // Delivered at commit (and dropped on rollback), waking the relay at once.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut **tx)
        .await?;
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
    use super::describe_source;

    #[test]
    fn sources_are_described_without_credentials() {
        assert_eq!(
            describe_source("postgres://user:secret@db:5432/posts?sslmode=require"),
            "db:5432/posts"
        );
    }
}
