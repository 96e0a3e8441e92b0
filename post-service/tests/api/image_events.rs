use crate::helpers::{spawn_app, TestApp};
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

/// A post of alice's naming `image`, and a handler on the app's database.
async fn post_and_handler(app: &TestApp, image: Uuid) -> (Uuid, ImageEventsHandler) {
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
    (post_id, handler)
}

/// The post as alice reads it.
async fn read_post(app: &TestApp, post_id: Uuid) -> Value {
    app.get_post("alice", &post_id.to_string())
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn image_processed_shows_the_image_ready_and_a_duplicate_changes_nothing() {
    let app = spawn_app().await;
    let image = Uuid::now_v7();
    let (post_id, handler) = post_and_handler(&app, image).await;

    let ready = processed(post_id, image, ProcessOutcome::Ready);
    assert!(handler.apply(&ready).await.unwrap(), "applied");
    let shown = read_post(&app, post_id).await;
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
    let shown = read_post(&app, post_id).await;
    assert_eq!(shown["images"][0]["status"], "failed");
    assert_eq!(app.count("inbox").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_result_for_an_image_the_post_no_longer_has_is_recorded_once_and_changes_nothing() {
    let app = spawn_app().await;
    let kept = Uuid::now_v7();
    let (post_id, handler) = post_and_handler(&app, kept).await;

    let dropped = processed(post_id, Uuid::now_v7(), ProcessOutcome::Ready);
    assert!(handler.apply(&dropped).await.unwrap(), "applied");
    assert!(!handler.apply(&dropped).await.unwrap(), "a duplicate");
    let mut unowned = processed(post_id, kept, ProcessOutcome::Ready);
    unowned.data.owner = None;
    assert!(handler.apply(&unowned).await.unwrap(), "applied");

    let shown = read_post(&app, post_id).await;
    assert_eq!(shown["images"].as_array().unwrap().len(), 1);
    assert_eq!(shown["images"][0]["status"], "processing");
    assert_eq!(app.count("inbox").await, 2);
    app.stop().await;
}
