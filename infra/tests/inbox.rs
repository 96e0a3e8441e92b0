//! The per-aggregate sequence check against a real PostgreSQL: its one-
//! statement fast paths and the locked slow path must agree.
#![cfg(feature = "testing")]
use infra::inbox::{admit, advance_sequence, Admission, InOrder};
use proto::EventId;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn pool() -> PgPool {
    let url = infra::testing::fresh_database("inbox").await;
    let pool = PgPool::connect(&url).await.expect("connect");
    infra::outbox::migrate(&pool).await.expect("migrate");
    pool
}

/// Checks and commits one event of `aggregate`.
async fn step(pool: &PgPool, aggregate: Uuid, sequence: i64) -> InOrder {
    let mut tx = pool.begin().await.expect("begin");
    let order = advance_sequence(&mut tx, "post", aggregate, sequence)
        .await
        .expect("advance");
    tx.commit().await.expect("commit");
    order
}

#[tokio::test]
async fn events_apply_in_sequence_and_early_or_stale_ones_are_told_apart() {
    let pool = pool().await;
    let (post, other) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(step(&pool, post, 2).await, InOrder::Early { expected: 1 });
    // The early check left the aggregate's row at 0: the first event still applies.
    assert_eq!(step(&pool, post, 1).await, InOrder::Next);
    assert_eq!(step(&pool, post, 1).await, InOrder::Stale { last: 1 });
    assert_eq!(step(&pool, post, 3).await, InOrder::Early { expected: 2 });
    assert_eq!(step(&pool, post, 2).await, InOrder::Next);
    assert_eq!(step(&pool, post, 3).await, InOrder::Next);
    assert_eq!(step(&pool, post, 2).await, InOrder::Stale { last: 3 });
    // Another aggregate starts from its own first event.
    assert_eq!(step(&pool, other, 1).await, InOrder::Next);
    assert_eq!(step(&pool, other, 1).await, InOrder::Stale { last: 1 });
}

#[tokio::test]
async fn of_two_concurrent_deliveries_of_one_event_one_applies_and_the_other_waits_then_skips() {
    let pool = pool().await;
    let post = Uuid::new_v4();
    // Sequence 1 goes through the insert, 2 through the conditional update.
    for sequence in [1, 2] {
        let mut first = pool.begin().await.expect("begin");
        let order = advance_sequence(&mut first, "post", post, sequence)
            .await
            .expect("advance");
        assert_eq!(order, InOrder::Next);
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { step(&pool, post, sequence).await }
        });
        // The second delivery must be waiting for the first one's row lock.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .expect("read pg_stat_activity");
            if waiting == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the second delivery never waited for the lock (waiting: {waiting})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.commit().await.expect("commit");
        assert_eq!(
            second.await.expect("second delivery"),
            InOrder::Stale { last: sequence }
        );
    }
}

/// Admits and commits one event of `aggregate` (rolls back unless applied).
async fn admit_step(pool: &PgPool, aggregate: Uuid, sequence: i64, id: Uuid) -> Admission {
    let mut tx = pool.begin().await.expect("begin");
    let admission = admit(
        &mut tx,
        "post",
        aggregate,
        sequence,
        EventId(id),
        "post.updated",
    )
    .await
    .expect("admit");
    match admission {
        Admission::Apply => tx.commit().await.expect("commit"),
        _ => tx.rollback().await.expect("rollback"),
    }
    admission
}

#[tokio::test]
async fn admission_checks_the_sequence_and_the_inbox_together() {
    let pool = pool().await;
    let post = Uuid::new_v4();
    let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        admit_step(&pool, post, 2, second).await,
        Admission::Early { expected: 1 }
    );
    // The early check left the row at 0: the first event takes the slow path.
    assert_eq!(admit_step(&pool, post, 1, first).await, Admission::Apply);
    assert_eq!(
        admit_step(&pool, post, 1, first).await,
        Admission::Stale { last: 1 }
    );
    // The next sequence under an id the inbox knows: seen, and rolled back.
    assert_eq!(admit_step(&pool, post, 2, first).await, Admission::Seen);
    assert_eq!(admit_step(&pool, post, 2, second).await, Admission::Apply);
    assert_eq!(admit_step(&pool, post, 3, third).await, Admission::Apply);
    assert_eq!(
        admit_step(&pool, post, 2, second).await,
        Admission::Stale { last: 3 }
    );

    // A new aggregate's first event goes through the insert.
    let other = Uuid::new_v4();
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(admit_step(&pool, other, 1, third).await, Admission::Seen);
    assert_eq!(admit_step(&pool, other, 1, one).await, Admission::Apply);
    assert_eq!(admit_step(&pool, other, 2, two).await, Admission::Apply);

    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .expect("count inbox");
    assert_eq!(recorded, 5, "one inbox row per applied event");
    let last: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM applied_sequences WHERE aggregate_id = $1")
            .bind(post)
            .fetch_one(&pool)
            .await
            .expect("read sequence");
    assert_eq!(last, 3);
}
