//! Dead letters: the relay moves every message from each `<queue>.dlq` into
//! the `dead_letters` table, acknowledging it only after the row committed,
//! so nothing is lost and everything can be queried (`outbox-relay dlq`).
pub mod filter;
pub mod fingerprint;
pub mod record;
pub mod replay;
pub mod retention;
pub mod store;

use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
    Channel,
};
use record::DeadLetter;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs the dead-letter migrations on the relay's own database.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// Discards the pending letters among `ids` (who and why are recorded);
/// returns the ids discarded.
pub async fn discard(
    pool: &PgPool,
    ids: &[i64],
    actor: &str,
    reason: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    let discarded = store::discard(pool, ids, actor, reason).await?;
    for (id, queue) in &discarded {
        infra::metrics::DEAD_LETTER_DISCARDS
            .with_label_values(&[queue])
            .inc();
        tracing::info!(id, queue = %queue, actor, reason, "dead letter discarded");
    }
    Ok(discarded.into_iter().map(|(id, _)| id).collect())
}

/// Moves messages from `dlq` into the table until `cancel` fires.
pub async fn ingest(
    channel: Channel,
    dlq: &str,
    pool: PgPool,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    channel.basic_qos(50, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            dlq,
            "outbox-relay.dead-letters",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => break,
            next = consumer.next() => match next {
                Some(delivery) => delivery?,
                None => anyhow::bail!("dead-letter consumer of {dlq} ended"),
            },
        };
        let letter = DeadLetter::from_delivery(dlq, &delivery);
        match store::insert(&pool, &letter).await {
            Ok(fresh) => {
                if fresh {
                    tracing::warn!(queue = dlq, event_type = ?letter.event_type, reason = %letter.reason, "dead letter recorded");
                    infra::metrics::DEAD_LETTERS
                        .with_label_values(&[dlq, &letter.fingerprint])
                        .inc();
                }
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Err(e) => {
                tracing::error!(error = %e, queue = dlq, "could not store a dead letter; it stays queued");
                tokio::time::sleep(Duration::from_secs(1)).await;
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            }
        }
    }
    let _ = channel.close(200, "relay stopping").await;
    Ok(())
}
