//! A relay's dead-letter side on a fresh database and vhost: ingestion of
//! the image service's post-event DLQ runs in the background, and `dlq`
//! commands run in-process or as the real binary.
use crate::helpers::{eventually, spawn_relay, TestRelay};
use infra::amqp::{headers, Outgoing, Publisher};
use lapin::{
    options::BasicGetOptions,
    types::{AMQPValue, FieldTable, LongString},
};
use outbox_relay::configuration::Settings;
use proto::topology::{self, IMAGE_SERVICE_POST_EVENTS};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Dlq {
    pub app: TestRelay,
    pub pool: PgPool,
    pub settings: Settings,
    pub queue: String,
    ingesting: CancellationToken,
}

pub async fn spawn_dlq() -> Dlq {
    let app = spawn_relay().await;
    let database_url = infra::testing::fresh_database("relay_dlq").await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    outbox_relay::dead_letters::migrate(&pool).await.unwrap();
    let queue = topology::dead_letter_queue(IMAGE_SERVICE_POST_EVENTS.name);
    let ingesting = CancellationToken::new();
    let channel = app.connection.create_channel().await.unwrap();
    tokio::spawn({
        let (pool, queue, token) = (pool.clone(), queue.clone(), ingesting.clone());
        async move { outbox_relay::dead_letters::ingest(channel, &queue, pool, token).await }
    });
    let mut settings = Settings::default();
    settings.dead_letters.database_url = database_url;
    settings.amqp.url = app.amqp_url.clone();
    Dlq {
        app,
        pool,
        settings,
        queue,
        ingesting,
    }
}

/// One message as a consumer would have dead-lettered it.
#[derive(Clone, Copy)]
pub struct Poison {
    pub event_type: &'static str,
    pub reason: &'static str,
}

impl Dlq {
    /// Dead-letters one message per entry the way the consumer does (failure
    /// headers, original route) and waits until all are stored. Returns
    /// their event ids, which are also their message ids.
    pub async fn poison(&self, messages: &[Poison]) -> Vec<String> {
        let before = self.count("TRUE").await;
        let publisher = Publisher::new(&self.app.connection).await.unwrap();
        let mut ids = Vec::new();
        let mut bodies = Vec::new();
        for message in messages {
            let id = Uuid::now_v7();
            let envelope = serde_json::json!({
                "id": id, "type": message.event_type, "version": 1,
                "aggregate_type": "post", "aggregate_id": Uuid::new_v4(), "sequence": 1,
                "occurred_at": chrono::Utc::now(), "traceparent": null,
                "data": {"post_id": Uuid::new_v4()}
            });
            bodies.push(serde_json::to_vec(&envelope).unwrap());
            ids.push(id.to_string());
        }
        let outgoing = messages
            .iter()
            .zip(&ids)
            .zip(&bodies)
            .map(|((message, id), body)| {
                let mut table = FieldTable::default();
                let text = |s: &str| AMQPValue::LongString(LongString::from(s));
                table.insert(headers::FAILURE_REASON.into(), text(message.reason));
                table.insert(
                    headers::ORIGINAL_EXCHANGE.into(),
                    text(topology::POST_EVENTS),
                );
                table.insert(
                    headers::ORIGINAL_ROUTING_KEY.into(),
                    text(message.event_type),
                );
                table.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(1));
                table.insert(
                    headers::CONSUMER.into(),
                    text("image-service.post-events@test"),
                );
                table.insert(
                    "traceparent".into(),
                    text("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                );
                Outgoing {
                    exchange: topology::DEAD_LETTERS,
                    routing_key: &self.queue,
                    body: body.as_slice(),
                    properties: infra::amqp::event_properties(id, message.event_type, None)
                        .with_headers(table),
                }
            })
            .collect();
        let results = publisher.publish_all(outgoing).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let expected = before + messages.len() as i64;
        eventually(
            "the dead letters stored",
            Duration::from_secs(20),
            || async {
                match self.count("TRUE").await {
                    n if n == expected => Ok(()),
                    n => Err(format!("{n} of {expected} stored")),
                }
            },
        )
        .await;
        ids
    }

    /// Rows matching an SQL condition (a constant of the test, never input).
    pub async fn count(&self, condition: &str) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM dead_letters WHERE {condition}"
        ))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// The row id of the letter whose message id is `message_id`.
    pub async fn id_of(&self, message_id: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM dead_letters WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn status_of(&self, message_id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM dead_letters WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Runs `outbox-relay dlq ARGS` in this process; returns its exit status.
    pub async fn dlq(&self, args: &str) -> i32 {
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        outbox_relay::dlq::run(&self.settings, &args).await
    }

    /// Every message now waiting in the consumer queue (taken off it).
    pub async fn take_replayed(&self) -> Vec<lapin::message::Delivery> {
        let mut taken = Vec::new();
        while let Some(message) = self
            .app
            .channel
            .basic_get(
                IMAGE_SERVICE_POST_EVENTS.name,
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            taken.push(message.delivery);
        }
        taken
    }

    pub async fn cleanup(self) {
        self.ingesting.cancel();
        self.pool.close().await;
        self.app.cleanup().await;
    }
}

pub fn message_id(delivery: &lapin::message::Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default()
}
