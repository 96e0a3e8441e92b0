use crate::helpers::{
    apply, apply_created, post_created, read_corpus, spawn_app, spawn_app_with, TestApp,
};
use image_service::processing::Applied;
use proto::{Envelope, ImageId, PostDeleted};
use serde_json::Value;

async fn outbox(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT data FROM outbox ORDER BY position")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

fn image_id(id: &str) -> ImageId {
    ImageId(id.parse().unwrap())
}

/// The next event of the same post, with another payload.
fn next<T, U>(event: &Envelope<T>, sequence: i64, event_type: &str, data: U) -> Envelope<U> {
    Envelope {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        version: 1,
        aggregate_type: "post".into(),
        aggregate_id: event.aggregate_id,
        sequence,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        data,
    }
}

#[tokio::test]
async fn post_created_attaches_the_images_and_builds_webp_variants_once() {
    let app = spawn_app().await;
    let id = app
        .upload_ok("alice", read_corpus("odd/hopper_orientation_6.jpg"))
        .await;
    let event = post_created("alice", &[&id]);
    let processor = app.processor();

    assert_eq!(apply_created(&processor, &event).await, Applied::Yes);

    let image = app.get_image(&id).await;
    assert_eq!(image["state"], "attached");
    assert_eq!(image["process_status"], "ready");
    assert_eq!(image["owner"]["id"], event.data.post_id.to_string());
    assert!(
        image["placeholder"].as_str().is_some_and(|p| p.len() < 48),
        "{image}"
    );
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
        for chunk in [&b"EXIF"[..], b"ICCP", b"XMP "] {
            assert!(
                !bytes.windows(4).any(|w| w == chunk),
                "metadata chunk {chunk:?} in a variant"
            );
        }
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
    assert_eq!(apply_created(&processor, &event).await, Applied::Duplicate);
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
    apply_created(&app.processor(), &event).await;

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
async fn an_image_attached_to_one_post_cannot_be_taken_by_another() {
    let app = spawn_app().await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let processor = app.processor();
    let first = post_created("alice", &[&id]);
    apply_created(&processor, &first).await;
    let second = post_created("alice", &[&id]);
    apply_created(&processor, &second).await;
    let image = app.get_image(&id).await;
    assert_eq!(image["owner"]["id"], first.data.post_id.to_string());
    let refusal = outbox(&app)
        .await
        .into_iter()
        .find(|e| e["status"] == "failed")
        .unwrap();
    assert_eq!(refusal["owner"]["id"], second.data.post_id.to_string());
    assert!(refusal["error"].as_str().unwrap().contains("another owner"));
    app.stop().await;
}

#[tokio::test]
async fn an_update_abandons_dropped_images_and_a_later_update_can_attach_them_again() {
    let app = spawn_app().await;
    let processor = app.processor();
    let a = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let b = app
        .upload_ok("alice", read_corpus("odd/hopper_gray.jpg"))
        .await;
    let created = post_created("alice", &[&a]);
    let post = created.data.post_id;
    apply_created(&processor, &created).await;

    let update = next(&created, 2, "post.updated", ());
    assert_eq!(
        apply(&processor, &update, post, "alice", &[image_id(&b)]).await,
        Applied::Yes
    );
    let dropped = app.get_image(&a).await;
    assert_eq!(dropped["state"], "abandoned");
    assert_eq!(app.get_image(&b).await["state"], "attached");
    assert_eq!(app.get_image(&b).await["process_status"], "ready");

    let back = next(&created, 3, "post.updated", ());
    apply(
        &processor,
        &back,
        post,
        "alice",
        &[image_id(&a), image_id(&b)],
    )
    .await;
    let again = app.get_image(&a).await;
    assert_eq!(again["state"], "attached");
    assert_eq!(again["attempts"], 1, "variants were kept, not rebuilt");
    let reports: Vec<Value> = outbox(&app)
        .await
        .into_iter()
        .filter(|e| e["image_id"] == a.as_str())
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "re-attaching reports the kept variants: {reports:?}"
    );
    assert_eq!(reports[1]["status"], "ready");
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_post_abandons_all_its_images() {
    let app = spawn_app().await;
    let processor = app.processor();
    let a = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let created = post_created("alice", &[&a]);
    apply_created(&processor, &created).await;
    let deleted = next(
        &created,
        2,
        "post.deleted",
        PostDeleted {
            post_id: created.data.post_id,
        },
    );
    assert_eq!(
        processor
            .apply_post_deleted(&deleted, created.data.post_id)
            .await
            .unwrap(),
        Applied::Yes
    );
    let image = app.get_image(&a).await;
    assert_eq!(image["state"], "abandoned");
    assert_eq!(
        processor
            .apply_post_deleted(&deleted, created.data.post_id)
            .await
            .unwrap(),
        Applied::Duplicate
    );
    app.stop().await;
}

#[tokio::test]
async fn an_event_that_arrives_before_its_predecessor_waits_for_it() {
    let app = spawn_app().await;
    let processor = app.processor();
    let a = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let created = post_created("alice", &[&a]);
    let post = created.data.post_id;
    let update = next(&created, 2, "post.updated", ());
    assert_eq!(
        apply(&processor, &update, post, "alice", &[]).await,
        Applied::Early { expected: 1 }
    );
    assert_eq!(
        app.get_image(&a).await["state"],
        "uploaded",
        "nothing applied early"
    );
    apply_created(&processor, &created).await;
    assert_eq!(
        apply(&processor, &update, post, "alice", &[]).await,
        Applied::Yes
    );
    assert_eq!(app.get_image(&a).await["state"], "abandoned");
    app.stop().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_decoded_ends_failed_with_a_reason() {
    let app = spawn_app().await;
    let id = app
        .upload_ok("alice", read_corpus("odd/truncated_jpeg.jpg"))
        .await;
    let event = post_created("alice", &[&id]);
    apply_created(&app.processor(), &event).await;
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

#[tokio::test]
async fn a_transient_storage_failure_hands_the_image_back_for_the_retry() {
    let app = spawn_app().await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let event = post_created("alice", &[&id]);
    let d = &event.data;
    // Storage unreachable: nothing listens on the discard port.
    let mut broken = app.processor();
    let mut s3 = app.settings.s3.clone();
    s3.endpoint = "http://127.0.0.1:9".into();
    broken.store = image_service::storage::ObjectStore::new(s3.client(), s3.bucket.clone());
    let trace = infra::trace_context::TraceParent::new_root();
    broken
        .apply_post_images(&event, d.post_id, &d.author_id, &d.image_ids, &trace)
        .await
        .unwrap();
    let owner = image_service::processing::post_owner(d.post_id);
    assert!(
        broken.process_owner(&owner, &trace).await.is_err(),
        "an unreachable store is a transient failure"
    );
    assert_eq!(
        app.get_image(&id).await["process_status"],
        "pending",
        "the claim is handed back"
    );

    // The redelivered event, with storage back, builds it at once.
    apply_created(&app.processor(), &event).await;
    assert_eq!(app.get_image(&id).await["process_status"], "ready");
    app.stop().await;
}

#[tokio::test]
async fn the_build_queue_builds_attached_images_that_no_event_handed_to_it() {
    // As after a crash between the attach commit and the build: the image
    // waits as `pending` in the table, and the queue's poll finds it.
    let app = spawn_app_with(|s| s.workers.queue_poll_ms = 50).await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let event = post_created("alice", &[&id]);
    let d = &event.data;
    let trace = infra::trace_context::TraceParent::new_root();
    app.processor()
        .apply_post_images(&event, d.post_id, &d.author_id, &d.image_ids, &trace)
        .await
        .unwrap();
    let image = ready_within_30s(&app, &id).await;
    assert_eq!(image["attempts"], 1, "built once: {image}");
    assert_eq!(image["variants"].as_array().unwrap().len(), 3);
    assert_eq!(outbox(&app).await.len(), 1, "one report");
    app.stop().await;
}

#[tokio::test]
async fn the_build_queue_takes_over_an_image_whose_builder_stopped_beating() {
    // As after a kill -9 mid-build: attached, `processing`, and no
    // heartbeat for a minute (one statement, so the queue never sees it
    // pending).
    let app = spawn_app_with(|s| s.workers.queue_poll_ms = 50).await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    sqlx::query(
        "UPDATE images SET state = 'attached', owner_type = 'post', owner_id = $2,
             process_status = 'processing', attempts = 1, updated_at = now() - interval '1 minute'
         WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .bind(uuid::Uuid::now_v7())
    .execute(&app.pool)
    .await
    .unwrap();
    let image = ready_within_30s(&app, &id).await;
    assert_eq!(image["attempts"], 2, "one more attempt: {image}");
    app.stop().await;
}

/// Polls the image until it is `ready`; fails with the last view after 30 s.
async fn ready_within_30s(app: &TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let image = app.get_image(id).await;
        if image["process_status"] == "ready" {
            return image;
        }
        assert!(std::time::Instant::now() < deadline, "not built: {image}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
