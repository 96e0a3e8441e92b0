//! Helpers for integration tests: every test gets its own database, RabbitMQ
//! vhost and S3 bucket, so tests run in parallel and can be rerun.
//! Locations come from `TEST_DATABASE_URL`, `TEST_AMQP_URL`,
//! `TEST_RABBITMQ_API` and `TEST_S3_*`, with local defaults.
use crate::s3::S3Settings;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A server URL without a database name, e.g. `postgres://postgres@127.0.0.1:5432`.
pub fn database_server() -> String {
    env_or("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database(label: &str) -> String {
    let server = database_server();
    let name = format!("test_{label}_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL is reachable (see deploy/local/services.sh)");
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

/// Creates a vhost on the local RabbitMQ and returns an AMQP URL for it.
pub async fn fresh_vhost() -> String {
    let api = env_or("TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672");
    let vhost = format!("test-{}", Uuid::new_v4().simple());
    let client = reqwest::Client::new();
    let url = reqwest::Url::parse(&api).expect("TEST_RABBITMQ_API is a URL");
    let (user, password) = (
        url.username().to_owned(),
        url.password().unwrap_or("").to_owned(),
    );
    let base = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(15672)
    );
    let response = client
        .put(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .expect("RabbitMQ management API is reachable (see deploy/local/services.sh)");
    assert!(
        response.status().is_success(),
        "create vhost: {}",
        response.status()
    );
    let response = client
        .put(format!("{base}/api/permissions/{vhost}/{user}"))
        .basic_auth(&user, Some(&password))
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .expect("set vhost permissions");
    assert!(
        response.status().is_success(),
        "set permissions: {}",
        response.status()
    );
    let amqp = env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
    format!("{}/{vhost}", amqp.trim_end_matches('/'))
}

/// The management API's base URL and credentials.
fn management() -> (String, String, Option<String>) {
    let api = env_or("TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672");
    let url = reqwest::Url::parse(&api).expect("TEST_RABBITMQ_API is a URL");
    let base = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(15672)
    );
    (
        base,
        url.username().to_owned(),
        url.password().map(str::to_owned),
    )
}

/// Deletes a vhost made by [`fresh_vhost`] (best effort).
pub async fn drop_vhost(amqp_url: &str) {
    let Some(vhost) = amqp_url.rsplit('/').next() else {
        return;
    };
    let (base, user, password) = management();
    let _ = reqwest::Client::new()
        .delete(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(user, password)
        .send()
        .await;
}

/// Closes every client connection to the vhost of `amqp_url`, as a broker
/// restart or a network cut would; returns how many it closed. The
/// management API lists a new connection only after its next statistics
/// round (seconds), so this waits up to 30 s for at least one.
pub async fn cut_connections(amqp_url: &str) -> usize {
    let vhost = amqp_url.rsplit('/').next().expect("a vhost in the URL");
    let (base, user, password) = management();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let names = loop {
        let connections: Vec<serde_json::Value> = client
            .get(format!("{base}/api/vhosts/{vhost}/connections"))
            .basic_auth(&user, password.as_deref())
            .send()
            .await
            .expect("list connections")
            .json()
            .await
            .expect("connections as JSON");
        let names: Vec<String> = connections
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        if !names.is_empty() || std::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut closed = 0;
    for name in names {
        let mut url = reqwest::Url::parse(&format!("{base}/api/connections")).expect("API URL");
        url.path_segments_mut().expect("a base URL").push(&name);
        let response = client
            .delete(url)
            .basic_auth(&user, password.as_deref())
            .send()
            .await
            .expect("close connection");
        if response.status().is_success() {
            closed += 1;
        }
    }
    closed
}

/// S3 settings for the local test server with a new, empty bucket.
pub async fn fresh_bucket() -> S3Settings {
    let settings = S3Settings {
        endpoint: env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9000"),
        access_key_id: env_or("TEST_S3_ACCESS_KEY_ID", "local-access-key"),
        secret_access_key: env_or("TEST_S3_SECRET_ACCESS_KEY", "local-secret-key-change-me"),
        bucket: format!("test-{}", Uuid::new_v4().simple()),
        ..S3Settings::default()
    };
    settings
        .client()
        .create_bucket()
        .bucket(&settings.bucket)
        .send()
        .await
        .expect("S3 server is reachable (see deploy/local/services.sh)");
    settings
}

/// Every key in the bucket.
pub async fn list_keys(settings: &S3Settings) -> Vec<String> {
    let client = settings.client();
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(&settings.bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("list objects");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys
}

/// Fetches `{base}/openapi.json`, asserts it equals the committed document
/// at `path` (rewriting that first when `UPDATE_DOCS` is set) and is
/// OpenAPI 3.1 with the bearer scheme, and returns it.
pub async fn assert_committed_document(base: &str, path: &std::path::Path) -> serde_json::Value {
    let served = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("GET /openapi.json")
        .text()
        .await
        .expect("document text");
    let served = served.as_str();
    if std::env::var("UPDATE_DOCS").is_ok() {
        std::fs::write(path, format!("{served}\n")).expect("write the document");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == served,
        "{} differs from the served /openapi.json; rerun the test with UPDATE_DOCS=1",
        path.display()
    );
    let document: serde_json::Value = serde_json::from_str(served).expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        document["openapi"]
    );
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    document
}
