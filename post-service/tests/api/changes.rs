use crate::helpers::{assert_problem, spawn_app, TestApp};
use reqwest::Response;
use serde_json::{json, Value};
use uuid::Uuid;

async fn patch(
    app: &TestApp,
    user: &str,
    id: &str,
    if_match: Option<&str>,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .patch(format!("{}/v1/posts/{id}", app.address))
        .bearer_auth(app.token(user))
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    request.send().await.unwrap()
}

async fn delete(app: &TestApp, user: &str, id: &str) -> Response {
    app.client
        .delete(format!("{}/v1/posts/{id}", app.address))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

async fn events(app: &TestApp) -> Vec<(String, Value, i64)> {
    sqlx::query_as("SELECT event_type, data, sequence FROM outbox ORDER BY position")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn new_post(app: &TestApp, images: &[Uuid]) -> Value {
    let response = app
        .create_post(
            "alice",
            &json!({"title": "T", "body": "B", "image_ids": images}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_patch_writes_the_final_image_list_bumps_the_version_and_emits_post_updated() {
    let app = spawn_app().await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let post = new_post(&app, &[a, b]).await;
    let id = post["id"].as_str().unwrap();
    let response = patch(
        &app,
        "alice",
        id,
        Some("\"1\""),
        json!({"title": "New", "image_ids": [c, a]}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["title"], "New");
    assert_eq!(updated["body"], "B");
    let order: Vec<&str> = updated["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [c.to_string(), a.to_string()]);

    let events = events(&app).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0, "post.updated");
    assert_eq!(events[1].1["image_ids"], json!([c, a]));
    assert_eq!(events[1].2, 2, "sequence grows per post");
    app.stop().await;
}

#[tokio::test]
async fn an_unchanged_patch_writes_nothing() {
    let app = spawn_app().await;
    let image = Uuid::now_v7();
    let post = new_post(&app, &[image]).await;
    let id = post["id"].as_str().unwrap();
    let response = patch(
        &app,
        "alice",
        id,
        None,
        json!({"title": "T", "image_ids": [image]}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    assert_eq!(events(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let post = new_post(&app, &[]).await;
    let id = post["id"].as_str().unwrap();
    assert_eq!(
        patch(&app, "alice", id, Some("\"1\""), json!({"title": "one"}))
            .await
            .status()
            .as_u16(),
        200
    );
    let stale = patch(&app, "alice", id, Some("\"1\""), json!({"title": "two"})).await;
    assert_problem(stale, 412).await;
    let current: Value = app.get_post("alice", id).await.json().await.unwrap();
    assert_eq!(current["title"], "one");
    assert_eq!(events(&app).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn of_two_concurrent_patches_with_the_same_if_match_one_wins_and_one_gets_412() {
    let app = spawn_app().await;
    let post = new_post(&app, &[]).await;
    let id = post["id"].as_str().unwrap();
    let (first, second) = tokio::join!(
        patch(&app, "alice", id, Some("\"1\""), json!({"title": "left"})),
        patch(&app, "alice", id, Some("\"1\""), json!({"title": "right"})),
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    assert_eq!(events(&app).await.len(), 2, "one post.updated");
    app.stop().await;
}

#[tokio::test]
async fn only_the_author_may_change_or_delete_and_unknown_posts_are_404() {
    let app = spawn_app().await;
    let post = new_post(&app, &[]).await;
    let id = post["id"].as_str().unwrap();
    assert_problem(
        patch(&app, "mallory", id, None, json!({"title": "x"})).await,
        403,
    )
    .await;
    assert_problem(delete(&app, "mallory", id).await, 403).await;
    let unknown = Uuid::now_v7().to_string();
    assert_problem(
        patch(&app, "alice", &unknown, None, json!({"title": "x"})).await,
        404,
    )
    .await;
    assert_problem(delete(&app, "alice", &unknown).await, 404).await;
    assert_eq!(events(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_delete_removes_the_post_and_emits_post_deleted() {
    let app = spawn_app().await;
    let post = new_post(&app, &[Uuid::now_v7()]).await;
    let id = post["id"].as_str().unwrap();
    assert_eq!(delete(&app, "alice", id).await.status().as_u16(), 204);
    assert_problem(app.get_post("alice", id).await, 404).await;
    assert_eq!(app.count("post_images").await, 0);
    let events = events(&app).await;
    assert_eq!(events[1].0, "post.deleted");
    assert_eq!(events[1].1, json!({"post_id": id}));
    assert_problem(delete(&app, "alice", id).await, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_result_and_another_body_is_422() {
    let app = spawn_app().await;
    let send = |body: Value| {
        app.client
            .post(format!("{}/v1/posts", app.address))
            .bearer_auth(app.token("alice"))
            .header("Idempotency-Key", "key-1")
            .json(&body)
            .send()
    };
    let body = json!({"title": "Once", "image_ids": [Uuid::now_v7()]});
    let (first, second) = tokio::join!(send(body.clone()), send(body.clone()));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (201, 201)
    );
    let (first, second): (Value, Value) =
        (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(first, second);
    let third: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(third, first);
    assert_problem(send(json!({"title": "Other"})).await.unwrap(), 422).await;
    assert_eq!(app.count("posts").await, 1);
    assert_eq!(app.count("outbox").await, 1);

    // Keys belong to the caller: another user's same key is a new request.
    let other = app
        .client
        .post(format!("{}/v1/posts", app.address))
        .bearer_auth(app.token("bob"))
        .header("Idempotency-Key", "key-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 201);
    assert_eq!(app.count("posts").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn posts_are_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(new_post(&app, &[]).await["id"].as_str().unwrap().to_owned());
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/posts?limit=2", app.address);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .client
            .get(url)
            .bearer_auth(app.token("bob"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, created);
    let bad = app
        .client
        .get(format!("{}/v1/posts?limit=0", app.address))
        .bearer_auth(app.token("bob"))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422).await;
    app.stop().await;
}
