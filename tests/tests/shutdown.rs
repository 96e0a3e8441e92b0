//! Graceful shutdown with work in flight: an image service told to stop
//! (SIGTERM) while it builds variants stops consuming, finishes or hands
//! back what it holds, and exits 0; another instance then brings every
//! image to `ready`, so nothing is lost or left half-done.
use e2e::{corpus, Stack};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_image_service_stopped_mid_build_exits_cleanly_and_no_image_is_lost() {
    let mut stack = Stack::start().await;
    let token = stack.token("alice");
    let photos = [
        "photos/phone12_dragonfly_4032x3024.jpg",
        "photos/phone12_seeding_4032x3024.jpg",
        "photos/phone12_dragonfly_4032x3024_orient6.jpg",
        "photos/Dragonfly_by_Bolly.jpg",
    ];
    let mut ids = Vec::new();
    for photo in photos {
        ids.push(
            stack
                .upload(&token, std::fs::read(corpus(photo)).unwrap())
                .await,
        );
    }
    let created = stack
        .client
        .post(stack.post_url("/v1/posts"))
        .bearer_auth(&token)
        .json(&json!({"title": "stopped mid-build", "image_ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let post: Value = created.json().await.unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();

    // Stop it as soon as a build is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    let statuses = loop {
        let mut statuses = Vec::new();
        for id in &ids {
            let image = stack
                .get_json(&stack.image_url(&format!("/v1/images/{id}")), &token)
                .await;
            statuses.push(image["process_status"].as_str().unwrap_or("").to_owned());
        }
        if statuses.iter().any(|s| s == "processing") {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "no build started: {statuses:?}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        statuses.iter().any(|s| s != "ready"),
        "work was still in flight at SIGTERM: {statuses:?}"
    );
    let code = stack.stop_image_service().await;
    assert_eq!(
        code,
        Some(0),
        "exit after SIGTERM with builds in flight\n{}",
        stack.logs()
    );

    stack.add_image_service().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let current = stack
            .get_json(&stack.post_url(&format!("/v1/posts/{post_id}")), &token)
            .await;
        let images = current["images"].as_array().unwrap();
        if images.len() == ids.len() && images.iter().all(|i| i["status"] == "ready") {
            break;
        }
        assert!(
            images.iter().all(|i| i["status"] != "failed") && Instant::now() < deadline,
            "not every image became ready after the restart: {current:#}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exits = stack.stop().await;
    assert!(exits.iter().all(|(_, code)| *code == Some(0)), "{exits:?}");
}

/// Messages now in `queue`, from a passive declare.
async fn queued(amqp_url: &str, queue: &str) -> u32 {
    let connection = infra::amqp::connect(amqp_url, "shutdown-test")
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(queue, options, Default::default())
        .await
        .expect("the queue exists");
    let _ = connection.close(200, "done").await;
    queue.message_count()
}

#[tokio::test]
async fn a_relay_stopped_mid_backlog_exits_cleanly_having_marked_exactly_what_was_confirmed() {
    let mut stack = Stack::start().await;
    // Nothing consumes post events, so the queue counts what was published.
    assert_eq!(stack.stop_image_service().await, Some(0));
    let posts = sqlx::PgPool::connect(&stack.posts_db).await.unwrap();
    let rows = 50_000;
    sqlx::query(
        "INSERT INTO outbox (id, event_type, version, aggregate_type, aggregate_id, sequence, data)
         SELECT gen_random_uuid(), 'post.created', 1, 'post', gen_random_uuid(), 1,
                jsonb_build_object('post_id', gen_random_uuid(), 'author_id', 'u', 'image_ids', '[]'::jsonb)
         FROM generate_series(1, $1)",
    )
    .bind(rows)
    .execute(&posts)
    .await
    .unwrap();
    let count = |published: bool| {
        let posts = posts.clone();
        async move {
            let sql = if published {
                "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
            } else {
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            };
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&posts)
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(true).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the relay published nothing\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let code = stack.stop_relay().await;
    assert_eq!(code, Some(0), "exit after SIGTERM\n{}", stack.logs());
    let (published, left) = (count(true).await, count(false).await);
    assert!(
        left > 0,
        "the relay stops after the batch in flight, not after the whole backlog ({published} published)"
    );
    assert_eq!(published + left, rows as i64);
    // Every confirmed message was marked before the exit, and nothing was
    // marked without a confirm: the queue holds exactly the marked rows.
    let queue = proto::topology::IMAGE_SERVICE_POST_EVENTS.name;
    assert_eq!(
        i64::from(queued(&stack.amqp_url, queue).await),
        published,
        "messages in {queue} against rows marked published"
    );
    stack.stop().await;
}
