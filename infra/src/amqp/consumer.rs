//! The consumer loop: bounded prefetch, handlers run concurrently, manual
//! acknowledgements, graceful stop, reconnection with backoff.
use super::{connect, declare_topology, failures::settle, Publisher};
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Connection,
};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge.
    Done,
    /// Handled before (the inbox knew its event id): acknowledge, counted
    /// apart so redeliveries and replays show.
    Duplicate,
    /// A transient failure: redeliver after a backoff.
    Retry(String),
    /// Not yet: the message waits for another (an earlier event of its
    /// aggregate). Redelivered after a short pause, many times, without
    /// using up its retries.
    Defer(String),
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
    /// How long a transiently failing message waits before each retry; its
    /// length is the number of retries before dead-lettering. Each delay is
    /// capped by the matching step of `proto::topology::RETRY_DELAYS_MS`.
    pub retry_delays: Vec<Duration>,
}

impl ConsumerOptions {
    /// The default retry ladder (1 s, 5 s, 30 s, 2 min, 5 min).
    pub fn new(name: String, concurrency: u16) -> Self {
        Self {
            name,
            concurrency,
            retry_delays: proto::topology::RETRY_DELAYS_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }
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
    // Retries and dead letters are published with confirms on their own channel.
    let publisher = Publisher::new(connection).await?;
    let retry_delays: Arc<[Duration]> = options.retry_delays.clone().into();
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
        let (handler, publisher, name, delays) = (
            handler.clone(),
            publisher.clone(),
            name.clone(),
            retry_delays.clone(),
        );
        tasks.spawn(async move {
            let outcome = handler.handle(&delivery).await;
            if let Err(e) = settle(&delivery, outcome, &publisher, &name, &delays).await {
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

/// Consumer names are `<queue>@<host>-<pid>`; the queue part routes retries
/// and dead letters.
pub(super) fn consumer_queue(consumer: &str) -> &str {
    consumer.split('@').next().unwrap_or(consumer)
}

/// Reconnection backoff: from 200 ms, doubling, capped at 10 s.
fn backoff(failures: i64) -> Duration {
    let exp = failures.clamp(0, 6) as u32;
    Duration::from_millis((100u64 << (exp + 1)).min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(800));
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
