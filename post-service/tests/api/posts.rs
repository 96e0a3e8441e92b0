use crate::helpers::{assert_problem, spawn_app};
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn creating_a_post_answers_201_with_processing_images_and_writes_post_created() {
    let app = spawn_app().await;
    let images = [Uuid::now_v7(), Uuid::now_v7()];
    let response = app
        .create_post(
            "alice",
            &json!({"title": "Hello", "body": "Text", "image_ids": images}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let post: Value = response.json().await.unwrap();
    assert_eq!(post["author_id"], "alice");
    let shown: Vec<&str> = post["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        shown,
        images
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for image in post["images"].as_array().unwrap() {
        assert_eq!(image["status"], "processing");
        assert_eq!(image["variants"], json!([]));
        assert_eq!(
            image["original_url"],
            format!(
                "http://images.test/v1/images/{}/original",
                image["id"].as_str().unwrap()
            )
        );
    }
    assert_eq!(post["thumbnail"]["id"], images[0].to_string());

    let (event_type, data, traceparent): (String, Value, Option<String>) =
        sqlx::query_as("SELECT event_type, data, traceparent FROM outbox")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(event_type, "post.created");
    assert_eq!(data["post_id"], post["id"]);
    assert_eq!(data["author_id"], "alice");
    assert_eq!(data["image_ids"], json!(images));
    assert!(traceparent.is_some_and(|t| t.starts_with("00-")));

    let fetched: Value = app
        .get_post("bob", post["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, post);
    app.stop().await;
}

#[tokio::test]
async fn the_callers_trace_context_is_continued_into_the_outbox() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/posts", app.address))
        .bearer_auth(app.token("alice"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let traceparent: String = sqlx::query_scalar("SELECT traceparent FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a child span of the caller's: {traceparent}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_create_whose_transaction_fails_after_the_post_insert_leaves_no_post_and_no_event() {
    let app = spawn_app().await;
    // Force a failure after `posts` was written: the image rows are refused.
    sqlx::query(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'forced failure'; END $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON post_images FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let image = Uuid::now_v7();
    let response = app
        .create_post("alice", &json!({"title": "Hello", "image_ids": [image]}))
        .await;
    let problem = assert_problem(response, 500).await;
    assert!(
        problem.get("detail").is_none(),
        "5xx bodies are opaque: {problem}"
    );
    assert_eq!(app.count("posts").await, 0);
    // No post.created; only the rolled-back notice naming the images.
    let events: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT event_type, data FROM outbox")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "post.rolled_back");
    assert_eq!(events[0].1["image_ids"], json!([image]));
    app.stop().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let app = spawn_app().await;
    let url = format!("{}/v1/posts", app.address);
    let missing = app
        .client
        .post(&url)
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 401).await;
    let forged = app
        .client
        .post(&url)
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.headers()["www-authenticate"], "Bearer");
    assert_problem(forged, 401).await;
    assert_eq!(app.count("posts").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_problems_and_write_nothing() {
    let app = spawn_app().await;
    let malformed = app
        .client
        .post(format!("{}/v1/posts", app.address))
        .bearer_auth(app.token("alice"))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400).await;

    let id = Uuid::now_v7();
    for body in [
        json!({"title": "   "}),
        json!({"title": "t", "image_ids": [id, id]}),
        json!({"title": "t", "image_ids": ["not-a-uuid"]}),
        json!({"title": "t", "unexpected": 1}),
    ] {
        let response = app.create_post("alice", &body).await;
        let status = response.status().as_u16();
        assert!(status == 400 || status == 422, "{body} gave {status}");
        assert_problem(response, status).await;
    }
    assert_eq!(app.count("posts").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_posts_are_404() {
    let app = spawn_app().await;
    assert_problem(
        app.get_post("alice", &Uuid::now_v7().to_string()).await,
        404,
    )
    .await;
    assert_problem(app.get_post("alice", "not-a-uuid").await, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn readiness_reports_the_database_and_the_broker() {
    let app = spawn_app().await;
    let body = readiness_becomes(&app, 200).await;
    assert_eq!(body["checks"], json!({"database": "ok", "broker": "ok"}));
    let alive = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_request_id_is_honoured_or_made_and_returned() {
    let app = spawn_app().await;
    let given = app
        .client
        .get(format!("{}/v1/posts/{}", app.address, Uuid::now_v7()))
        .bearer_auth(app.token("alice"))
        .header("X-Request-Id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-123");
    let made = app.create_post("alice", &json!({"title": "t"})).await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&id).is_ok(), "{id}");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_request_duration_seconds_count{method="GET",route="/v1/posts/{id}",status="404"}"#),
        "{metrics}"
    );
    app.stop().await;
}

/// Polls `/readyz` until its status is `want`; returns the body.
async fn readiness_becomes(app: &crate::helpers::TestApp, want: u16) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered {want}; last {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn readiness_fails_while_the_broker_connection_is_cut_and_recovers() {
    let app = spawn_app().await;
    readiness_becomes(&app, 200).await;
    let cut = infra::testing::cut_connections(&app.settings.amqp.url).await;
    assert!(cut >= 1, "the service had a broker connection");
    let body = readiness_becomes(&app, 503).await;
    assert_ne!(body["checks"]["broker"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    // The consumer reconnects on its own.
    let body = readiness_becomes(&app, 200).await;
    assert_eq!(body["checks"], json!({"database": "ok", "broker": "ok"}));
    app.stop().await;
}
