use crate::helpers::{eventually, spawn_relay};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn a_row_committed_after_a_later_row_was_published_is_still_published() {
    let app = spawn_relay().await;
    let (early_tx, early) = app.open_event().await;
    let (late_tx, late) = app.open_event().await;
    late_tx.commit().await.unwrap();

    let first = app.relay.publish_batch().await.unwrap();
    assert_eq!(
        first.published, 1,
        "only the committed row is visible: {first:?}"
    );

    early_tx.commit().await.unwrap();
    let second = app.relay.publish_batch().await.unwrap();
    assert_eq!(
        second.published, 1,
        "the late-committing row is found: {second:?}"
    );
    assert_eq!(app.relay.publish_batch().await.unwrap().claimed, 0);

    let mut received = app.drain_queue().await;
    received.sort();
    let mut expected = vec![early, late];
    expected.sort();
    assert_eq!(received, expected);
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_transactions_committing_out_of_order_are_all_published_exactly_once() {
    let app = spawn_relay().await;
    let background = app.run_in_background(Duration::from_millis(50));

    // Open every transaction first (positions 0..n in order), then commit
    // them in a scrambled order while the relay runs.
    let n = 40;
    let mut open = Vec::new();
    for _ in 0..n {
        let mut tx = app.pool.begin().await.unwrap();
        let event = proto::PostCreated {
            post_id: proto::PostId::new(),
            author_id: proto::UserId("u".into()),
            image_ids: vec![],
        };
        let id = infra::outbox::write(&mut tx, &event, None).await.unwrap();
        open.push((tx, id.0));
    }
    let mut expected = HashSet::new();
    let mut order: Vec<usize> = (0..n).collect();
    // A fixed permutation: odd positions backwards, then even ones forwards.
    order.sort_by_key(|i| if i % 2 == 1 { (0, n - i) } else { (1, *i) });
    let mut slots: Vec<Option<_>> = open.into_iter().map(Some).collect();
    for i in order {
        let (tx, id) = slots[i].take().unwrap();
        tx.commit().await.unwrap();
        expected.insert(id);
        tokio::task::yield_now().await;
    }

    app.wait_drained(Duration::from_secs(20)).await;
    background.stop().await;
    let helper = app;
    let received = helper.drain_queue().await;
    let unique: HashSet<_> = received.iter().copied().collect();
    assert_eq!(
        received.len(),
        n,
        "each event once, got {} messages",
        received.len()
    );
    assert_eq!(unique, expected, "every committed event published");
    assert_eq!(helper.unpublished().await, 0);
    helper.cleanup().await;
}

#[tokio::test]
async fn a_burst_of_writes_is_published_without_waiting_for_the_poll() {
    // Writers notify at most once per 10 ms, so most of a burst commits
    // without a notification; the relay must find those rows by polling
    // quickly after each batch, not an hour later.
    let app = spawn_relay().await;
    let background = app.run_in_background(Duration::from_secs(3600));
    let pool = app.pool.clone();
    for _ in 0..50 {
        let mut tx = pool.begin().await.unwrap();
        let event = proto::PostCreated {
            post_id: proto::PostId::new(),
            author_id: proto::UserId("u".into()),
            image_ids: vec![],
        };
        infra::outbox::write(&mut tx, &event, None).await.unwrap();
        tx.commit().await.unwrap();
    }
    app.wait_drained(Duration::from_secs(10)).await;
    background.stop().await;
    let helper = app;
    assert_eq!(helper.drain_queue().await.len(), 50, "each event once");
    helper.cleanup().await;
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing() {
    let app = spawn_relay().await;
    let (tx, _) = app.open_event().await;
    tx.rollback().await.unwrap();
    let (tx, kept) = app.open_event().await;
    tx.commit().await.unwrap();
    let outcome = app.relay.publish_batch().await.unwrap();
    assert_eq!(outcome.published, 1);
    assert_eq!(app.drain_queue().await, vec![kept]);
    app.cleanup().await;
}

#[tokio::test]
async fn an_unroutable_event_is_counted_as_returned_and_stays_unpublished() {
    let app = spawn_relay().await;
    let (tx, _) = app.open_event().await;
    tx.commit().await.unwrap();
    // No queue is bound for this key on the image events exchange.
    sqlx::query("UPDATE outbox SET event_type = 'image.archived'")
        .execute(&app.pool)
        .await
        .unwrap();
    let outcome = app.relay.publish_batch().await.unwrap();
    assert_eq!((outcome.claimed, outcome.published), (1, 0), "{outcome:?}");
    assert_eq!(app.unpublished().await, 1, "kept for another attempt");
    let count = |outcome: &str| {
        infra::metrics::PUBLISHES
            .with_label_values(&["test", outcome])
            .get()
    };
    assert_eq!(
        [
            count("published"),
            count("confirmed"),
            count("returned"),
            count("failed")
        ],
        [1.0, 0.0, 1.0, 0.0]
    );
    app.cleanup().await;
}

#[tokio::test]
async fn retention_deletes_only_rows_published_before_it() {
    let app = spawn_relay().await;
    for _ in 0..5 {
        app.open_event().await.0.commit().await.unwrap();
    }
    assert_eq!(app.relay.publish_batch().await.unwrap().published, 5);
    // Three published two days ago, two just now; one more not published.
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '2 days'
         WHERE position IN (SELECT position FROM outbox ORDER BY position LIMIT 3)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (pending, pending_id) = app.open_event().await;
    pending.commit().await.unwrap();

    let deleted = outbox_relay::retention::purge(&app.pool, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let left: Vec<(uuid::Uuid, bool)> =
        sqlx::query_as("SELECT id, published_at IS NOT NULL FROM outbox ORDER BY position")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left.iter().filter(|(_, published)| *published).count(), 2);
    assert!(
        left.contains(&(pending_id, false)),
        "the unpublished row stays"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn batches_in_flight_together_keep_every_posts_events_in_order() {
    // 300 rows in batches of 50: the relay claims and sends each batch
    // while the one before awaits its confirms.
    let app = spawn_relay().await;
    let posts: Vec<proto::PostId> = (0..5).map(|_| proto::PostId::new()).collect();
    for _ in 0..60 {
        for &post in &posts {
            app.commit_event_of(post).await;
        }
    }
    let background = app.run_in_background(Duration::from_secs(3600));
    app.wait_drained(Duration::from_secs(30)).await;
    background.stop().await;

    let received = app.drain_envelopes().await;
    assert_eq!(received.len(), 300, "each event once");
    for post in posts {
        let sequences: Vec<i64> = received
            .iter()
            .filter(|e| e.aggregate_id == post.0)
            .map(|e| e.sequence)
            .collect();
        assert_eq!(
            sequences,
            (1..=60).collect::<Vec<i64>>(),
            "post {post}: sequences in queue order"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn an_event_after_a_failed_one_of_its_post_in_the_batch_before_is_not_marked() {
    // Batch 1 (rows 1..50) ends with post A's first event, which no queue
    // takes; batch 2 starts with A's second event and is sent before batch
    // 1's confirms are in. A's second event must not be marked published
    // while its predecessor is not.
    let app = spawn_relay().await;
    let post = proto::PostId::new();
    for _ in 0..49 {
        app.commit_event_of(proto::PostId::new()).await;
    }
    let failing = app.commit_event_of(post).await;
    let after = app.commit_event_of(post).await;
    for _ in 0..69 {
        app.commit_event_of(proto::PostId::new()).await;
    }
    sqlx::query("UPDATE outbox SET event_type = 'image.archived' WHERE id = $1")
        .bind(failing)
        .execute(&app.pool)
        .await
        .unwrap();

    let background = app.run_in_background(Duration::from_secs(3600));
    let pool = app.pool.clone();
    let left = eventually(
        "all but post A's events published",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                let left: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY position",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                if left.len() <= 2 {
                    Ok(left)
                } else {
                    Err(format!("{} unpublished", left.len()))
                }
            }
        },
    )
    .await;
    background.stop().await;
    assert_eq!(
        left,
        vec![failing, after],
        "A's events stay unpublished together"
    );
    app.cleanup().await;
}
