//! RabbitMQ helpers: connecting, declaring the topology, publishing with
//! confirms, and a consumer loop with manual acknowledgements.
use crate::trace_context::TRACEPARENT;
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use proto::topology::{self, QueueSpec};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// Header names added to dead-lettered messages.
pub mod headers {
    pub const FAILURE_REASON: &str = "x-failure-reason";
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    pub const CONSUMER: &str = "x-consumer";
    pub const FAILED_AT: &str = "x-failed-at";
    pub const ATTEMPTS: &str = "x-attempts";
    /// Set by quorum queues on redelivery.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// Opens a connection driven by the tokio runtime.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(name.into());
    Connection::connect(url, properties).await
}

/// Declares every exchange and queue of the system. Safe to run from every
/// program at every start: re-declaring with equal arguments is a no-op.
/// Queues that already exist are left alone (checked passively first): some
/// RabbitMQ versions break a quorum queue declared by several connections at
/// the same instant, so only a first start should ever create them.
pub async fn declare_topology(connection: &Connection) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        // Survive broker restarts; events are persistent messages.
        durable: true,
        ..Default::default()
    };
    for exchange in topology::EXCHANGES {
        channel
            .exchange_declare(
                exchange,
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    // Dead letters are routed by queue name, so a direct exchange suffices.
    channel
        .exchange_declare(
            topology::DEAD_LETTERS,
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    for spec in topology::QUEUES {
        if !queue_exists(connection, spec.name).await? {
            declare_queue(&channel, &spec).await?;
        }
    }
    let _ = channel.close(200, "topology declared").await;
    Ok(())
}

/// Checks for a queue on a throw-away channel: a passive declare of a missing
/// queue closes its channel. Any refusal counts as missing; the declaration
/// that follows reports real errors.
async fn queue_exists(connection: &Connection, queue: &str) -> lapin::Result<bool> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let exists = probe
        .queue_declare(queue, passive, FieldTable::default())
        .await
        .is_ok();
    if exists {
        let _ = probe.close(200, "probe done").await;
    }
    Ok(exists)
}

async fn declare_queue(channel: &Channel, spec: &QueueSpec) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let dlq = topology::dead_letter_queue(spec.name);
    let mut dlq_args = FieldTable::default();
    // Quorum queues are replicated and the only kind with delivery limits.
    dlq_args.insert("x-queue-type".into(), long_string("quorum"));
    channel.queue_declare(&dlq, durable, dlq_args).await?;
    channel
        .queue_bind(
            &dlq,
            topology::DEAD_LETTERS,
            &dlq,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    // An explicit limit: a message redelivered this often (a consumer that
    // crashes on it) is dead-lettered instead of looping forever. Never left
    // to the broker's default, which in RabbitMQ 4 silently drops.
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(topology::DELIVERY_LIMIT),
    );
    // Where the broker sends what it dead-letters: this queue's own `.dlq`.
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(topology::DEAD_LETTERS),
    );
    args.insert("x-dead-letter-routing-key".into(), long_string(&dlq));
    // At-least-once dead-lettering: the message leaves this queue only once
    // the DLQ has confirmed it (requires reject-publish overflow).
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    args.insert("x-overflow".into(), long_string("reject-publish"));
    channel.queue_declare(spec.name, durable, args).await?;
    for pattern in spec.bindings {
        channel
            .queue_bind(
                spec.name,
                spec.exchange,
                pattern,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Reads a string header.
pub fn header_str<'a>(table: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    match table?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

fn header_int(table: Option<&FieldTable>, name: &str) -> Option<i64> {
    match table?.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// Why a publish did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message was unroutable and returned: {0}")]
    Returned(String),
}

/// A channel in confirm mode. Every publish is `mandatory`, so a message no
/// queue takes comes back as an error instead of vanishing.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

/// One message to publish.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

impl Publisher {
    pub async fn new(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes all messages, then waits for every confirm. The result for
    /// each message is in input order. Pipelining the confirms costs one
    /// round trip per batch instead of one per message.
    pub async fn publish_all(&self, messages: Vec<Outgoing<'_>>) -> Vec<Result<(), PublishError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let options = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            pending.push(
                self.channel
                    .basic_publish(m.exchange, m.routing_key, options, m.body, m.properties)
                    .await,
            );
        }
        let mut results = Vec::with_capacity(pending.len());
        for confirm in pending {
            let result = match confirm {
                Err(e) => Err(PublishError::Broker(e)),
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Ack(None)) => Ok(()),
                    Ok(Confirmation::Ack(Some(returned))) => {
                        Err(PublishError::Returned(returned.reply_text.to_string()))
                    }
                    Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked),
                    Ok(Confirmation::NotRequested) => Ok(()),
                    Err(e) => Err(PublishError::Broker(e)),
                },
            };
            results.push(result);
        }
        results
    }
}

