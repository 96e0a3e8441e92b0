//! AVIF variants: built after the WebP ones, served by extension or by
//! `Accept`, and deleted with the file.
use crate::helpers::{apply_created, post_created, read_corpus, spawn_app_with, TestApp};
use proto::{Envelope, PostDeleted};
use reqwest::Response;

async fn variant(app: &TestApp, file: &str, accept: Option<&str>) -> Response {
    let mut request = app.client.get(format!("{}/v1/images/{file}", app.address));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn avif_variants_follow_the_webp_ones_and_accept_picks_the_format() {
    let app = spawn_app_with(|s| s.variants.avif = true).await;
    let processor = app.processor();
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    let created = post_created("alice", &[&id]);
    apply_created(&processor, &created).await;

    let image = app.get_image(&id).await;
    assert_eq!(image["process_status"], "ready");
    let variants = image["variants"].as_array().unwrap();
    let formats: Vec<(&str, &str, u64)> = variants
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["format"].as_str().unwrap(),
                v["width"].as_u64().unwrap(),
            )
        })
        .collect();
    for name in ["1x", "2x", "large"] {
        assert!(formats.contains(&(name, "webp", 128)), "{formats:?}");
        assert!(formats.contains(&(name, "avif", 128)), "{formats:?}");
    }
    let avif = variants.iter().find(|v| v["format"] == "avif").unwrap();
    assert!(avif["url"].as_str().unwrap().ends_with(".avif"), "{avif}");

    let by_extension = variant(&app, &format!("{id}/variants/1x.avif"), None).await;
    assert_eq!(by_extension.status().as_u16(), 200);
    assert_eq!(header(&by_extension, "content-type"), "image/avif");
    assert!(header(&by_extension, "cache-control").contains("immutable"));
    assert!(!header(&by_extension, "etag").is_empty());
    let bytes = by_extension.bytes().await.unwrap();
    assert_eq!(&bytes[4..12], b"ftypavif");
    assert_eq!(
        image_service::pipeline::avif::dimensions(&bytes),
        Some((128, 128))
    );

    let negotiable = format!("{id}/variants/1x");
    for (accept, expected) in [
        (Some("image/avif,image/webp,*/*;q=0.8"), "image/avif"),
        (Some("image/webp,*/*"), "image/webp"),
        (Some("image/avif;q=0, image/webp"), "image/webp"),
        (None, "image/webp"),
    ] {
        let response = variant(&app, &negotiable, accept).await;
        assert_eq!(response.status().as_u16(), 200, "{accept:?}");
        assert_eq!(header(&response, "content-type"), expected, "{accept:?}");
        assert_eq!(header(&response, "vary"), "Accept");
    }
    assert_eq!(
        variant(&app, &format!("{id}/variants/1x.tiff"), None)
            .await
            .status()
            .as_u16(),
        404
    );
    app.assert_reconciled(7).await;

    // The post goes; after the grace period the file's objects all go,
    // AVIF included.
    let deleted = Envelope {
        id: uuid::Uuid::now_v7(),
        event_type: "post.deleted".into(),
        version: 1,
        aggregate_type: "post".into(),
        aggregate_id: created.aggregate_id,
        sequence: 2,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        data: PostDeleted {
            post_id: created.data.post_id,
        },
    };
    processor
        .apply_post_deleted(&deleted, created.data.post_id)
        .await
        .unwrap();
    assert_eq!(app.sweeper(0, 3600).sweep_once().await.unwrap(), 1);
    app.assert_reconciled(0).await;
    app.stop().await;
}

#[tokio::test]
async fn ready_images_without_avif_variants_get_them_later() {
    let app = spawn_app_with(|s| s.variants.avif = true).await;
    let id = app.upload_ok("alice", read_corpus("odd/hopper.jpg")).await;
    apply_created(&app.processor(), &post_created("alice", &[&id])).await;
    // As if the AVIF step had been cut short: only the WebP ones listed.
    sqlx::query(
        "UPDATE images SET variants = (SELECT jsonb_agg(v) FROM jsonb_array_elements(variants) v
                                        WHERE v->>'format' = 'webp')
         WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let built = app.processor().backfill_avif(0, 10).await.unwrap();
    assert_eq!(built, 1);
    let image = app.get_image(&id).await;
    let avif = image["variants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["format"] == "avif")
        .count();
    assert_eq!(avif, 3, "{image}");
    assert_eq!(app.processor().backfill_avif(0, 10).await.unwrap(), 0);
    app.stop().await;
}
