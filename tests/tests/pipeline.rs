//! The whole pipe: upload, create a post, and see variants appear, with every
//! hop real (three processes, PostgreSQL, RabbitMQ, S3).
use e2e::{corpus, Stack};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn upload(stack: &Stack, token: &str, file: &str) -> Value {
    let bytes = std::fs::read(corpus(file)).unwrap();
    let response = stack
        .client
        .post(stack.image_url("/v1/uploads"))
        .bearer_auth(token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "upload of {file}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_post_with_two_phone_photos_gets_webp_variants_in_the_right_orientation() {
    let stack = Stack::start().await;
    let token = stack.token("alice");
    let portrait = upload(
        &stack,
        &token,
        "photos/phone12_dragonfly_4032x3024_orient6.jpg",
    )
    .await;
    let landscape = upload(&stack, &token, "photos/phone12_seeding_4032x3024.jpg").await;
    assert_eq!(
        (portrait["width"].as_u64(), portrait["height"].as_u64()),
        (Some(3024), Some(4032))
    );
    assert_eq!(
        (landscape["width"].as_u64(), landscape["height"].as_u64()),
        (Some(4032), Some(3024))
    );

    let started = Instant::now();
    let response = stack
        .client
        .post(stack.post_url("/v1/posts"))
        .bearer_auth(&token)
        .json(&json!({"title": "Dragonfly", "body": "Two photos", "image_ids": [portrait["id"], landscape["id"]]}))
        .send()
        .await
        .unwrap();
    let created_after = started.elapsed();
    assert_eq!(response.status().as_u16(), 201);
    let keys = infra::testing::list_keys(&stack.s3).await;
    let post: Value = response.json().await.unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("originals/")),
        "the 201 came before any variant existed: {keys:?}"
    );
    for image in post["images"].as_array().unwrap() {
        assert_eq!(image["status"], "processing");
        assert_eq!(image["variants"], json!([]));
        assert!(image["original_url"]
            .as_str()
            .unwrap()
            .ends_with("/original"));
    }

    let post_id = post["id"].as_str().unwrap();
    let deadline = Duration::from_secs(120);
    let ready = loop {
        let current: Value = stack
            .client
            .get(stack.post_url(&format!("/v1/posts/{post_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let images = current["images"].as_array().unwrap();
        if images.iter().all(|i| i["status"] == "ready") {
            break current;
        }
        if images.iter().any(|i| i["status"] == "failed") || started.elapsed() > deadline {
            panic!(
                "post not ready within {deadline:?}; last seen {current:#}\n{}",
                stack.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "POST /v1/posts answered in {} ms; both 12 MP images ready after {} ms",
        created_after.as_millis(),
        started.elapsed().as_millis()
    );

    for (image, portrait) in ready["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip([true, false])
    {
        let variants = image["variants"].as_array().unwrap();
        let names: Vec<&str> = variants
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["1x", "2x", "large"]);
        for (variant, width) in variants.iter().zip([400, 800, 1600]) {
            let bytes = stack
                .client
                .get(variant["url"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP)
                .expect("variant decodes as WebP");
            assert_eq!(decoded.width(), width, "{variant}");
            let expected_height = if portrait {
                width * 4032 / 3024
            } else {
                width * 3024 / 4032
            };
            assert!(
                decoded.height().abs_diff(expected_height) <= 1,
                "{variant}: {}x{}",
                decoded.width(),
                decoded.height()
            );
            assert_eq!(
                decoded.height() > decoded.width(),
                portrait,
                "orientation of {variant}"
            );
            assert_eq!(variant["width"].as_u64(), Some(u64::from(decoded.width())));
        }
    }

    let image: Value = stack
        .client
        .get(stack.image_url(&format!("/v1/images/{}", portrait["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(image["state"], "attached");
    assert_eq!(image["owner"], json!({"type": "post", "id": post_id}));

    // Each program exposes what it did on /metrics.
    let metrics = |url: String| {
        let client = stack.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let relay = metrics(format!("http://127.0.0.1:{}/metrics", stack.relay.port)).await;
    let images = metrics(stack.image_url("/metrics")).await;
    let posts = metrics(stack.post_url("/metrics")).await;
    for (text, series) in [
        (&relay, r#"relay_publishes_total{outcome="confirmed""#),
        (&relay, "outbox_backlog{"),
        (&relay, "outbox_oldest_unpublished_age_seconds{"),
        (
            &images,
            r#"consumer_messages_total{outcome="ok",queue="image-service.post-events",type="post.created"}"#,
        ),
        (
            &images,
            r#"image_processing_seconds_count{format="webp",stage="encode",variant="large"}"#,
        ),
        (
            &images,
            r#"event_delivery_seconds_count{queue="image-service.post-events",type="post.created"} 1"#,
        ),
        (
            &posts,
            r#"event_delivery_seconds_count{queue="post-service.image-events",type="image.processed"}"#,
        ),
        (
            &images,
            r#"http_request_duration_seconds_count{method="POST",route="/v1/uploads",status="201"}"#,
        ),
        (
            &posts,
            r#"consumer_messages_total{outcome="ok",queue="post-service.image-events",type="image.processed"}"#,
        ),
        (
            &posts,
            r#"http_request_duration_seconds_count{method="GET",route="/v1/posts/{id}",status="200"}"#,
        ),
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }

    // A poison message ends in the dead letters, visible to `dlq`.
    let (code, _) = stack.dlq(&["list"]);
    assert_eq!(code, Some(1), "nothing dead-lettered yet");
    let connection = infra::amqp::connect(&stack.amqp_url, "e2e-poison")
        .await
        .unwrap();
    let publisher = infra::amqp::Publisher::new(&connection).await.unwrap();
    let sent = publisher
        .publish_all(vec![infra::amqp::Outgoing {
            exchange: proto::topology::POST_EVENTS,
            routing_key: "post.created",
            body: b"{not json",
            properties: infra::amqp::event_properties("poison-1", "post.created", None),
        }])
        .await;
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (code, out) = stack.dlq(&["list", "--json"]);
        if code == Some(0) {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter listed ({code:?})\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["queue"], "image-service.post-events.dlq");
    assert_eq!(row["message_id"], "poison-1");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("malformed envelope"),
        "{row}"
    );
    let id = row["id"].to_string();
    let (code, shown) = stack.dlq(&["show", &id]);
    assert_eq!(code, Some(0));
    assert!(
        shown.contains("route:         post.events / post.created") && shown.contains("{not json"),
        "{shown}"
    );
    assert_eq!(stack.dlq(&["show", "999999"]).0, Some(1), "nothing matched");
    let (code, stats) = stack.dlq(&["stats"]);
    assert_eq!(code, Some(0));
    assert!(
        stats.starts_with("QUEUE") && stats.contains("image-service.post-events.dlq"),
        "{stats}"
    );
    println!("{stats}");
    let _ = connection.close(200, "done").await;

    let exits = stack.stop().await;
    assert!(
        exits.iter().all(|(_, code)| *code == Some(0)),
        "graceful exits on SIGTERM: {exits:?}"
    );
}
