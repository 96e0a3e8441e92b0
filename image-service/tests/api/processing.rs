use crate::helpers::{post_created, read_corpus, spawn_app};
use image_service::processing::post_owner;
use infra::trace_context::TraceParent;
use serde_json::Value;

async fn outbox(app: &crate::helpers::TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT data FROM outbox ORDER BY position")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn post_created_attaches_the_images_and_builds_webp_variants_once() {
    let app = spawn_app().await;
    let id = app
        .upload_ok("alice", read_corpus("odd/hopper_orientation_6.jpg"))
        .await;
    let event = post_created("alice", &[&id]);
    let processor = app.processor();
    let trace = TraceParent::new_root();

    assert!(processor.attach_post(&event, &trace).await.unwrap());
    processor
        .process_owner(&post_owner(&event), &trace)
        .await
        .unwrap();

    let image = app.get_image(&id).await;
    assert_eq!(image["state"], "attached");
    assert_eq!(image["process_status"], "ready");
    assert_eq!(image["owner"]["id"], event.data.post_id.to_string());
    let variants = image["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 3);
    let mut keys = app.keys().await;
    keys.sort();
    let mut expected = vec![
        format!("originals/{id}"),
        format!("variants/{id}/1x.webp"),
        format!("variants/{id}/2x.webp"),
        format!("variants/{id}/large.webp"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    for variant in variants {
        // Variants are public: no token.
        let response = app
            .client
            .get(variant["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(response.headers().contains_key("etag"));
        let bytes = response.bytes().await.unwrap();
        let decoded =
            image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (128, 128),
            "never upscaled"
        );
    }

    let events = outbox(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "ready");
    assert_eq!(events[0]["image_id"], id);

    // The same event again: nothing attached or built twice, no new event.
    assert!(!processor.attach_post(&event, &trace).await.unwrap());
    processor
        .process_owner(&post_owner(&event), &trace)
        .await
        .unwrap();
    assert_eq!(outbox(&app).await.len(), 1);
    assert_eq!(app.get_image(&id).await["attempts"], 1);
    app.stop().await;
}

#[tokio::test]
async fn images_of_another_user_or_unknown_ids_are_refused_with_a_reason_and_left_untouched() {
    let app = spawn_app().await;
    let bobs = app.upload_ok("bob", read_corpus("odd/hopper.jpg")).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let event = post_created("alice", &[&bobs, &unknown]);
    let processor = app.processor();
    let trace = TraceParent::new_root();
    processor.attach_post(&event, &trace).await.unwrap();
    processor
        .process_owner(&post_owner(&event), &trace)
        .await
        .unwrap();

    let image = app.get_image(&bobs).await;
    assert_eq!(image["state"], "uploaded");
    assert_eq!(image["owner"], Value::Null);
    let events = outbox(&app).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["status"] == "failed"));
    assert!(
        events[0]["error"].as_str().unwrap().contains("author"),
        "{}",
        events[0]
    );
    assert!(
        events[1]["error"].as_str().unwrap().contains("not found"),
        "{}",
        events[1]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_decoded_ends_failed_with_a_reason() {
    let app = spawn_app().await;
    let id = app
        .upload_ok("alice", read_corpus("odd/truncated_jpeg.jpg"))
        .await;
    let event = post_created("alice", &[&id]);
    let processor = app.processor();
    let trace = TraceParent::new_root();
    processor.attach_post(&event, &trace).await.unwrap();
    processor
        .process_owner(&post_owner(&event), &trace)
        .await
        .unwrap();
    let image = app.get_image(&id).await;
    let status = image["process_status"].as_str().unwrap();
    assert!(status == "ready" || status == "failed", "{image}");
    if status == "failed" {
        assert!(
            image["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{image}"
        );
        assert_eq!(outbox(&app).await[0]["status"], "failed");
    }
    app.stop().await;
}
