use image_service::{
    configuration::Settings, processing::Processor, startup::Application, storage::ObjectStore,
};
use reqwest::{Client, Response};
use serde_json::Value;
use sqlx::PgPool;
use std::{path::PathBuf, sync::Arc};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "image-service-test-secret-0123456789";

/// A running image service on a random port with its own database, vhost
/// and bucket.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub client: Client,
    cancel: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.application.port = 0;
    settings.database.url = infra::testing::fresh_database("images").await;
    settings.amqp.url = infra::testing::fresh_vhost().await;
    settings.auth.jwt_secret = SECRET.into();
    settings.s3 = infra::testing::fresh_bucket().await;
    settings.application.public_base_url = String::new();
    // Tests sweep deterministically through `TestApp::sweeper`; a background
    // sweep would race them for the rows they expire.
    settings.sweeper.enabled = false;
    // Tests build through `apply`; the build queue's poll would race them
    // for the images they attach (events through the consumer still start
    // builds at once).
    settings.workers.queue_poll_ms = 3_600_000;
    change(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("build image service");
    let address = format!("http://127.0.0.1:{}", app.port());
    settings.application.public_base_url = address.clone();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(cancel.clone()));
    let pool = PgPool::connect(&settings.database.url)
        .await
        .expect("connect");
    TestApp {
        address,
        pool,
        settings,
        client: Client::new(),
        cancel,
        running,
    }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        infra::auth::issue_token(&self.settings.auth, user, 600)
    }

    pub async fn upload(&self, user: &str, bytes: Vec<u8>) -> Response {
        self.client
            .post(format!("{}/v1/uploads", self.address))
            .bearer_auth(self.token(user))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("request")
    }

    /// Uploads and returns the new image id, asserting a `201`.
    pub async fn upload_ok(&self, user: &str, bytes: Vec<u8>) -> String {
        let response = self.upload(user, bytes).await;
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_image(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/v1/images/{id}", self.address))
            .bearer_auth(self.token("reader"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// A processor like the service's own, to drive event handling directly.
    pub fn processor(&self) -> Processor {
        Processor {
            pool: self.pool.clone(),
            store: ObjectStore::new(self.settings.s3.client(), self.settings.s3.bucket.clone()),
            presets: self.settings.variants.parsed(),
            webp_quality: self.settings.variants.webp_quality,
            avif: self.settings.variants.avif(),
            limits: self.settings.limits,
            public_base_url: self.address.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(2)),
            threads: image_service::processing::BuildThreads::new(2, 10),
        }
    }

    pub async fn keys(&self) -> Vec<String> {
        infra::testing::list_keys(&self.settings.s3).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        // The vhost is deleted only after the service closed its broker
        // connection: deleting it under live connections upsets RabbitMQ.
        self.cancel.cancel();
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), self.running).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "service stops cleanly: {stopped:?}"
        );
        self.pool.close().await;
        infra::testing::drop_vhost(&self.settings.amqp.url).await;
    }
}

/// The shared test images (`CORPUS_DIR`, or `../shared/corpus` beside the repository).
pub fn corpus(path: &str) -> PathBuf {
    let root = std::env::var("CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    root.join(path)
}

pub fn read_corpus(path: &str) -> Vec<u8> {
    let path = corpus(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts a problem+json response with `status` and returns its body.
pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    body
}

/// A `post.created` envelope naming `images`.
pub fn post_created(author: &str, images: &[&str]) -> proto::Envelope<proto::PostCreated> {
    let post_id = proto::PostId::new();
    proto::Envelope {
        id: uuid::Uuid::now_v7(),
        event_type: "post.created".into(),
        version: 1,
        aggregate_type: "post".into(),
        aggregate_id: post_id.0,
        sequence: 1,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        data: proto::PostCreated {
            post_id,
            author_id: proto::UserId(author.into()),
            image_ids: images
                .iter()
                .map(|i| proto::ImageId(i.parse().unwrap()))
                .collect(),
        },
    }
}

/// Applies `post.created` (or any post event with an image list) and builds
/// what it needs, as the consumer does.
pub async fn apply<T>(
    processor: &Processor,
    event: &proto::Envelope<T>,
    post: proto::PostId,
    author: &str,
    images: &[proto::ImageId],
) -> image_service::processing::Applied {
    let trace = infra::trace_context::TraceParent::new_root();
    let applied = processor
        .apply_post_images(event, post, &proto::UserId(author.into()), images, &trace)
        .await
        .unwrap();
    processor
        .process_owner(&image_service::processing::post_owner(post), &trace)
        .await
        .unwrap();
    applied
}

/// Applies a `post.created` envelope made by [`post_created`].
pub async fn apply_created(
    processor: &Processor,
    event: &proto::Envelope<proto::PostCreated>,
) -> image_service::processing::Applied {
    let d = &event.data;
    apply(processor, event, d.post_id, &d.author_id.0, &d.image_ids).await
}

impl TestApp {
    /// A sweeper with the given grace period and upload TTL (seconds).
    pub fn sweeper(&self, grace_secs: u64, ttl_secs: u64) -> image_service::sweeper::Sweeper {
        image_service::sweeper::Sweeper {
            pool: self.pool.clone(),
            store: ObjectStore::new(self.settings.s3.client(), self.settings.s3.bucket.clone()),
            presets: self.settings.variants.parsed(),
            settings: image_service::sweeper::SweepSettings {
                abandoned_grace_secs: grace_secs,
                upload_ttl_secs: ttl_secs,
                ..Default::default()
            },
        }
    }

    pub async fn reconcile(&self, delete: bool) -> image_service::reconcile::Report {
        let store = ObjectStore::new(self.settings.s3.client(), self.settings.s3.bucket.clone());
        image_service::reconcile::reconcile(&self.pool, &store, delete)
            .await
            .unwrap()
    }

    /// Asserts the bucket and the database agree, and that it holds `objects` objects.
    pub async fn assert_reconciled(&self, objects: usize) {
        let report = self.reconcile(false).await;
        assert!(
            report.unexplained.is_empty() && report.missing.is_empty(),
            "{report}"
        );
        assert_eq!(report.objects, objects, "{report}");
    }
}