/// Message properties for an event: persistent, JSON, `message_id` = event
/// id, `type` = event type, trace context in the headers.
pub fn event_properties(
    event_id: &str,
    event_type: &str,
    traceparent: Option<&str>,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(tp) = traceparent {
        headers.insert(TRACEPARENT.into(), long_string(tp));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(event_id))
        .with_type(ShortString::from(event_type))
        .with_timestamp(chrono::Utc::now().timestamp() as u64)
        .with_headers(headers)
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or a duplicate): acknowledge.
    Done,
    /// A transient failure: redeliver after a backoff.
    Retry(String),
    /// A permanent failure: move to the dead-letter queue with this reason.
    DeadLetter(String),
}

/// Handles one message. Implementations must be idempotent: a message can
/// arrive more than once.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer name, recorded on dead letters.
    pub name: String,
    /// Messages handled at once (and the prefetch count).
    pub concurrency: u16,
}

/// Consumes `queue` until `cancel` fires, then stops taking messages, lets
/// the ones in flight finish, and returns.
pub async fn consume<H: Handler>(
    connection: &Connection,
    queue: &str,
    options: ConsumerOptions,
    handler: Arc<H>,
    cancel: CancellationToken,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    // Bounded prefetch: the broker never hands this process more than it works on.
    channel
        .basic_qos(options.concurrency, BasicQosOptions::default())
        .await?;
    let dead_letters = Publisher::new(connection).await?;
    let mut consumer = channel
        .basic_consume(
            queue,
            &options.name,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let slots = Arc::new(Semaphore::new(options.concurrency.into()));
    let mut tasks = JoinSet::new();
    let name: Arc<str> = options.name.into();
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(e),
            None => break,
        };
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        let (handler, dead_letters, name) = (handler.clone(), dead_letters.clone(), name.clone());
        tasks.spawn(async move {
            let outcome = handler.handle(&delivery).await;
            if let Err(e) = settle(&delivery, outcome, &dead_letters, &name).await {
                tracing::error!(error = %e, "could not settle delivery; the broker will redeliver it");
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    // Finish what is in flight; unacknowledged messages return to the queue
    // when the channel closes.
    while tasks.join_next().await.is_some() {}
    let _ = channel.close(200, "shutting down").await;
    Ok(())
}

/// Runs [`consume`] on `queue` until `cancel` fires, reconnecting with
/// backoff whenever the broker connection fails. The topology is declared on
/// every (re)connect, so a consumer can start before the relay.
pub async fn consume_forever<H: Handler>(
    url: &str,
    queue: &str,
    options: ConsumerOptions,
    handler: Arc<H>,
    status: crate::health::BrokerStatus,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let result = async {
            let connection = connect(url, &options.name).await?;
            declare_topology(&connection).await?;
            status.set(true);
            tracing::info!(queue, "consuming");
            let result = consume(
                &connection,
                queue,
                options.clone(),
                handler.clone(),
                cancel.clone(),
            )
            .await;
            let _ = connection.close(200, "consumer stopping").await;
            result
        }
        .await;
        status.set(false);
        if cancel.is_cancelled() {
            break;
        }
        failures += 1;
        let delay = backoff(i64::from(failures));
        match result {
            Ok(()) => tracing::warn!(queue, "consumer stream ended; reconnecting"),
            Err(e) => {
                tracing::error!(queue, error = %e, delay_ms = delay.as_millis() as u64, "consumer failed; reconnecting")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A consumer name unique to this process: `<queue>@<host>-<pid>`.
pub fn consumer_name(queue: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{queue}@{host}-{}", std::process::id())
}

async fn settle(
    delivery: &Delivery,
    outcome: Outcome,
    dead_letters: &Publisher,
    consumer: &str,
) -> Result<(), PublishError> {
    match outcome {
        Outcome::Done => {
            delivery.ack(BasicAckOptions::default()).await?;
        }
        Outcome::Retry(reason) => {
            let attempt = header_int(
                delivery.properties.headers().as_ref(),
                headers::DELIVERY_COUNT,
            )
            .unwrap_or(0);
            let delay = backoff(attempt);
            tracing::warn!(%reason, attempt, delay_ms = delay.as_millis() as u64, "transient failure; will retry");
            tokio::time::sleep(delay).await;
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
        }
        Outcome::DeadLetter(reason) => {
            tracing::error!(%reason, "permanent failure; dead-lettering");
            dead_letter(delivery, &reason, dead_letters, consumer).await?;
            delivery.ack(BasicAckOptions::default()).await?;
        }
    }
    Ok(())
}

/// Exponential backoff from 100 ms, capped at 10 s.
fn backoff(attempt: i64) -> Duration {
    let exp = attempt.clamp(0, 7) as u32;
    Duration::from_millis((100u64 << exp).min(10_000))
}

/// Publishes a copy of the delivery to its queue's `.dlq` with the reason and
/// the original route in headers; the caller acks only after the confirm.
async fn dead_letter(
    delivery: &Delivery,
    reason: &str,
    publisher: &Publisher,
    consumer: &str,
) -> Result<(), PublishError> {
    let queue = consumer_queue(consumer);
    let dlq = topology::dead_letter_queue(queue);
    let mut table = delivery.properties.headers().clone().unwrap_or_default();
    table.insert(headers::FAILURE_REASON.into(), long_string(reason));
    table.insert(
        headers::ORIGINAL_EXCHANGE.into(),
        long_string(delivery.exchange.as_str()),
    );
    table.insert(
        headers::ORIGINAL_ROUTING_KEY.into(),
        long_string(delivery.routing_key.as_str()),
    );
    table.insert(headers::CONSUMER.into(), long_string(consumer));
    table.insert(
        headers::FAILED_AT.into(),
        long_string(&chrono::Utc::now().to_rfc3339()),
    );
    let attempts = header_int(
        delivery.properties.headers().as_ref(),
        headers::DELIVERY_COUNT,
    )
    .unwrap_or(0)
        + 1;
    table.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(attempts));
    let properties = delivery.properties.clone().with_headers(table);
    let result = publisher
        .publish_all(vec![Outgoing {
            exchange: topology::DEAD_LETTERS,
            routing_key: &dlq,
            body: &delivery.data,
            properties,
        }])
        .await;
    result.into_iter().next().unwrap_or(Ok(()))
}

/// Consumer names are `<queue>@<host-or-instance>`; the queue part routes dead letters.
fn consumer_queue(consumer: &str) -> &str {
    consumer.split('@').next().unwrap_or(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(50), Duration::from_millis(10_000));
    }

    #[test]
    fn the_queue_is_read_from_the_consumer_name() {
        assert_eq!(
            consumer_queue("image-service.post-events@host-1"),
            "image-service.post-events"
        );
    }
}
