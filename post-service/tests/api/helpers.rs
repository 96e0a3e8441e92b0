use post_service::{configuration::Settings, startup::Application};
use reqwest::{Client, Response};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "post-service-test-secret-0123456789";

/// A running post service on a random port, a fresh database and vhost.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub client: Client,
    cancel: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    let mut settings = Settings::default();
    settings.application.port = 0;
    settings.database.url = infra::testing::fresh_database("posts").await;
    settings.amqp.url = infra::testing::fresh_vhost().await;
    settings.auth.jwt_secret = SECRET.into();
    settings.images.public_base_url = "http://images.test".into();
    let app = Application::build(settings.clone())
        .await
        .expect("build post service");
    let address = format!("http://127.0.0.1:{}", app.port());
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

    pub async fn create_post(&self, user: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}/v1/posts", self.address))
            .bearer_auth(self.token(user))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_post(&self, user: &str, id: &str) -> Response {
        self.client
            .get(format!("{}/v1/posts/{id}", self.address))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("request")
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

/// Asserts a problem+json response with `status` and returns its body.
pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    body
}
