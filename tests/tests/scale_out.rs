//! Two relays and two image services on the same outboxes and queues: a
//! post changed in quick succession ends with exactly its final images
//! attached, every other one abandoned, and no image built twice.
use e2e::{corpus, Stack};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn rapid_changes_apply_in_order_with_two_relays_and_two_consumers() {
    let mut stack = Stack::start().await;
    stack.add_image_service().await;
    stack.add_relay().await;
    let token = stack.token("alice");

    let mut images = Vec::new();
    for _ in 0..6 {
        let photo = std::fs::read(corpus("odd/hopper.jpg")).unwrap();
        images.push(stack.upload(&token, photo).await);
    }
    let lists: [&[usize]; 6] = [&[0, 1], &[2], &[2, 3], &[0, 4], &[5], &[1, 5]];
    let ids = |list: &[usize]| list.iter().map(|&i| images[i].clone()).collect::<Vec<_>>();
    let post: Value = stack
        .client
        .post(stack.post_url("/v1/posts"))
        .bearer_auth(&token)
        .json(&json!({"title": "t", "image_ids": ids(lists[0])}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();
    for list in &lists[1..] {
        let response = stack
            .client
            .patch(stack.post_url(&format!("/v1/posts/{post_id}")))
            .bearer_auth(&token)
            .json(&json!({"image_ids": ids(list)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    let last = ids(lists[5]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let states = loop {
        let mut states = Vec::new();
        for id in &images {
            let image = stack
                .get_json(&stack.image_url(&format!("/v1/images/{id}")), &token)
                .await;
            states.push(image);
        }
        let settled = images.iter().zip(&states).all(|(id, image)| {
            if last.contains(id) {
                image["state"] == "attached" && image["process_status"] == "ready"
            } else {
                image["state"] == "abandoned"
            }
        });
        if settled {
            break states;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {states:#?}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for image in states.iter().filter(|i| i["process_status"] == "ready") {
        assert_eq!(image["attempts"], 1, "built more than once: {image}");
    }
    let shown: Value = stack
        .client
        .get(stack.post_url(&format!("/v1/posts/{post_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown_ids: Vec<&str> = shown["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        shown_ids,
        last.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let exits = stack.stop().await;
    assert!(exits.iter().all(|(_, code)| *code == Some(0)), "{exits:?}");
}

/// Two of each program on the same databases, vhost and bucket: both post
/// services take requests, both relays publish, both image services build,
/// and every image is built exactly once.
#[tokio::test]
async fn two_of_each_program_share_the_work_and_build_each_image_once() {
    let mut stack = Stack::start().await;
    stack.add_post_service().await;
    stack.add_image_service().await;
    stack.add_relay().await;
    let token = stack.token("alice");
    let (posts, images, relays) = (
        stack.ports("post-service"),
        stack.ports("image-service"),
        stack.ports("outbox-relay"),
    );
    assert_eq!((posts.len(), images.len(), relays.len()), (2, 2, 2));
    let photo = std::fs::read(corpus("odd/hopper.jpg")).unwrap();

    // Posts go to both post services in turn until both relays have
    // published and both image services have built something (which
    // instance takes a message is the broker's and the database's choice).
    let built = |port| {
        let stack = &stack;
        async move {
            stack
                .metric(
                    port,
                    "image_processing_seconds_count",
                    &["stage=\"decode\""],
                )
                .await
        }
    };
    let published = |port| {
        let stack = &stack;
        async move {
            stack
                .metric(port, "relay_publishes_total", &["outcome=\"confirmed\""])
                .await
        }
    };
    let mut uploaded = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for (turn, port) in posts.iter().enumerate() {
            let id = stack.upload(&token, photo.clone()).await;
            let created = stack
                .client
                .post(format!("http://127.0.0.1:{port}/v1/posts"))
                .bearer_auth(&token)
                .json(&json!({"title": format!("post {turn}"), "image_ids": [id]}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status().as_u16(), 201);
            uploaded.push(id);
        }
        let mut counts = Vec::new();
        for &port in images.iter() {
            counts.push(built(port).await);
        }
        for &port in relays.iter() {
            counts.push(published(port).await);
        }
        if counts.iter().all(|&n| n > 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "work not shared after {} posts: built/published {counts:?}\n{}",
            uploaded.len(),
            stack.logs()
        );
    }

    // Every image ends ready, built once in all.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut ready = 0;
        for id in &uploaded {
            let image = stack
                .get_json(&stack.image_url(&format!("/v1/images/{id}")), &token)
                .await;
            if image["process_status"] == "ready" {
                assert_eq!(image["attempts"], 1, "built more than once: {image}");
                ready += 1;
            }
        }
        if ready == uploaded.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {} ready\n{}",
            uploaded.len(),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_instance = Vec::new();
    for &port in images.iter() {
        per_instance.push(built(port).await);
    }
    let mut per_relay = Vec::new();
    for &port in relays.iter() {
        per_relay.push(published(port).await);
    }
    println!(
        "{} images: built per image service {per_instance:?}; events published per relay {per_relay:?}",
        uploaded.len()
    );
    assert_eq!(
        per_instance.iter().sum::<f64>() as usize,
        uploaded.len(),
        "each image decoded exactly once across both image services"
    );
    let exits = stack.stop().await;
    assert!(exits.iter().all(|(_, code)| *code == Some(0)), "{exits:?}");
}
