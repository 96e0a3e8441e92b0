use crate::helpers::{assert_problem, read_corpus, spawn_app, spawn_app_with};
use serde_json::Value;

#[tokio::test]
async fn a_photo_upload_is_stored_under_a_server_key_and_described() {
    let app = spawn_app().await;
    let bytes = read_corpus("odd/hopper.jpg");
    let response = app.upload("alice", bytes.clone()).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["state"], "uploaded");
    assert_eq!(body["content_type"], "image/jpeg");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(128), Some(128))
    );
    assert_eq!(body["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(
        body["original_url"],
        format!("{}/v1/images/{id}/original", app.address)
    );
    assert_eq!(app.keys().await, vec![format!("originals/{id}")]);

    let image = app.get_image(id).await;
    assert_eq!(image["state"], "uploaded");
    assert_eq!(image["process_status"], "pending");
    assert_eq!(image["owner"], Value::Null);

    let original = app
        .client
        .get(format!("{}/v1/images/{id}/original", app.address))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(original.status().as_u16(), 200);
    assert_eq!(original.bytes().await.unwrap().to_vec(), bytes);
    app.stop().await;
}

#[tokio::test]
async fn a_multipart_upload_is_sniffed_and_the_client_file_name_never_reaches_a_key() {
    let app = spawn_app().await;
    let part = reqwest::multipart::Part::bytes(read_corpus("odd/hopper.jpg"))
        .file_name("../../etc/passwd.png")
        .mime_str("image/png")
        .unwrap();
    let response = app
        .client
        .post(format!("{}/v1/uploads", app.address))
        .bearer_auth(app.token("alice"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content_type"], "image/jpeg", "sniffed, not declared");
    assert_eq!(
        app.keys().await,
        vec![format!("originals/{}", body["id"].as_str().unwrap())]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_corrupt_upload_is_refused_and_leaves_no_row_and_no_object() {
    let app = spawn_app().await;
    let problem = assert_problem(
        app.upload("alice", read_corpus("odd/broken.png")).await,
        422,
    )
    .await;
    assert_eq!(problem["type"], "/problems/unreadable-image");
    assert_eq!(app.count("images").await, 0);
    assert!(app.keys().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn other_formats_are_415_and_oversized_bodies_413_with_nothing_stored() {
    let app = spawn_app_with(|s| s.limits.max_bytes = 60_000).await;
    let problem = assert_problem(
        app.upload("alice", read_corpus("odd/hopper.bmp")).await,
        415,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("BMP"),
        "{problem}"
    );
    assert_problem(
        app.upload("alice", read_corpus("odd/hopper.tif")).await,
        415,
    )
    .await;
    assert_problem(app.upload("alice", vec![0xFF; 60_001]).await, 413).await;
    assert_problem(app.upload("alice", Vec::new()).await, 400).await;
    assert_eq!(app.count("images").await, 0);
    assert!(app.keys().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn uploads_need_a_valid_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/uploads", app.address))
        .body(read_corpus("odd/hopper.jpg"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    assert_eq!(app.count("images").await, 0);
    app.stop().await;
}
