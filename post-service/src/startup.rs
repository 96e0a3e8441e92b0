//! Builds the HTTP server and the image-event consumer from settings.
use crate::{
    configuration::Settings,
    events::ImageEventsHandler,
    routes::{self, AppState},
};
use actix_web::{dev::Server, web, App, HttpServer};
use anyhow::Context;
use infra::amqp::{consume_forever, consumer_name, ConsumerOptions};
use proto::topology::POST_SERVICE_IMAGE_EVENTS;
use std::{net::TcpListener, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

pub struct Application {
    port: u16,
    server: Server,
    pool: sqlx::PgPool,
    amqp_url: String,
    broker: infra::health::BrokerStatus,
    concurrency: u16,
    /// The `source` label of this service's outbox gauges.
    outbox_source: String,
}

/// How often the service measures its own outbox backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let budget = settings.pool_budget().map_err(anyhow::Error::msg)?;
        let (pool, connect_options) = infra::db::connect(&settings.database.url, budget.background)
            .await
            .context("connect to the post database (database.url)")?;
        infra::migrate(&pool, &sqlx::migrate!("./migrations"))
            .await
            .context("migrate the post database")?;
        let (image_base_url, max_images) = (
            settings.images.public_base_url.clone(),
            settings.application.max_images,
        );
        let broker = infra::health::BrokerStatus::default();
        let authenticator = web::Data::new(infra::auth::Authenticator::new(&settings.auth));

        let address = format!(
            "{}:{}",
            settings.application.host, settings.application.port
        );
        let listener = TcpListener::bind(&address).with_context(|| format!("bind {address}"))?;
        let port = listener.local_addr()?.port();
        let status = broker.clone();
        let server = HttpServer::new(move || {
            // Called on each worker thread: its pool lives on its runtime.
            let pool = infra::db::lazy_pool(&connect_options, budget.per_worker);
            let readiness = infra::health::Readiness::new()
                .database("database", pool.clone())
                .broker(status.clone());
            let state = web::Data::new(AppState {
                pool,
                image_base_url: image_base_url.clone(),
                max_images,
            });
            App::new()
                .wrap(actix_web::middleware::from_fn(infra::http::observe))
                .app_data(state)
                .app_data(authenticator.clone())
                .configure(infra::http::common(web::Data::new(readiness)))
                .configure(routes::configure)
                .default_service(web::to(infra::problem::not_found))
        })
        .workers(budget.workers)
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        Ok(Self {
            broker,
            port,
            server,
            pool,
            amqp_url: settings.amqp.url,
            concurrency: settings.amqp.concurrency,
            outbox_source: infra::outbox::describe_source(&settings.database.url),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves and consumes until `cancel` fires; then stops taking work,
    /// finishes what is in flight and returns.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let backlog = tokio::spawn(infra::outbox::watch_backlog(
            self.pool.clone(),
            self.outbox_source,
            BACKLOG_EVERY,
            cancel.clone(),
        ));
        let handler = Arc::new(ImageEventsHandler { pool: self.pool });
        let options = ConsumerOptions::new(
            consumer_name(POST_SERVICE_IMAGE_EVENTS.name),
            self.concurrency,
        );
        let consumer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                consume_forever(
                    &self.amqp_url,
                    POST_SERVICE_IMAGE_EVENTS.name,
                    options,
                    handler,
                    self.broker,
                    cancel,
                )
                .await
            }
        });
        cancel.cancelled().await;
        // The consumer finishes first, the HTTP server stops last.
        let _ = consumer.await;
        let _ = backlog.await;
        handle.stop(true).await;
        let _ = server.await;
        tracing::info!("post service stopped");
        Ok(())
    }
}
