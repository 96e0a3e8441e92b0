//! The dead-letter admin API on the relay's port.
use crate::dlq_helpers::{message_id, spawn_dlq, Dlq, Poison};
use outbox_relay::startup::Application;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "relay-admin-test-secret-0123456789";
const POISON: Poison = Poison {
    event_type: "post.created",
    reason: "unknown event type `post.created` version 3",
};

struct Admin {
    address: String,
    settings: outbox_relay::configuration::Settings,
    client: Client,
    cancel: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_admin(dlq: &Dlq, secret: &str) -> Admin {
    let outbox = infra::testing::fresh_database("relay_outbox").await;
    let pool = sqlx::PgPool::connect(&outbox).await.unwrap();
    infra::outbox::migrate(&pool).await.unwrap();
    pool.close().await;
    let mut settings = dlq.settings.clone();
    settings.admin.port = 0;
    settings.outbox.database_urls = vec![outbox];
    settings.auth.jwt_secret = secret.into();
    let app = Application::build(settings.clone())
        .await
        .expect("build relay");
    let address = format!("http://127.0.0.1:{}", app.port());
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(cancel.clone()));
    Admin {
        address,
        settings,
        client: Client::new(),
        cancel,
        running,
    }
}

impl Admin {
    fn token(&self, scope: &str) -> String {
        infra::auth::issue_scoped_token(&self.settings.auth, "sre-cho", scope, 600)
    }

    async fn get(&self, path: &str, scope: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(self.token(scope))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(self.token("dlq:admin"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        let stopped = self.running.await;
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "relay stops cleanly: {stopped:?}"
        );
    }
}

async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_admin_api_lists_shows_replays_and_discards_with_the_admin_scope() {
    let dlq = spawn_dlq().await;
    let ids = dlq.poison(&[POISON, POISON, POISON]).await;
    let admin = spawn_admin(&dlq, SECRET).await;

    let anonymous = admin
        .client
        .get(format!("{}/v1/dead-letters", admin.address))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    problem(admin.get("/v1/dead-letters", "images:admin").await, 403).await;

    let list: Value = admin
        .get(
            "/v1/dead-letters?type=post.created&since=1h&limit=2",
            "dlq:admin",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    problem(
        admin.get("/v1/dead-letters?since=soon", "dlq:admin").await,
        422,
    )
    .await;
    problem(admin.get("/v1/dead-letters/999999", "dlq:admin").await, 404).await;
    let stats: Value = admin
        .get("/v1/dead-letters/stats", "dlq:admin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["groups"][0]["count"], 3);

    let first = dlq.id_of(&ids[0]).await;
    let second = dlq.id_of(&ids[1]).await;
    let replay = admin
        .post(
            "/v1/dead-letters/replay",
            json!({"filter": {"ids": [first]}}),
        )
        .await;
    assert_eq!(replay.status().as_u16(), 200);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["published"], 1);
    let replayed: Vec<String> = dlq.take_replayed().await.iter().map(message_id).collect();
    assert_eq!(replayed, vec![ids[0].clone()]);

    problem(
        admin
            .post(
                "/v1/dead-letters/discard",
                json!({"filter": {"ids": [second]}}),
            )
            .await,
        422,
    )
    .await;
    problem(admin.post("/v1/dead-letters/replay", json!({})).await, 422).await;
    let discard = admin
        .post(
            "/v1/dead-letters/discard",
            json!({"filter": {"ids": [second]}, "reason": "obsolete"}),
        )
        .await;
    assert_eq!(discard.status().as_u16(), 200);
    let shown: Value = admin
        .get(&format!("/v1/dead-letters/{second}"), "dlq:admin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "discarded");
    assert_eq!(shown["actions"][0]["actor"], "sre-cho");
    assert_eq!(shown["actions"][0]["reason"], "obsolete");
    assert_eq!(shown["body"]["id"], ids[1].as_str());
    assert_eq!(dlq.count("status = 'pending'").await, 1);

    let metrics = admin
        .client
        .get(format!("{}/metrics", admin.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dead_letter_replays_total"), "{metrics}");
    assert!(metrics.contains("dead_letter_discards_total"), "{metrics}");
    admin.stop().await;
    dlq.cleanup().await;
}

#[tokio::test]
async fn without_a_token_key_the_admin_api_is_off() {
    let dlq = spawn_dlq().await;
    let admin = spawn_admin(&dlq, "").await;
    let response = admin
        .client
        .get(format!("{}/v1/dead-letters", admin.address))
        .send()
        .await
        .unwrap();
    let body = problem(response, 503).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("RELAY_AUTH__JWT_SECRET"));
    admin.stop().await;
    dlq.cleanup().await;
}
