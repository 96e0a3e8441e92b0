//! Builds the relay: one relay loop per outbox database, sharing one AMQP
//! connection, the dead-letter ingestion and housekeeping, plus the admin
//! HTTP server with `/healthz`, `/readyz`, `/metrics` and the dead-letter
//! API.
use crate::{
    configuration::Settings,
    relay::{describe_source, Relay},
};
use actix_web::{dev::Server, web, App, HttpServer};
use anyhow::Context;
use std::{net::TcpListener, time::Duration};
use tokio_util::sync::CancellationToken;

pub struct Application {
    port: u16,
    dead_letters: sqlx::PgPool,
    broker: infra::health::BrokerStatus,
    server: Server,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.admin.host, settings.admin.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("bind {address}"))?;
        let port = listener.local_addr()?.port();
        let broker = infra::health::BrokerStatus::default();
        let mut readiness = infra::health::Readiness::new().broker(broker.clone());
        for (index, url) in settings.outbox.database_urls.iter().enumerate() {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy(url)
                .with_context(|| format!("database URL for {}", describe_source(url)))?;
            readiness = readiness.database(format!("outbox-{index}"), pool);
        }
        let dead_letters = sqlx::postgres::PgPoolOptions::new()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&settings.dead_letters.database_url)
            .await
            .context("connect to the relay database (dead_letters.database_url)")?;
        crate::dead_letters::migrate(&dead_letters)
            .await
            .context("migrate the relay database")?;
        let readiness = readiness.database("dead-letters", dead_letters.clone());
        let readiness = web::Data::new(readiness);
        let admin_enabled = !settings.auth.jwt_secret.is_empty();
        let authenticator = web::Data::new(infra::auth::Authenticator::new(&settings.auth));
        let admin = web::Data::new(crate::admin::AdminState {
            pool: dead_letters.clone(),
            settings: settings.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(infra::http::observe))
                .configure(infra::http::common(readiness.clone()))
                .app_data(authenticator.clone())
                .app_data(admin.clone())
                .configure(crate::admin::routes(admin_enabled))
                .default_service(web::to(infra::problem::not_found))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            dead_letters,
            broker,
            server,
            settings,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until `cancel` fires, then finishes the batches in flight and exits.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let retention = Duration::from_secs(self.settings.dead_letters.retention_days * 86_400);
        let housekeeping = tokio::spawn(crate::dead_letters::retention::run(
            self.dead_letters.clone(),
            retention,
            cancel.clone(),
        ));
        let relays = run_relays(
            self.settings,
            self.dead_letters,
            self.broker,
            cancel.clone(),
        );
        relays.await;
        let _ = housekeeping.await;
        handle.stop(true).await;
        let _ = server.await;
        Ok(())
    }
}

/// Keeps a connection to the broker and one relay loop per database,
/// reconnecting with backoff when the broker goes away.
async fn run_relays(
    settings: Settings,
    dead_letters: sqlx::PgPool,
    broker: infra::health::BrokerStatus,
    cancel: CancellationToken,
) {
    let poll = Duration::from_millis(settings.outbox.poll_interval_ms);
    let mut attempt = 0u32;
    while !cancel.is_cancelled() {
        let result = relay_once(&settings, &dead_letters, poll, &broker, cancel.clone()).await;
        broker.set(false);
        match result {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                let delay = Duration::from_millis((200u64 << attempt.min(6)).min(10_000));
                tracing::error!(error = %format_args!("{e:#}"), delay_ms = delay.as_millis() as u64, "relay stopped; restarting");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn relay_once(
    settings: &Settings,
    dead_letters: &sqlx::PgPool,
    poll: Duration,
    broker: &infra::health::BrokerStatus,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let connection = infra::amqp::connect(&settings.amqp.url, "outbox-relay")
        .await
        .context("connect to RabbitMQ")?;
    infra::amqp::declare_topology(&connection)
        .await
        .context("declare topology")?;
    broker.set(true);

    // A broker failure ends every loop so the connection is rebuilt.
    let failed = cancel.child_token();
    let mut loops = tokio::task::JoinSet::new();
    for url in &settings.outbox.database_urls {
        // The listener, the batches in flight (each holds its rows in a
        // transaction until they are marked) and retention.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(crate::relay::IN_FLIGHT as u32 + 2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)
            .with_context(|| format!("database URL for {}", describe_source(url)))?;
        let publisher = infra::amqp::Publisher::new(&connection).await?;
        let relay = Relay::new(
            pool.clone(),
            publisher,
            settings.outbox.batch_size,
            describe_source(url),
        );
        if settings.outbox.retention_hours > 0 {
            let keep = Duration::from_secs(settings.outbox.retention_hours * 3600);
            let (pool, source, token) = (pool.clone(), describe_source(url), failed.clone());
            loops.spawn(async move {
                crate::retention::run(pool, keep, source, token).await;
                Ok(())
            });
        }
        let token = failed.clone();
        loops.spawn(async move {
            let result = relay.run(poll, token.clone()).await;
            if result.is_err() {
                token.cancel();
            }
            result
        });
    }
    for spec in proto::topology::QUEUES {
        let dlq = proto::topology::dead_letter_queue(spec.name);
        let channel = connection.create_channel().await?;
        let (pool, token) = (dead_letters.clone(), failed.clone());
        loops.spawn(async move {
            let result = crate::dead_letters::ingest(channel, &dlq, pool, token.clone()).await;
            if result.is_err() {
                token.cancel();
            }
            result
        });
    }
    tracing::info!(
        sources = settings.outbox.database_urls.len(),
        "relaying outboxes"
    );
    let mut outcome = Ok(());
    while let Some(result) = loops.join_next().await {
        if let Ok(Err(e)) = result {
            outcome = Err(e);
        }
    }
    let _ = connection.close(200, "relay stopping").await;
    if cancel.is_cancelled() {
        Ok(())
    } else {
        outcome.and_then(|()| Err(anyhow::anyhow!("relay loops ended")))
    }
}
