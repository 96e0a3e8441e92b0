//! `dlq replay` and `dlq discard` against the real broker and database.
use crate::{
    dlq_helpers::{message_id, spawn_dlq, Dlq, Poison},
    helpers::{eventually, run_consumer},
};
use infra::amqp::{headers, ConsumerOptions, Handler, Outcome};
use lapin::{message::Delivery, types::AMQPValue};
use proto::topology::IMAGE_SERVICE_POST_EVENTS;
use sqlx::PgPool;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

const UNKNOWN: Poison = Poison {
    event_type: "post.created",
    reason: "unsupported version 9 of `post.created`",
};
const MALFORMED: Poison = Poison {
    event_type: "post.deleted",
    reason: "malformed envelope: expected value at line 1",
};

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery.properties.headers().as_ref()?.inner().get(name)
}

/// A consumer that dead-letters while `broken`, and otherwise applies each
/// event once: the event id goes into the inbox in the same transaction as
/// the effect, as the services' consumers do.
struct Inboxed {
    pool: PgPool,
    broken: AtomicBool,
    deliveries: AtomicUsize,
}

impl Handler for Inboxed {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Outcome::DeadLetter("unsupported version 1 of `post.created`".into());
        }
        let envelope = match proto::RawEnvelope::parse(&delivery.data) {
            Ok(envelope) => envelope,
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        let mut tx = self.pool.begin().await.unwrap();
        let fresh =
            infra::inbox::record(&mut tx, proto::EventId(envelope.id), &envelope.event_type)
                .await
                .unwrap();
        if fresh {
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                .bind(envelope.id)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        if fresh {
            Outcome::Done
        } else {
            Outcome::Duplicate
        }
    }
}

/// Starts the `Inboxed` consumer on the image service's post-event queue.
async fn start_consumer(dlq: &Dlq, broken: bool) -> (Arc<Inboxed>, CancellationToken) {
    sqlx::query("CREATE TABLE IF NOT EXISTS effects (event_id UUID NOT NULL)")
        .execute(&dlq.app.pool)
        .await
        .unwrap();
    let handler = Arc::new(Inboxed {
        pool: dlq.app.pool.clone(),
        broken: AtomicBool::new(broken),
        deliveries: AtomicUsize::new(0),
    });
    let options = ConsumerOptions::new(format!("{}@test", IMAGE_SERVICE_POST_EVENTS.name), 4);
    let cancel = run_consumer(&dlq.app.amqp_url, handler.clone(), options).await;
    (handler, cancel)
}

async fn effects(dlq: &Dlq, event_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1::uuid")
        .bind(event_id)
        .fetch_one(&dlq.app.pool)
        .await
        .unwrap()
}

