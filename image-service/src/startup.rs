//! Builds the HTTP server and the post-event consumer from settings.
use crate::{
    configuration::Settings,
    events::PostEventsHandler,
    processing::{build_queue, BuildThreads, Processor},
    routes::{self, AppState, SharedState},
    storage::ObjectStore,
    sweeper::Sweeper,
};
use actix_web::{dev::Server, web, App, HttpServer};
use anyhow::Context;
use infra::amqp::{consume_forever, consumer_name, ConsumerOptions};
use proto::topology::IMAGE_SERVICE_POST_EVENTS;
use std::{net::TcpListener, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

pub struct Application {
    port: u16,
    server: Server,
    processor: Arc<Processor>,
    sweeper: Arc<Sweeper>,
    amqp_url: String,
    broker: infra::health::BrokerStatus,
    concurrency: u16,
    queue_poll: Duration,
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
            .context("connect to the image database (database.url)")?;
        infra::migrate(&pool, &sqlx::migrate!("./migrations"))
            .await
            .context("migrate the image database")?;
        let address = format!(
            "{}:{}",
            settings.application.host, settings.application.port
        );
        let listener = TcpListener::bind(&address).with_context(|| format!("bind {address}"))?;
        let port = listener.local_addr()?.port();
        let mut settings = settings;
        if settings.application.public_base_url.is_empty() {
            settings.application.public_base_url =
                format!("http://{}:{port}", settings.application.host);
        }
        let store = ObjectStore::new(settings.s3.client(), settings.s3.bucket.clone());
        let processor = Arc::new(Processor {
            pool: pool.clone(),
            store: store.clone(),
            presets: settings.variants.parsed(),
            webp_quality: settings.variants.webp_quality,
            avif: settings.variants.avif(),
            limits: settings.limits,
            public_base_url: settings.application.public_base_url.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(
                settings.workers.images_in_flight(),
            )),
            threads: BuildThreads::new(
                settings.workers.images_in_flight(),
                settings.workers.build_niceness,
            ),
        });
        let sweeper = Arc::new(Sweeper {
            pool: pool.clone(),
            store,
            presets: settings.variants.parsed(),
            settings: settings.sweeper.clone(),
        });
        let shared = SharedState {
            limits: settings.limits,
            public_base_url: settings.application.public_base_url.clone(),
            s3: settings.s3.clone(),
            processor: processor.clone(),
        };
        let broker = infra::health::BrokerStatus::default();
        let authenticator = web::Data::new(infra::auth::Authenticator::new(&settings.auth));

        let status = broker.clone();
        let server = HttpServer::new(move || {
            // Called on each worker thread: its database and S3 connections
            // live on its runtime.
            let state = shared.for_worker(&connect_options, budget.per_worker);
            let readiness = web::Data::new(readiness(&state, status.clone()));
            App::new()
                .wrap(actix_web::middleware::from_fn(infra::http::observe))
                .app_data(web::Data::new(state))
                .app_data(authenticator.clone())
                .configure(infra::http::common(readiness))
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
            processor,
            sweeper,
            amqp_url: settings.amqp.url,
            concurrency: settings.amqp.concurrency,
            queue_poll: Duration::from_millis(settings.workers.queue_poll_ms),
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
        let (builds, builder) = build_queue(self.processor.clone(), self.queue_poll);
        let handler = Arc::new(PostEventsHandler {
            processor: self.processor.clone(),
            builds,
        });
        let builder = tokio::spawn({
            let cancel = cancel.clone();
            async move { builder.run(cancel).await }
        });
        let options = ConsumerOptions::new(
            consumer_name(IMAGE_SERVICE_POST_EVENTS.name),
            self.concurrency,
        );
        let consumer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                consume_forever(
                    &self.amqp_url,
                    IMAGE_SERVICE_POST_EVENTS.name,
                    options,
                    handler,
                    self.broker,
                    cancel,
                )
                .await
            }
        });
        let sweeper = tokio::spawn({
            let (sweeper, cancel) = (self.sweeper, cancel.clone());
            async move { sweeper.run(cancel).await }
        });
        let backlog = tokio::spawn(infra::outbox::watch_backlog(
            self.processor.pool.clone(),
            self.outbox_source,
            BACKLOG_EVERY,
            cancel.clone(),
        ));
        let resumer = tokio::spawn({
            let (processor, cancel) = (self.processor.clone(), cancel.clone());
            async move { resume_stalled(&processor, cancel).await }
        });
        cancel.cancelled().await;
        // Background work finishes first, the HTTP server stops last (its
        // handlers may still start background work, such as a reprocess).
        let _ = consumer.await;
        let _ = builder.await;
        let _ = sweeper.await;
        let _ = resumer.await;
        let _ = backlog.await;
        handle.stop(true).await;
        let _ = server.await;
        tracing::info!("image service stopped");
        Ok(())
    }
}

/// What `/readyz` checks, through the worker's own pool and S3 client.
fn readiness(state: &AppState, broker: infra::health::BrokerStatus) -> infra::health::Readiness {
    let store = state.store.clone();
    infra::health::Readiness::new()
        .database("database", state.pool.clone())
        .broker(broker)
        .check("s3", move || {
            let store = store.clone();
            async move { store.check().await }
        })
}

/// Ready images without AVIF variants are left alone this long (their
/// AVIF step may still be running).
const AVIF_BACKFILL_AFTER_SECS: i64 = 300;

async fn resume_stalled(processor: &Processor, cancel: CancellationToken) {
    let after = crate::store::images::STALLED_AFTER_SECS;
    while !cancel.is_cancelled() {
        // The build queue also takes stalled images over; this catches
        // them where no builder polls (queue polling turned far down).
        if let Err(e) = processor.resume_stalled(after).await {
            tracing::error!(error = %format_args!("{e:#}"), "resuming stalled images failed");
        }
        // A few per minute, so turning AVIF on does not starve new images.
        if let Err(e) = processor.backfill_avif(AVIF_BACKFILL_AFTER_SECS, 5).await {
            tracing::error!(error = %format_args!("{e:#}"), "building missing AVIF variants failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}
