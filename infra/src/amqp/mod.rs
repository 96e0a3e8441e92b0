//! RabbitMQ helpers: connecting, declaring the topology, publishing with
//! confirms, and a consumer loop with manual acknowledgements, retries
//! through delay queues and dead letters.
mod consumer;
mod failures;
pub use failures::jittered;

pub use consumer::{consume, consume_forever, consumer_name, ConsumerOptions, Handler, Outcome};

use crate::trace_context::TRACEPARENT;
use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use proto::topology::{self, QueueSpec};

/// Headers a failing message gains, on its way through the retry queues
/// and into its dead-letter queue.
pub mod headers {
    /// The last failure's reason.
    pub const FAILURE_REASON: &str = "x-failure-reason";
    /// Where the message was first published, kept across retries.
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    /// The consumer that gave up on it.
    pub const CONSUMER: &str = "x-consumer";
    pub const FIRST_FAILED_AT: &str = "x-first-failed-at";
    pub const LAST_FAILED_AT: &str = "x-last-failed-at";
    /// Failed attempts so far.
    pub const ATTEMPTS: &str = "x-attempts";
    /// Times the message was deferred so far.
    pub const DEFERRALS: &str = "x-deferrals";
    /// Times an SRE replayed the message from its dead-letter queue.
    pub const REPLAY_COUNT: &str = "x-replay-count";
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
        for (name, args) in queues_of(&spec) {
            if !queue_exists(connection, &name).await? {
                let options = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel.queue_declare(&name, options, args).await?;
            }
        }
        let dlq = topology::dead_letter_queue(spec.name);
        let no_args = FieldTable::default;
        channel
            .queue_bind(
                &dlq,
                topology::DEAD_LETTERS,
                &dlq,
                QueueBindOptions::default(),
                no_args(),
            )
            .await?;
        for pattern in spec.bindings {
            channel
                .queue_bind(
                    spec.name,
                    spec.exchange,
                    pattern,
                    QueueBindOptions::default(),
                    no_args(),
                )
                .await?;
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

/// A consumer queue, its dead-letter queue and its retry ladder, each with
/// its arguments. All are quorum queues: replicated, and the only kind with
/// delivery limits.
fn queues_of(spec: &QueueSpec) -> Vec<(String, FieldTable)> {
    let dlq = topology::dead_letter_queue(spec.name);
    let mut queues = vec![(dlq.clone(), quorum())];

    for (step, delay) in topology::RETRY_DELAYS_MS.iter().enumerate() {
        let mut args = quorum();
        // Messages wait here for the step's delay, then the broker moves them
        // back to the consumer queue through the default exchange.
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(*delay as i64),
        );
        args.insert("x-dead-letter-exchange".into(), long_string(""));
        args.insert("x-dead-letter-routing-key".into(), long_string(spec.name));
        at_least_once(&mut args);
        queues.push((topology::retry_queue(spec.name, step), args));
    }

    let mut args = quorum();
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
    at_least_once(&mut args);
    // The consumer queue last: its existence means the rest was declared.
    queues.push((spec.name.to_owned(), args));
    queues
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// At-least-once dead-lettering: a message leaves its queue only once the
/// target queue confirmed it (requires reject-publish overflow).
fn at_least_once(args: &mut FieldTable) {
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    args.insert("x-overflow".into(), long_string("reject-publish"));
}

pub(crate) fn long_string(value: &str) -> AMQPValue {
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

/// Whether this is a message's first delivery: not redelivered by the
/// broker, and never back from a retry, a deferral or a replay.
pub fn first_delivery(delivery: &lapin::message::Delivery) -> bool {
    let table = delivery.properties.headers().as_ref();
    !delivery.redelivered
        && [headers::ATTEMPTS, headers::DEFERRALS, headers::REPLAY_COUNT]
            .iter()
            .all(|name| table.and_then(|t| t.inner().get(*name)).is_none())
}

pub(crate) fn header_int(table: Option<&FieldTable>, name: &str) -> Option<i64> {
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
        self.send_all(messages).await.confirmed().await
    }

    /// Publishes all messages without waiting for their confirms: the
    /// caller may do other work (claim the next batch) and then await
    /// [`Sent::confirmed`]. Messages sent later on this channel reach a
    /// queue after these.
    pub async fn send_all(&self, messages: Vec<Outgoing<'_>>) -> Sent {
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
        Sent { pending }
    }
}

/// Messages published and not yet confirmed.
#[must_use = "a publish is only safe once its confirm has been awaited"]
pub struct Sent {
    pending: Vec<lapin::Result<lapin::publisher_confirm::PublisherConfirm>>,
}

impl Sent {
    /// Waits for every confirm; the result of each message in the order sent.
    pub async fn confirmed(self) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(self.pending.len());
        for confirm in self.pending {
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
