//! Prometheus metrics, served as text on `/metrics` by every program. One
//! process-wide registry; each family is created on first use.
use actix_web::HttpResponse;
use prometheus::{
    register_counter_vec, register_gauge_vec, register_histogram_vec, CounterVec, Encoder,
    GaugeVec, HistogramVec, TextEncoder,
};
use std::sync::LazyLock;

/// Latency buckets from 1 ms to 10 s.
const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub static HTTP_REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP request latency by route pattern and status.",
        &["method", "route", "status"],
        LATENCY.to_vec()
    )
    .expect("metric registers once")
});

pub static OUTBOX_BACKLOG: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("outbox_backlog", "Unpublished outbox rows.", &["source"])
        .expect("metric registers once")
});

pub static OUTBOX_OLDEST_AGE: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "outbox_oldest_unpublished_age_seconds",
        "Age of the oldest unpublished outbox row (0 when none).",
        &["source"]
    )
    .expect("metric registers once")
});

pub static PUBLISHES: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "relay_publishes_total",
        "Outbox rows sent (published) and how each ended: confirmed by the broker, returned as unroutable, or failed (nack, channel error, or held back behind a failed earlier event of its aggregate).",
        &["source", "outcome"]
    )
    .expect("metric registers once")
});

pub static CONSUMED: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "consumer_messages_total",
        "Messages handled, by queue, event type and outcome (ok, duplicate, retried, deferred, dead_lettered).",
        &["queue", "type", "outcome"]
    )
    .expect("metric registers once")
});

pub static EVENT_DELIVERY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "event_delivery_seconds",
        "From the outbox write of an event (its row's insert time) to a consumer receiving it, first deliveries only, by queue and event type.",
        &["queue", "type"],
        LATENCY.to_vec()
    )
    .expect("metric registers once")
});

/// Records how long an event took from the outbox to this consumer; a
/// redelivery (after a crash or a retry) is left out, so the histogram
/// shows the pipe itself.
pub fn observe_delivery(
    queue: &str,
    event_type: &str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    redelivered: bool,
) {
    if redelivered {
        return;
    }
    let seconds = (chrono::Utc::now() - occurred_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    EVENT_DELIVERY
        .with_label_values(&[queue, event_type])
        .observe(seconds.max(0.0));
}

pub static IMAGE_PROCESSING: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "image_processing_seconds",
        "Time to build variants: `decode` (decode, orient, colour) and one `encode` per variant and format.",
        &["stage", "variant", "format"],
        LATENCY.to_vec()
    )
    .expect("metric registers once")
});

pub static DEAD_LETTERS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "dead_letters_total",
        "Dead letters recorded, by dead-letter queue and failure fingerprint.",
        &["queue", "fingerprint"]
    )
    .expect("metric registers once")
});

pub static DEAD_LETTERS_PENDING: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "dead_letters_pending",
        "Dead letters neither replayed nor discarded, by dead-letter queue (refreshed every 30 s).",
        &["queue"]
    )
    .expect("metric registers once")
});

pub static DEAD_LETTER_REPLAYS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "dead_letter_replays_total",
        "Dead-letter replays by this process, by queue and outcome (published, returned, failed).",
        &["queue", "outcome"]
    )
    .expect("metric registers once")
});

pub static DEAD_LETTER_DISCARDS: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "dead_letter_discards_total",
        "Dead letters discarded by this process, by queue.",
        &["queue"]
    )
    .expect("metric registers once")
});

/// `GET /metrics`.
pub async fn metrics() -> HttpResponse {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut buffer) {
        tracing::error!(error = %e, "encoding metrics failed");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(buffer)
}
