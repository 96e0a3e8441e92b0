use crate::helpers::{
    apply_created, assert_problem, post_created, read_corpus, spawn_app, TestApp,
};
use serde_json::Value;
use std::time::{Duration, Instant};

async fn reprocess(app: &TestApp, user: &str, id: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/images/{id}/reprocess", app.address))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn reprocess_rebuilds_the_variants_in_the_background() {
    let app = spawn_app().await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    apply_created(&app.processor(), &post_created("alice", &[&id])).await;
    assert_eq!(reprocess(&app, "alice", &id).await.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let image = loop {
        let image = app.get_image(&id).await;
        if image["attempts"] == 2 && image["process_status"] == "ready" {
            break image;
        }
        assert!(Instant::now() < deadline, "not rebuilt: {image}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(image["variants"].as_array().unwrap().len(), 3);
    let reports: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'image.processed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reports, 2);
    app.assert_reconciled(4).await;
    app.stop().await;
}

#[tokio::test]
async fn only_the_uploader_may_reprocess_and_only_attached_finished_images() {
    let app = spawn_app().await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    assert_problem(reprocess(&app, "alice", &id).await, 409).await;
    apply_created(&app.processor(), &post_created("alice", &[&id])).await;
    assert_problem(reprocess(&app, "mallory", &id).await, 403).await;
    assert_problem(
        reprocess(&app, "alice", &uuid::Uuid::now_v7().to_string()).await,
        404,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn variants_of_presets_no_longer_configured_are_removed_on_rebuild() {
    let app = spawn_app().await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    apply_created(&app.processor(), &post_created("alice", &[&id])).await;
    let mut fewer = app.processor();
    fewer.presets.retain(|p| p.name != "large");
    sqlx::query("UPDATE images SET process_status = 'pending'")
        .execute(&app.pool)
        .await
        .unwrap();
    fewer
        .process_image(
            proto::ImageId(id.parse().unwrap()),
            &infra::trace_context::TraceParent::new_root(),
        )
        .await
        .unwrap();
    let image: Value = app.get_image(&id).await;
    let names: Vec<&str> = image["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1x", "2x"]);
    assert!(!app
        .keys()
        .await
        .contains(&format!("variants/{id}/large.webp")));
    app.assert_reconciled(3).await;
    app.stop().await;
}
