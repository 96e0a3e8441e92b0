//! What operators watch: each service reports its own outbox backlog, so a
//! stopped relay shows as a growing backlog that drains when a relay runs
//! again.
use e2e::Stack;
use serde_json::json;
use std::time::{Duration, Instant};

/// Polls the post service's backlog gauge until `done` holds for it.
async fn backlog_until(stack: &Stack, what: &str, done: impl Fn(f64) -> bool) -> f64 {
    let port = stack.ports("post-service")[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let backlog = stack.metric(port, "outbox_backlog", &[]).await;
        if done(backlog) {
            return backlog;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the backlog gauge reads {backlog}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_outbox_backlog_rises_while_no_relay_runs_and_drains_after() {
    let mut stack = Stack::start().await;
    let token = stack.token("alice");
    assert_eq!(stack.stop_relay().await, Some(0), "the relay stops cleanly");
    for title in ["one", "two", "three"] {
        let created = stack
            .client
            .post(stack.post_url("/v1/posts"))
            .bearer_auth(&token)
            .json(&json!({"title": title, "image_ids": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
    }
    backlog_until(&stack, "three unpublished events", |b| b >= 3.0).await;
    let port = stack.ports("post-service")[0];
    let age = stack
        .metric(port, "outbox_oldest_unpublished_age_seconds", &[])
        .await;
    assert!(age >= 0.0, "oldest age {age}");

    stack.add_relay().await;
    backlog_until(&stack, "the backlog drained", |b| b == 0.0).await;
    let exits = stack.stop().await;
    assert!(
        exits
            .iter()
            .filter(|(name, _)| *name != "outbox-relay")
            .all(|(_, code)| *code == Some(0)),
        "{exits:?}"
    );
}
