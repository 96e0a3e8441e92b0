//! Every way an orphaned object used to appear ends with the bucket and the
//! database in agreement (`reconcile` finds nothing).
use crate::helpers::{apply, apply_created, post_created, read_corpus, spawn_app, TestApp};
use proto::{Envelope, ImageId, PostDeleted, PostRolledBack};

const HOUR: u64 = 3600;

fn image_id(id: &str) -> ImageId {
    ImageId(id.parse().unwrap())
}

/// Another event of the post `first` belongs to.
fn event<T, U>(first: &Envelope<T>, sequence: i64, event_type: &str, data: U) -> Envelope<U> {
    Envelope {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        version: 1,
        aggregate_type: "post".into(),
        aggregate_id: first.aggregate_id,
        sequence,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        data,
    }
}

async fn upload(app: &TestApp) -> String {
    app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await
}

/// Removes an image's original from the bucket behind the service's back.
async fn delete_original(app: &TestApp, id: &str) {
    app.settings
        .s3
        .client()
        .delete_object()
        .bucket(&app.settings.s3.bucket)
        .key(format!("originals/{id}"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn images_of_a_rolled_back_create_are_deleted_after_the_grace_period() {
    let app = spawn_app().await;
    let id = upload(&app).await;
    let failed = post_created("alice", &[&id]);
    let rolled_back = event(
        &failed,
        1,
        "post.rolled_back",
        PostRolledBack {
            post_id: failed.data.post_id,
            image_ids: vec![image_id(&id)],
        },
    );
    app.processor()
        .apply_post_rolled_back(&rolled_back, &rolled_back.data.image_ids)
        .await
        .unwrap();
    assert_eq!(app.get_image(&id).await["state"], "abandoned");
    app.assert_reconciled(1).await;

    assert_eq!(
        app.sweeper(HOUR, 24 * HOUR).sweep_once().await.unwrap(),
        0,
        "not before the grace period"
    );
    assert_eq!(app.sweeper(0, 24 * HOUR).sweep_once().await.unwrap(), 1);
    assert_eq!(app.get_image(&id).await["state"], "deleted");
    app.assert_reconciled(0).await;
    app.stop().await;
}

#[tokio::test]
async fn a_rolled_back_create_never_takes_images_a_successful_retry_attached() {
    let app = spawn_app().await;
    let id = upload(&app).await;
    let failed = post_created("alice", &[&id]);
    let retry = post_created("alice", &[&id]);
    apply_created(&app.processor(), &retry).await;
    // The failed attempt's notice arrives after the retry was applied.
    let rolled_back = event(
        &failed,
        1,
        "post.rolled_back",
        PostRolledBack {
            post_id: failed.data.post_id,
            image_ids: vec![image_id(&id)],
        },
    );
    app.processor()
        .apply_post_rolled_back(&rolled_back, &rolled_back.data.image_ids)
        .await
        .unwrap();
    assert_eq!(app.get_image(&id).await["state"], "attached");
    assert_eq!(app.sweeper(0, 0).sweep_once().await.unwrap(), 0);
    app.assert_reconciled(4).await;
    app.stop().await;
}

#[tokio::test]
async fn images_replaced_by_an_update_are_deleted_and_the_kept_ones_stay() {
    let app = spawn_app().await;
    let processor = app.processor();
    let (old, kept, new) = (upload(&app).await, upload(&app).await, upload(&app).await);
    let created = post_created("alice", &[&old, &kept]);
    apply_created(&processor, &created).await;
    let update = event(&created, 2, "post.updated", ());
    apply(
        &processor,
        &update,
        created.data.post_id,
        "alice",
        &[image_id(&kept), image_id(&new)],
    )
    .await;
    app.assert_reconciled(12).await;
    assert_eq!(app.sweeper(0, 24 * HOUR).sweep_once().await.unwrap(), 1);
    assert_eq!(app.get_image(&old).await["state"], "deleted");
    assert_eq!(app.get_image(&kept).await["state"], "attached");
    app.assert_reconciled(8).await;
    app.stop().await;
}

#[tokio::test]
async fn the_images_of_a_deleted_post_are_deleted() {
    let app = spawn_app().await;
    let processor = app.processor();
    let (a, b) = (upload(&app).await, upload(&app).await);
    let created = post_created("alice", &[&a, &b]);
    apply_created(&processor, &created).await;
    let deleted = event(
        &created,
        2,
        "post.deleted",
        PostDeleted {
            post_id: created.data.post_id,
        },
    );
    processor
        .apply_post_deleted(&deleted, created.data.post_id)
        .await
        .unwrap();
    assert_eq!(app.sweeper(0, 24 * HOUR).sweep_once().await.unwrap(), 2);
    app.assert_reconciled(0).await;
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox WHERE event_type = 'image.deleted'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 2, "image.deleted per file");
    app.stop().await;
}

#[tokio::test]
async fn uploads_never_used_are_deleted_after_the_ttl() {
    let app = spawn_app().await;
    let id = upload(&app).await;
    assert_eq!(
        app.sweeper(0, 24 * HOUR).sweep_once().await.unwrap(),
        0,
        "not before the TTL"
    );
    assert_eq!(app.sweeper(0, 0).sweep_once().await.unwrap(), 1);
    assert_eq!(app.get_image(&id).await["state"], "deleted");
    app.assert_reconciled(0).await;
    app.stop().await;
}

#[tokio::test]
async fn a_row_whose_object_was_never_written_is_reported_then_swept() {
    let app = spawn_app().await;
    let id = upload(&app).await;
    // As if the process died between the row commit and the S3 PUT.
    delete_original(&app, &id).await;
    let report = app.reconcile(false).await;
    assert_eq!(report.missing, vec![format!("originals/{id}")]);
    assert!(report.unexplained.is_empty());
    assert_eq!(
        app.sweeper(0, 0).sweep_once().await.unwrap(),
        1,
        "a missing object counts as deleted"
    );
    app.assert_reconciled(0).await;
    app.stop().await;
}

#[tokio::test]
async fn a_row_being_swept_is_not_reported_as_missing_its_objects() {
    let app = spawn_app().await;
    let id = upload(&app).await;
    // A sweep holds the row locked while it deletes the objects, and marks
    // the row deleted only afterwards.
    let mut sweep = app.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM images WHERE id = $1 FOR UPDATE")
        .bind(uuid::Uuid::parse_str(&id).unwrap())
        .execute(&mut *sweep)
        .await
        .unwrap();
    delete_original(&app, &id).await;
    let report = app.reconcile(false).await;
    assert!(report.missing.is_empty(), "{report}");
    // Had the sweep failed and let go, the row is damage again.
    sweep.rollback().await.unwrap();
    let report = app.reconcile(false).await;
    assert_eq!(report.missing, vec![format!("originals/{id}")]);
    app.stop().await;
}

#[tokio::test]
async fn reconcile_finds_objects_no_row_explains_and_deletes_them_when_asked() {
    let app = spawn_app().await;
    let kept = upload(&app).await;
    let stray = format!("variants/{}/1x.webp", uuid::Uuid::now_v7());
    app.settings
        .s3
        .client()
        .put_object()
        .bucket(&app.settings.s3.bucket)
        .key(&stray)
        .body(b"stray".to_vec().into())
        .send()
        .await
        .unwrap();
    let report = app.reconcile(false).await;
    assert_eq!(report.unexplained, vec![stray.clone()]);
    assert!(!report.is_clean());
    let report = app.reconcile(true).await;
    assert_eq!(report.deleted, 1);
    app.assert_reconciled(1).await;
    assert_eq!(app.keys().await, vec![format!("originals/{kept}")]);
    app.stop().await;
}

#[tokio::test]
async fn an_upload_while_s3_is_down_is_refused_and_leaves_no_row() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app =
        crate::helpers::spawn_app_with(|s| s.s3.endpoint = format!("http://127.0.0.1:{dead}"))
            .await;
    let problem = crate::helpers::assert_problem(
        app.upload("alice", read_corpus("odd/hopper.jpg")).await,
        503,
    )
    .await;
    assert_eq!(problem["type"], "/problems/storage-unavailable");
    assert!(
        problem.get("detail").is_none(),
        "no internals in 5xx: {problem}"
    );
    assert_eq!(
        app.count("images").await,
        0,
        "the row of the failed write is gone"
    );
    app.stop().await;
}

#[tokio::test]
async fn readiness_names_an_unreachable_s3() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app =
        crate::helpers::spawn_app_with(|s| s.s3.endpoint = format!("http://127.0.0.1:{dead}"))
            .await;
    let response = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_ne!(body["checks"]["s3"], "ok", "{body}");
    app.stop().await;
}
