use lapin::{options::BasicGetOptions, Channel, Connection};
use outbox_relay::relay::Relay;
use proto::{topology, PostCreated, PostId, UserId};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// A relay over a fresh database and a fresh vhost with the topology declared.
pub struct TestRelay {
    pub pool: PgPool,
    pub relay: std::sync::Arc<Relay>,
    pub amqp_url: String,
    pub connection: Connection,
    pub channel: Channel,
}

pub async fn spawn_relay() -> TestRelay {
    let database_url = infra::testing::fresh_database("relay").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(64)
        .connect(&database_url)
        .await
        .expect("connect");
    infra::outbox::migrate(&pool).await.expect("migrate");
    let amqp_url = infra::testing::fresh_vhost().await;
    let connection = infra::amqp::connect(&amqp_url, "relay-test")
        .await
        .expect("amqp");
    infra::amqp::declare_topology(&connection)
        .await
        .expect("topology");
    let channel = connection.create_channel().await.expect("channel");
    let publisher = infra::amqp::Publisher::new(&connection)
        .await
        .expect("publisher");
    let relay = std::sync::Arc::new(Relay::new(pool.clone(), publisher, 50, "test".into()));
    TestRelay {
        pool,
        relay,
        amqp_url,
        connection,
        channel,
    }
}

/// A relay loop running in the background.
pub struct Background {
    cancel: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Background {
    /// Stops the loop; it must have ended without an error.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

impl TestRelay {
    /// Runs the relay's loop with `poll` as its poll interval.
    pub fn run_in_background(&self, poll: Duration) -> Background {
        let cancel = tokio_util::sync::CancellationToken::new();
        let (relay, token) = (self.relay.clone(), cancel.clone());
        let handle = tokio::spawn(async move { relay.run(poll, token).await });
        Background { cancel, handle }
    }

    /// Waits until no row of the outbox is unpublished.
    pub async fn wait_drained(&self, deadline: Duration) {
        let pool = self.pool.clone();
        eventually("outbox drained", deadline, || {
            let pool = pool.clone();
            async move {
                let left: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                if left == 0 {
                    Ok(())
                } else {
                    Err(format!("{left} unpublished"))
                }
            }
        })
        .await;
    }

    /// Writes a `post.created` event in its own, still open transaction.
    pub async fn open_event(&self) -> (sqlx::Transaction<'static, sqlx::Postgres>, uuid::Uuid) {
        let mut tx = self.pool.begin().await.unwrap();
        let event = PostCreated {
            post_id: PostId::new(),
            author_id: UserId("u".into()),
            image_ids: vec![],
        };
        let id = infra::outbox::write(&mut tx, &event, None).await.unwrap();
        (tx, id.0)
    }

    pub async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Every message now in the image service's post-event queue, as event ids.
    pub async fn drain_queue(&self) -> Vec<uuid::Uuid> {
        self.drain_envelopes()
            .await
            .into_iter()
            .map(|envelope| envelope.id)
            .collect()
    }

    /// Every message now in the image service's post-event queue, in queue
    /// order.
    pub async fn drain_envelopes(&self) -> Vec<proto::RawEnvelope> {
        let mut envelopes = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                topology::IMAGE_SERVICE_POST_EVENTS.name,
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let envelope = proto::RawEnvelope::parse(&message.delivery.data).unwrap();
            assert_eq!(
                message
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string()),
                Some(envelope.id.to_string()),
                "message_id must be the event id"
            );
            envelopes.push(envelope);
        }
        envelopes
    }

    /// Writes and commits one `post.created` event of `post`.
    pub async fn commit_event_of(&self, post: PostId) -> uuid::Uuid {
        let mut tx = self.pool.begin().await.unwrap();
        let event = PostCreated {
            post_id: post,
            author_id: UserId("u".into()),
            image_ids: vec![],
        };
        let id = infra::outbox::write(&mut tx, &event, None).await.unwrap();
        tx.commit().await.unwrap();
        id.0
    }

    pub async fn cleanup(self) {
        let _ = self.connection.close(200, "done").await;
        infra::testing::drop_vhost(&self.amqp_url).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with the last value seen.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if start.elapsed() > deadline => {
                panic!("{what}: not true within {deadline:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs `handler` on the image service's post-event queue in the background
/// until the returned token is cancelled.
pub async fn run_consumer<H: infra::amqp::Handler>(
    amqp_url: &str,
    handler: std::sync::Arc<H>,
    options: infra::amqp::ConsumerOptions,
) -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    let connection = infra::amqp::connect(amqp_url, &options.name)
        .await
        .expect("amqp");
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            infra::amqp::consume(
                &connection,
                proto::topology::IMAGE_SERVICE_POST_EVENTS.name,
                options,
                handler,
                cancel,
            )
            .await
        }
    });
    cancel
}
