//! The relay's dead-letter ingestion: every message of a `.dlq` is stored
//! once, with what it says about its failure, and leaves the queue.
use crate::{consumer::run, helpers::eventually};
use infra::amqp::{headers, Outcome, Outgoing, Publisher};
use lapin::types::AMQPValue;
use proto::topology::{self, IMAGE_SERVICE_POST_EVENTS};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, sqlx::FromRow)]
struct Row {
    queue: String,
    message_id: Option<String>,
    event_type: Option<String>,
    original_exchange: Option<String>,
    original_routing_key: Option<String>,
    attempts: Option<i32>,
    body: Vec<u8>,
    fingerprint: String,
}

async fn depth(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue, passive, Default::default())
        .await
        .unwrap()
        .message_count()
}

/// Ingests the image service's post-event DLQ into a fresh relay database.
async fn start_ingesting(
    app: &crate::helpers::TestRelay,
) -> (String, sqlx::PgPool, CancellationToken) {
    let dlq = topology::dead_letter_queue(IMAGE_SERVICE_POST_EVENTS.name);
    let database = infra::testing::fresh_database("relay_dead_letters").await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    outbox_relay::dead_letters::migrate(&pool).await.unwrap();
    let channel = app.connection.create_channel().await.unwrap();
    let ingesting = CancellationToken::new();
    tokio::spawn({
        let (pool, dlq, token) = (pool.clone(), dlq.clone(), ingesting.clone());
        async move { outbox_relay::dead_letters::ingest(channel, &dlq, pool, token).await }
    });
    (dlq, pool, ingesting)
}

#[tokio::test]
async fn dead_letters_are_stored_once_with_their_metadata_and_leave_the_queue() {
    let (_, app, cancel) = run(
        0,
        Outcome::DeadLetter("unknown event type `post.created`: 17 times".into()),
    )
    .await;
    let (dlq, pool, ingesting) = start_ingesting(&app).await;

    let row: Row = eventually("a stored dead letter", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            sqlx::query_as(
                "SELECT queue, message_id, event_type, original_exchange, original_routing_key,
                            attempts, body, fingerprint FROM dead_letters",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
            .ok_or_else(|| "no row yet".to_owned())
        }
    })
    .await;
    cancel.cancel();
    assert_eq!(row.queue, dlq);
    assert_eq!(row.message_id.as_deref(), Some("event-1"));
    assert_eq!(row.event_type.as_deref(), Some("post.created"));
    assert_eq!(
        (
            row.original_exchange.as_deref(),
            row.original_routing_key.as_deref()
        ),
        (Some("post.events"), Some("post.created"))
    );
    assert_eq!(row.attempts, Some(1));
    assert_eq!(row.body, br#"{"any":"body"}"#.to_vec());
    assert_eq!(
        row.fingerprint,
        "unknown event type `post.created`: # times"
    );

    // The queue is empty, and a redelivered copy is not stored twice.
    eventually("the dlq drained", Duration::from_secs(10), || async {
        match depth(&app.channel, &dlq).await {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        }
    })
    .await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT body FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    let headers: serde_json::Value = sqlx::query_scalar("SELECT headers FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(headers[headers::ATTEMPTS], 1);
    let copy = Publisher::new(&app.connection).await.unwrap();
    let mut table = lapin::types::FieldTable::default();
    for (k, v) in headers.as_object().unwrap() {
        let value = match v {
            serde_json::Value::Number(n) => AMQPValue::LongLongInt(n.as_i64().unwrap()),
            other => AMQPValue::LongString(other.as_str().unwrap_or_default().into()),
        };
        table.insert(k.as_str().into(), value);
    }
    let results = copy
        .publish_all(vec![Outgoing {
            exchange: topology::DEAD_LETTERS,
            routing_key: &dlq,
            body: &stored,
            properties: infra::amqp::event_properties("event-1", "post.created", None)
                .with_headers(table),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok));
    eventually("the copy consumed", Duration::from_secs(10), || async {
        match depth(&app.channel, &dlq).await {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        }
    })
    .await;
    let groups = outbox_relay::dead_letters::store::stats(&pool)
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 1, "a redelivered copy is not stored twice");
    ingesting.cancel();
    app.cleanup().await;
}

#[tokio::test]
async fn a_transient_failure_that_exhausts_its_retries_is_stored_with_its_attempts() {
    let (_, app, cancel) = run(usize::MAX, Outcome::Done).await;
    let (_, pool, ingesting) = start_ingesting(&app).await;
    let (attempts, reason, status): (Option<i32>, String, String) =
        eventually("a stored dead letter", Duration::from_secs(20), || {
            let pool = pool.clone();
            async move {
                sqlx::query_as("SELECT attempts, reason, status FROM dead_letters")
                    .fetch_optional(&pool)
                    .await
                    .unwrap()
                    .ok_or_else(|| "no row yet".to_owned())
            }
        })
        .await;
    cancel.cancel();
    ingesting.cancel();
    assert_eq!(attempts, Some(3), "the first try and two retries");
    assert!(
        reason.starts_with("gave up after 3 attempts: transient failure"),
        "{reason}"
    );
    assert_eq!(status, "pending");
    app.cleanup().await;
}