/// Publishes a `post.created` event the normal way; returns its id.
async fn publish_event(dlq: &Dlq, id: &str) {
    let body = serde_json::json!({
        "id": id, "type": "post.created", "version": 1, "aggregate_type": "post",
        "aggregate_id": uuid::Uuid::new_v4(), "sequence": 1, "occurred_at": chrono::Utc::now(),
        "traceparent": null, "data": {}
    });
    let body = serde_json::to_vec(&body).unwrap();
    let publisher = infra::amqp::Publisher::new(&dlq.app.connection)
        .await
        .unwrap();
    let results = publisher
        .publish_all(vec![infra::amqp::Outgoing {
            exchange: proto::topology::POST_EVENTS,
            routing_key: "post.created",
            body: &body,
            properties: infra::amqp::event_properties(id, "post.created", None),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn a_replayed_message_whose_cause_was_fixed_is_consumed_once_and_marked_replayed() {
    let dlq = spawn_dlq().await;
    let (handler, cancel) = start_consumer(&dlq, true).await;
    let id = uuid::Uuid::now_v7().to_string();
    publish_event(&dlq, &id).await;
    eventually(
        "the failed event stored",
        Duration::from_secs(20),
        || async {
            match dlq.count("status = 'pending'").await {
                1 => Ok(()),
                n => Err(format!("{n} stored")),
            }
        },
    )
    .await;
    assert_eq!(effects(&dlq, &id).await, 0);

    // The consumer is fixed; the SRE replays.
    handler.broken.store(false, Ordering::SeqCst);
    assert_eq!(
        dlq.dlq(&format!("replay {} --actor sre-ann", dlq.id_of(&id).await))
            .await,
        0
    );
    eventually(
        "the replayed event applied",
        Duration::from_secs(20),
        || async {
            match effects(&dlq, &id).await {
                1 => Ok(()),
                n => Err(format!("{n} effects")),
            }
        },
    )
    .await;
    assert_eq!(dlq.status_of(&id).await, "replayed");
    let (actor, outcome): (String, String) =
        sqlx::query_as("SELECT actor, outcome FROM dead_letter_actions WHERE action = 'replay'")
            .fetch_one(&dlq.pool)
            .await
            .unwrap();
    assert_eq!((actor.as_str(), outcome.as_str()), ("sre-ann", "published"));
    // A second replay finds nothing pending, and nothing is applied twice.
    assert_eq!(
        dlq.dlq(&format!("replay {}", dlq.id_of(&id).await)).await,
        1
    );
    assert_eq!(handler.deliveries.load(Ordering::SeqCst), 2);
    assert_eq!(effects(&dlq, &id).await, 1);
    cancel.cancel();
    dlq.cleanup().await;
}

#[tokio::test]
async fn replaying_a_message_that_was_already_handled_has_no_second_effect() {
    let dlq = spawn_dlq().await;
    let (handler, cancel) = start_consumer(&dlq, false).await;
    let id = uuid::Uuid::now_v7().to_string();
    publish_event(&dlq, &id).await;
    eventually("the event applied", Duration::from_secs(20), || async {
        match effects(&dlq, &id).await {
            1 => Ok(()),
            n => Err(format!("{n} effects")),
        }
    })
    .await;
    // A duplicate of it (say, from a relay crash) fails and is dead-lettered.
    handler.broken.store(true, Ordering::SeqCst);
    publish_event(&dlq, &id).await;
    eventually("the duplicate stored", Duration::from_secs(20), || async {
        match dlq.count("status = 'pending'").await {
            1 => Ok(()),
            n => Err(format!("{n} stored")),
        }
    })
    .await;
    handler.broken.store(false, Ordering::SeqCst);
    assert_eq!(dlq.dlq("replay --all").await, 0);
    eventually("the replay delivered", Duration::from_secs(20), || async {
        match handler.deliveries.load(Ordering::SeqCst) {
            3 => Ok(()),
            n => Err(format!("{n} deliveries")),
        }
    })
    .await;
    cancel.cancel();
    assert_eq!(effects(&dlq, &id).await, 1, "the inbox dropped the replay");
    let duplicates = infra::metrics::CONSUMED
        .with_label_values(&[IMAGE_SERVICE_POST_EVENTS.name, "post.created", "duplicate"])
        .get();
    assert_eq!(duplicates, 1.0, "the replay counts as a duplicate");
    assert_eq!(dlq.status_of(&id).await, "replayed");
    dlq.cleanup().await;
}

#[tokio::test]
async fn the_replayed_message_is_the_original_with_a_replay_count() {
    let dlq = spawn_dlq().await;
    let ids = dlq.poison(&[UNKNOWN]).await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT body FROM dead_letters")
        .fetch_one(&dlq.pool)
        .await
        .unwrap();
    assert_eq!(dlq.dlq("replay --all").await, 0);
    let replayed = dlq.take_replayed().await;
    assert_eq!(replayed.len(), 1);
    let message = &replayed[0];
    assert_eq!(message_id(message), ids[0]);
    assert_eq!(message.data, stored, "the exact body");
    assert_eq!(message.routing_key.as_str(), "post.created");
    assert_eq!(message.exchange.as_str(), proto::topology::POST_EVENTS);
    let kind = message.properties.kind().as_ref().map(|k| k.to_string());
    assert_eq!(kind.as_deref(), Some("post.created"));
    assert_eq!(message.properties.delivery_mode(), &Some(2));
    assert_eq!(
        header(message, headers::REPLAY_COUNT),
        Some(&AMQPValue::LongLongInt(1))
    );
    assert!(
        header(message, "traceparent").is_some(),
        "other headers are kept"
    );
    for failure in [
        headers::FAILURE_REASON,
        headers::ATTEMPTS,
        headers::ORIGINAL_EXCHANGE,
    ] {
        assert!(
            header(message, failure).is_none(),
            "{failure} is not replayed"
        );
    }
    dlq.cleanup().await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let dlq = spawn_dlq().await;
    dlq.poison(&[UNKNOWN, UNKNOWN, MALFORMED]).await;
    assert_eq!(dlq.dlq("replay --all --dry-run").await, 0);
    assert_eq!(dlq.dlq("discard --all --dry-run --reason test").await, 0);
    assert_eq!(dlq.count("status = 'pending'").await, 3);
    let actions: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_actions")
        .fetch_one(&dlq.pool)
        .await
        .unwrap();
    assert_eq!(actions, 0);
    assert!(dlq.take_replayed().await.is_empty());
    dlq.cleanup().await;
}

#[tokio::test]
async fn a_filter_replays_only_what_it_matches() {
    let dlq = spawn_dlq().await;
    let ids = dlq.poison(&[UNKNOWN, MALFORMED, UNKNOWN, MALFORMED]).await;
    assert_eq!(
        dlq.dlq("replay --type post.deleted --reason-regex ^malformed")
            .await,
        0
    );
    let mut replayed: Vec<String> = dlq.take_replayed().await.iter().map(message_id).collect();
    replayed.sort();
    let mut expected = vec![ids[1].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(replayed, expected);
    assert_eq!(
        dlq.count("status = 'replayed' AND event_type = 'post.deleted'")
            .await,
        2
    );
    assert_eq!(
        dlq.count("status = 'pending' AND event_type = 'post.created'")
            .await,
        2
    );
    // Filters that match nothing, or are malformed, say so by exit status.
    assert_eq!(dlq.dlq("replay --type post.deleted").await, 1);
    assert_eq!(dlq.dlq("replay --reason-regex (unclosed").await, 2);
    dlq.cleanup().await;
}

#[tokio::test]
async fn the_rate_is_respected() {
    let dlq = spawn_dlq().await;
    dlq.poison(&vec![UNKNOWN; 50]).await;
    let start = Instant::now();
    assert_eq!(dlq.dlq("replay --all --rate 25/s --yes").await, 0);
    let elapsed = start.elapsed();
    // 50 messages at 25/s: the first at once, the last 49 intervals later.
    assert!(
        elapsed >= Duration::from_millis(1_900),
        "50 messages at 25/s took only {elapsed:?}"
    );
    assert_eq!(dlq.take_replayed().await.len(), 50);
    assert_eq!(dlq.count("status = 'replayed'").await, 50);
    dlq.cleanup().await;
}

#[tokio::test]
async fn more_letters_than_the_confirmation_limit_need_yes() {
    let dlq = spawn_dlq().await;
    dlq.poison(&vec![UNKNOWN; 11]).await;
    assert_eq!(dlq.dlq("replay --all").await, 2);
    assert_eq!(dlq.dlq("discard --all --reason old").await, 2);
    assert_eq!(dlq.count("status = 'pending'").await, 11);
    assert!(dlq.take_replayed().await.is_empty());
    dlq.cleanup().await;
}

#[tokio::test]
async fn discarded_letters_stay_for_audit_and_are_not_replayed() {
    let dlq = spawn_dlq().await;
    let ids = dlq.poison(&[UNKNOWN, MALFORMED]).await;
    assert_eq!(
        dlq.dlq(&format!("discard {}", dlq.id_of(&ids[1]).await))
            .await,
        2,
        "a reason is required"
    );
    let discard = format!(
        "discard {} --reason superseded --actor sre-bob",
        dlq.id_of(&ids[1]).await
    );
    assert_eq!(dlq.dlq(&discard).await, 0);
    assert_eq!(dlq.status_of(&ids[1]).await, "discarded");
    let (actor, reason): (String, String) =
        sqlx::query_as("SELECT actor, reason FROM dead_letter_actions WHERE action = 'discard'")
            .fetch_one(&dlq.pool)
            .await
            .unwrap();
    assert_eq!((actor.as_str(), reason.as_str()), ("sre-bob", "superseded"));
    assert_eq!(dlq.dlq("replay --all").await, 0);
    let replayed: Vec<String> = dlq.take_replayed().await.iter().map(message_id).collect();
    assert_eq!(replayed, vec![ids[0].clone()]);
    assert_eq!(
        dlq.dlq(&format!("show {}", dlq.id_of(&ids[1]).await)).await,
        0
    );
    dlq.cleanup().await;
}

#[tokio::test]
async fn a_replay_killed_midway_leaves_every_letter_replayed_or_pending_and_every_publish_recorded()
{
    let dlq = spawn_dlq().await;
    let ids = dlq.poison(&vec![UNKNOWN; 40]).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .args(["dlq", "replay", "--all", "--rate", "20/s", "--yes"])
        .env(
            "RELAY_DEAD_LETTERS__DATABASE_URL",
            &dlq.settings.dead_letters.database_url,
        )
        .env("RELAY_AMQP__URL", &dlq.settings.amqp.url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start outbox-relay dlq replay");
    eventually("a few replayed", Duration::from_secs(30), || async {
        match dlq.count("status = 'replayed'").await {
            n if n >= 5 => Ok(()),
            n => Err(format!("{n} replayed")),
        }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let check = |received: &[Delivery], attempts: &[(String, i64)]| {
        for delivery in received {
            let id = message_id(delivery);
            let sent = received.iter().filter(|d| message_id(d) == id).count() as i64;
            let recorded = attempts
                .iter()
                .find(|(m, _)| *m == id)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            assert!(
                sent <= recorded,
                "{id} published {sent} times, {recorded} recorded"
            );
        }
    };
    let attempts = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT l.message_id, count(a.id) FROM dead_letters l
             JOIN dead_letter_actions a ON a.dead_letter_id = l.id AND a.action = 'replay'
             GROUP BY l.message_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let first = dlq.take_replayed().await;
    let replayed = dlq.count("status = 'replayed'").await;
    assert_eq!(replayed + dlq.count("status = 'pending'").await, 40);
    assert!(replayed < 40, "the replay was not cut off");
    check(&first, &attempts(dlq.pool.clone()).await);
    let received: Vec<String> = first.iter().map(message_id).collect();
    let replayed_ids: Vec<String> =
        sqlx::query_scalar("SELECT message_id FROM dead_letters WHERE status = 'replayed'")
            .fetch_all(&dlq.pool)
            .await
            .unwrap();
    for id in &replayed_ids {
        assert!(
            received.contains(id),
            "{id} marked replayed but never published"
        );
    }

    // Running it again finishes the rest; every message arrives.
    assert_eq!(dlq.dlq("replay --all --yes").await, 0);
    assert_eq!(dlq.count("status = 'replayed'").await, 40);
    let second = dlq.take_replayed().await;
    let all: Vec<Delivery> = first.into_iter().chain(second).collect();
    check(&all, &attempts(dlq.pool.clone()).await);
    let mut arrived: Vec<String> = all.iter().map(message_id).collect();
    arrived.sort();
    arrived.dedup();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(arrived, expected);
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letter_actions WHERE outcome = 'publishing'")
            .fetch_one(&dlq.pool)
            .await
            .unwrap();
    assert_eq!(unfinished, 0, "cut-off attempts are marked interrupted");
    dlq.cleanup().await;
}
