use crate::helpers::{assert_problem, read_corpus, spawn_app, spawn_app_with, TestApp};
use serde_json::Value;

async fn presign(app: &TestApp, user: &str) -> Value {
    let response = app
        .client
        .post(format!("{}/v1/uploads/presign", app.address))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

/// Posts `bytes` to S3 with the presigned form, as a browser would.
async fn post_to_s3(app: &TestApp, presigned: &Value, bytes: Vec<u8>) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in presigned["fields"].as_object().unwrap() {
        form = form.text(name.clone(), value.as_str().unwrap().to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("photo"),
    );
    let response = app
        .client
        .post(presigned["url"].as_str().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn complete(app: &TestApp, user: &str, id: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/uploads/{id}/complete", app.address))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_presigned_upload_becomes_an_image_after_complete() {
    let app = spawn_app().await;
    let presigned = presign(&app, "alice").await;
    let id = presigned["id"].as_str().unwrap();
    assert_eq!(presigned["fields"]["key"], format!("uploads/{id}"));
    assert!(post_to_s3(&app, &presigned, read_corpus("odd/hopper.jpg")).await < 300);
    app.assert_reconciled(1).await;

    let response = complete(&app, "alice", id).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(
        (body["width"].as_u64(), body["content_type"].as_str()),
        (Some(128), Some("image/jpeg"))
    );
    assert_eq!(app.keys().await, vec![format!("originals/{id}")]);
    assert_eq!(app.get_image(id).await["state"], "uploaded");
    assert_problem(complete(&app, "alice", id).await, 409).await;
    app.assert_reconciled(1).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_object_is_deleted_and_the_upload_refused() {
    let app = spawn_app().await;
    let presigned = presign(&app, "alice").await;
    let id = presigned["id"].as_str().unwrap();
    assert!(post_to_s3(&app, &presigned, read_corpus("odd/hopper.bmp")).await < 300);
    assert_problem(complete(&app, "alice", id).await, 415).await;
    assert!(app.keys().await.is_empty());
    assert_eq!(app.count("images").await, 0);
    assert_eq!(app.count("pending_uploads").await, 0);
    assert_problem(complete(&app, "alice", id).await, 404).await;
    app.assert_reconciled(0).await;
    app.stop().await;
}

#[tokio::test]
async fn the_policy_refuses_files_over_the_byte_limit() {
    let app = spawn_app_with(|s| s.limits.max_bytes = 60_000).await;
    let presigned = presign(&app, "alice").await;
    let id = presigned["id"].as_str().unwrap();
    let status = post_to_s3(&app, &presigned, vec![0xFF; 60_001]).await;
    assert!(status >= 400, "S3 accepted an oversized file: {status}");
    assert_problem(complete(&app, "alice", id).await, 409).await;
    assert!(app.keys().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn only_the_uploader_can_complete_and_expired_uploads_are_swept() {
    let app = spawn_app().await;
    let presigned = presign(&app, "alice").await;
    let id = presigned["id"].as_str().unwrap();
    assert!(post_to_s3(&app, &presigned, read_corpus("odd/hopper.jpg")).await < 300);
    assert_problem(complete(&app, "mallory", id).await, 404).await;

    sqlx::query("UPDATE pending_uploads SET expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.sweeper(3600, 3600).sweep_once().await.unwrap(), 1);
    assert!(app.keys().await.is_empty());
    assert_problem(complete(&app, "alice", id).await, 404).await;
    app.assert_reconciled(0).await;
    app.stop().await;
}
