//! The shared consumer loop against a real broker: retries through the delay
//! queues, and dead letters that keep the original route and say why.
use crate::helpers::{eventually, run_consumer, spawn_relay};
use infra::amqp::{headers, ConsumerOptions, Handler, Outcome, Outgoing, Publisher};
use lapin::{message::Delivery, options::BasicGetOptions, types::AMQPValue};
use proto::topology::{self, IMAGE_SERVICE_POST_EVENTS};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Fails transiently `failures` times, then succeeds; or always gives `last`.
pub(crate) struct Flaky {
    calls: AtomicUsize,
    failures: usize,
    last: Outcome,
}

impl Handler for Flaky {
    async fn handle(&self, _: &Delivery) -> Outcome {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        match (&self.last, call < self.failures) {
            // `Defer` as the last outcome means: defer `failures` times, then succeed.
            (Outcome::Defer(_), true) => Outcome::Defer(format!("waiting {call}")),
            (Outcome::Defer(_), false) => Outcome::Done,
            (_, true) => Outcome::Retry(format!("transient failure {call}")),
            (last, false) => last.clone(),
        }
    }
}

pub(crate) async fn run(
    failures: usize,
    last: Outcome,
) -> (Arc<Flaky>, crate::helpers::TestRelay, CancellationToken) {
    let app = spawn_relay().await;
    let publisher = Publisher::new(&app.connection).await.unwrap();
    let results = publisher
        .publish_all(vec![Outgoing {
            exchange: topology::POST_EVENTS,
            routing_key: "post.created",
            body: br#"{"any":"body"}"#,
            properties: infra::amqp::event_properties("event-1", "post.created", None),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let handler = Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        failures,
        last,
    });
    let mut options = ConsumerOptions::new(format!("{}@test", IMAGE_SERVICE_POST_EVENTS.name), 2);
    options.retry_delays = vec![Duration::from_millis(50); 2];
    let cancel = run_consumer(&app.amqp_url, handler.clone(), options).await;
    (handler, app, cancel)
}

async fn dead_letter(app: &crate::helpers::TestRelay) -> Option<lapin::message::BasicGetMessage> {
    let dlq = topology::dead_letter_queue(IMAGE_SERVICE_POST_EVENTS.name);
    app.channel
        .basic_get(&dlq, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

fn header(message: &lapin::message::BasicGetMessage, name: &str) -> String {
    match message
        .delivery
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .get(name)
    {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::LongLongInt(n)) => n.to_string(),
        other => panic!("header {name}: {other:?}"),
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_after_a_delay_and_then_succeeds() {
    let (handler, app, cancel) = run(2, Outcome::Done).await;
    let calls = eventually("three deliveries", Duration::from_secs(20), || {
        let n = handler.calls.load(Ordering::SeqCst);
        async move {
            if n >= 3 {
                Ok(n)
            } else {
                Err(format!("{n} calls"))
            }
        }
    })
    .await;
    assert_eq!(calls, 3);
    cancel.cancel();
    assert!(dead_letter(&app).await.is_none(), "nothing dead-lettered");
    app.cleanup().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_with_its_history() {
    let (handler, app, cancel) = run(usize::MAX, Outcome::Done).await;
    let message = eventually("a dead letter", Duration::from_secs(20), || async {
        dead_letter(&app).await.ok_or_else(|| "none yet".to_owned())
    })
    .await;
    cancel.cancel();
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        3,
        "the first try and two retries"
    );
    assert_eq!(&message.delivery.data[..], br#"{"any":"body"}"#);
    assert_eq!(
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        "event-1"
    );
    assert_eq!(header(&message, headers::ATTEMPTS), "3");
    assert_eq!(
        header(&message, headers::ORIGINAL_EXCHANGE),
        topology::POST_EVENTS
    );
    assert_eq!(
        header(&message, headers::ORIGINAL_ROUTING_KEY),
        "post.created"
    );
    assert!(header(&message, headers::FAILURE_REASON)
        .contains("gave up after 3 attempts: transient failure 2"));
    assert!(header(&message, headers::CONSUMER).starts_with(IMAGE_SERVICE_POST_EVENTS.name));
    assert!(
        header(&message, headers::FIRST_FAILED_AT) <= header(&message, headers::LAST_FAILED_AT)
    );
    assert!(
        message.delivery.properties.expiration().is_none(),
        "no retry expiration in the DLQ"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let (handler, app, cancel) = run(0, Outcome::DeadLetter("malformed envelope".into())).await;
    let message = eventually("a dead letter", Duration::from_secs(20), || async {
        dead_letter(&app).await.ok_or_else(|| "none yet".to_owned())
    })
    .await;
    cancel.cancel();
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    assert_eq!(header(&message, headers::ATTEMPTS), "1");
    assert_eq!(
        header(&message, headers::FAILURE_REASON),
        "malformed envelope"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_deferred_message_comes_back_soon_without_using_up_its_retries() {
    let (handler, app, cancel) = run(5, Outcome::Defer(String::new())).await;
    eventually("six deliveries", Duration::from_secs(20), || {
        let n = handler.calls.load(Ordering::SeqCst);
        async move {
            if n >= 6 {
                Ok(n)
            } else {
                Err(format!("{n} calls"))
            }
        }
    })
    .await;
    cancel.cancel();
    assert!(
        dead_letter(&app).await.is_none(),
        "five deferrals are not five failed attempts"
    );
    app.cleanup().await;
}

/// Defers once, then fails for good.
struct DeferThenFail(AtomicUsize);

impl Handler for DeferThenFail {
    async fn handle(&self, _: &Delivery) -> Outcome {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Outcome::Defer("waiting for sequence 1".into()),
            _ => Outcome::DeadLetter("malformed payload".into()),
        }
    }
}

#[tokio::test]
async fn a_dead_letter_after_a_deferral_names_the_original_route() {
    let app = spawn_relay().await;
    let publisher = Publisher::new(&app.connection).await.unwrap();
    let results = publisher
        .publish_all(vec![Outgoing {
            exchange: topology::POST_EVENTS,
            routing_key: "post.updated",
            body: br#"{"any":"body"}"#,
            properties: infra::amqp::event_properties("event-2", "post.updated", None),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let handler = Arc::new(DeferThenFail(AtomicUsize::new(0)));
    let options = ConsumerOptions::new(format!("{}@test", IMAGE_SERVICE_POST_EVENTS.name), 2);
    let stop = run_consumer(&app.amqp_url, handler, options).await;
    let message = eventually("a dead letter", Duration::from_secs(20), || async {
        dead_letter(&app).await.ok_or_else(|| "none yet".to_owned())
    })
    .await;
    stop.cancel();
    assert_eq!(
        header(&message, headers::ORIGINAL_EXCHANGE),
        topology::POST_EVENTS
    );
    assert_eq!(
        header(&message, headers::ORIGINAL_ROUTING_KEY),
        "post.updated"
    );
    app.cleanup().await;
}
