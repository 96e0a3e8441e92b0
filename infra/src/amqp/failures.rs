//! What happens to a delivery after its handler ran: ack, retry through the
//! delay queues, or dead-letter with the reason. Every copy is published with
//! confirms before the original is acknowledged, so a crash in between
//! duplicates a message and never loses one.
use super::{header_int, header_str, headers, long_string, Outgoing, PublishError, Publisher};
use crate::amqp::consumer::{consumer_queue, Outcome};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use proto::topology;
use std::time::Duration;

/// How long a deferred message waits before it is tried again.
const DEFER_DELAY: Duration = Duration::from_millis(200);
/// Deferrals before giving up (about a minute of waiting).
const MAX_DEFERRALS: i64 = 300;

pub(super) async fn settle(
    delivery: &Delivery,
    outcome: Outcome,
    publisher: &Publisher,
    consumer: &str,
    retry_delays: &[Duration],
) -> Result<(), PublishError> {
    let event_type = delivery
        .properties
        .kind()
        .as_ref()
        .map(|t| t.as_str())
        .unwrap_or("unknown");
    let label = match &outcome {
        Outcome::Done => "ok",
        Outcome::Duplicate => "duplicate",
        Outcome::Retry(_) => "retried",
        Outcome::Defer(_) => "deferred",
        Outcome::DeadLetter(_) => "dead_lettered",
    };
    crate::metrics::CONSUMED
        .with_label_values(&[consumer_queue(consumer), event_type, label])
        .inc();
    match outcome {
        Outcome::Done | Outcome::Duplicate => delivery.ack(BasicAckOptions::default()).await?,
        Outcome::Retry(reason) => {
            let attempts = attempts_so_far(delivery) + 1;
            let step = (attempts - 1) as usize;
            match retry_delays
                .get(step)
                .filter(|_| step < topology::RETRY_DELAYS_MS.len())
            {
                Some(delay) => {
                    let delay = jittered(*delay);
                    tracing::warn!(%reason, attempts, delay_ms = delay.as_millis() as u64, "transient failure; will retry");
                    let queue = topology::retry_queue(consumer_queue(consumer), step);
                    let table = failure_headers(delivery, &reason, consumer, attempts);
                    let properties = delivery
                        .properties
                        .clone()
                        .with_headers(table)
                        .with_expiration(ShortString::from(delay.as_millis().to_string()));
                    let sent = publish(publisher, "", &queue, delivery, properties).await;
                    if let Err(e) = sent {
                        // Could not park it: let the broker redeliver it instead.
                        tracing::error!(error = %e, "retry queue refused the message; requeueing");
                        delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await?;
                        return Ok(());
                    }
                    delivery.ack(BasicAckOptions::default()).await?;
                }
                None => {
                    let reason = format!("gave up after {attempts} attempts: {reason}");
                    tracing::error!(%reason, "dead-lettering");
                    dead_letter(delivery, &reason, publisher, consumer, attempts).await?;
                    delivery.ack(BasicAckOptions::default()).await?;
                }
            }
        }
        Outcome::Defer(reason) => {
            let deferrals = header_int(delivery.properties.headers().as_ref(), headers::DEFERRALS)
                .unwrap_or(0)
                + 1;
            if deferrals > MAX_DEFERRALS {
                let reason = format!("gave up after waiting {MAX_DEFERRALS} times: {reason}");
                tracing::error!(%reason, "dead-lettering");
                dead_letter(
                    delivery,
                    &reason,
                    publisher,
                    consumer,
                    attempts_so_far(delivery),
                )
                .await?;
                delivery.ack(BasicAckOptions::default()).await?;
                return Ok(());
            }
            tracing::info!(%reason, deferrals, "deferred");
            let mut table = delivery.properties.headers().clone().unwrap_or_default();
            table.insert(headers::DEFERRALS.into(), AMQPValue::LongLongInt(deferrals));
            keep_original_route(delivery, &mut table);
            let delay = jittered(DEFER_DELAY);
            let properties = delivery
                .properties
                .clone()
                .with_headers(table)
                .with_expiration(ShortString::from(delay.as_millis().to_string()));
            // The first retry queue returns it; its own TTL caps the wait.
            let queue = topology::retry_queue(consumer_queue(consumer), 0);
            if let Err(e) = publish(publisher, "", &queue, delivery, properties).await {
                tracing::error!(error = %e, "retry queue refused the message; requeueing");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                return Ok(());
            }
            delivery.ack(BasicAckOptions::default()).await?;
        }
        Outcome::DeadLetter(reason) => {
            tracing::error!(%reason, "permanent failure; dead-lettering");
            let attempts = attempts_so_far(delivery) + 1;
            dead_letter(delivery, &reason, publisher, consumer, attempts).await?;
            delivery.ack(BasicAckOptions::default()).await?;
        }
    }
    Ok(())
}

