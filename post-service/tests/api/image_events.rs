use crate::helpers::spawn_app;
use chrono::Utc;
use post_service::events::ImageEventsHandler;
use proto::{Envelope, ImageId, ImageProcessed, Owner, OwnerType, ProcessOutcome, Variant};
use serde_json::{json, Value};
use uuid::Uuid;

fn processed(post: Uuid, image: Uuid, status: ProcessOutcome) -> Envelope<ImageProcessed> {
    Envelope {
        id: Uuid::now_v7(),
        event_type: "image.processed".into(),
        version: 1,
        aggregate_type: "image".into(),
        aggregate_id: image,
        sequence: 1,
        occurred_at: Utc::now(),
        traceparent: None,
        data: ImageProcessed {
            image_id: ImageId(image),
            owner: Some(Owner {
                owner_type: OwnerType::Post,
                id: post,
            }),
            status,
            variants: vec![Variant {
                name: "1x".into(),
                format: "webp".into(),
                width: 400,
                height: 300,
                bytes: 1000,
                url: format!("http://images.test/v1/images/{image}/variants/1x.webp"),
            }],
            error: None,
            placeholder: Some("1QcSHQRnh493V4dIh4eXh1h4kJUI".into()),
        },
    }
}

#[tokio::test]
async fn image_processed_shows_the_image_ready_and_a_duplicate_changes_nothing() {
    let app = spawn_app().await;
    let image = Uuid::now_v7();
    let post: Value = app
        .create_post("alice", &json!({"title": "t", "image_ids": [image]}))
        .await
        .json()
        .await
        .unwrap();
    let post_id: Uuid = post["id"].as_str().unwrap().parse().unwrap();
    let handler = ImageEventsHandler {
        pool: app.pool.clone(),
    };

    let ready = processed(post_id, image, ProcessOutcome::Ready);
    assert!(handler.apply(&ready).await.unwrap(), "applied");
    let shown: Value = app
        .get_post("alice", &post_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["images"][0]["status"], "ready");
    assert_eq!(shown["images"][0]["variants"][0]["name"], "1x");
    assert_eq!(
        shown["images"][0]["placeholder"],
        "1QcSHQRnh493V4dIh4eXh1h4kJUI"
    );

    // A redelivery of the same event id after a later change has no effect.
    sqlx::query("UPDATE post_images SET status = 'failed'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(!handler.apply(&ready).await.unwrap(), "a duplicate");
    let shown: Value = app
        .get_post("alice", &post_id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["images"][0]["status"], "failed");
    assert_eq!(app.count("inbox").await, 1);
    app.stop().await;
}