fn attempts_so_far(delivery: &Delivery) -> i64 {
    header_int(delivery.properties.headers().as_ref(), headers::ATTEMPTS).unwrap_or(0)
}

/// 80–100 % of `delay`, so messages that failed together do not return together.
pub fn jittered(delay: Duration) -> Duration {
    let spread = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    delay.mul_f64(0.8 + 0.2 * spread)
}

/// The delivery's headers plus the failure bookkeeping. The original route
/// and the first failure time are kept from earlier attempts.
fn failure_headers(delivery: &Delivery, reason: &str, consumer: &str, attempts: i64) -> FieldTable {
    let original = delivery.properties.headers().as_ref();
    let mut table = original.cloned().unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339();
    let keep =
        |name: &str, fallback: &str| header_str(original, name).unwrap_or(fallback).to_owned();
    let exchange = keep(headers::ORIGINAL_EXCHANGE, delivery.exchange.as_str());
    let routing_key = keep(headers::ORIGINAL_ROUTING_KEY, delivery.routing_key.as_str());
    let first = keep(headers::FIRST_FAILED_AT, &now);
    table.insert(headers::ORIGINAL_EXCHANGE.into(), long_string(&exchange));
    table.insert(
        headers::ORIGINAL_ROUTING_KEY.into(),
        long_string(&routing_key),
    );
    table.insert(headers::FIRST_FAILED_AT.into(), long_string(&first));
    table.insert(headers::LAST_FAILED_AT.into(), long_string(&now));
    table.insert(headers::FAILURE_REASON.into(), long_string(reason));
    table.insert(headers::CONSUMER.into(), long_string(consumer));
    table.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(attempts));
    table
}

/// Records where the message was first published, unless an earlier trip
/// through a delay queue did: it comes back through the default exchange,
/// and a dead letter must name the real route for a replay.
fn keep_original_route(delivery: &Delivery, table: &mut FieldTable) {
    let current = delivery.properties.headers().as_ref();
    if header_str(current, headers::ORIGINAL_EXCHANGE).is_none() {
        table.insert(
            headers::ORIGINAL_EXCHANGE.into(),
            long_string(delivery.exchange.as_str()),
        );
        table.insert(
            headers::ORIGINAL_ROUTING_KEY.into(),
            long_string(delivery.routing_key.as_str()),
        );
    }
}

/// Publishes a copy to the queue's `.dlq` with the reason and the original
/// route in headers; the caller acks only after the confirm.
async fn dead_letter(
    delivery: &Delivery,
    reason: &str,
    publisher: &Publisher,
    consumer: &str,
    attempts: i64,
) -> Result<(), PublishError> {
    let dlq = topology::dead_letter_queue(consumer_queue(consumer));
    let table = failure_headers(delivery, reason, consumer, attempts);
    // Rebuilt rather than cloned: a retried copy carries its retry delay as
    // an expiration, which must not follow it into the dead-letter queue.
    let original = &delivery.properties;
    let properties = lapin::BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(
            original
                .content_type()
                .clone()
                .unwrap_or_else(|| "application/json".into()),
        )
        .with_message_id(original.message_id().clone().unwrap_or_default())
        .with_type(original.kind().clone().unwrap_or_default())
        .with_timestamp(original.timestamp().unwrap_or_default())
        .with_headers(table);
    publish(
        publisher,
        topology::DEAD_LETTERS,
        &dlq,
        delivery,
        properties,
    )
    .await
}

async fn publish(
    publisher: &Publisher,
    exchange: &str,
    routing_key: &str,
    delivery: &Delivery,
    properties: lapin::BasicProperties,
) -> Result<(), PublishError> {
    let results = publisher
        .publish_all(vec![Outgoing {
            exchange,
            routing_key,
            body: &delivery.data,
            properties,
        }])
        .await;
    results.into_iter().next().unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_of_the_delay() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
    }
}
