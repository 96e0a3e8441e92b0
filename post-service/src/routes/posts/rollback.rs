//! `post.rolled_back`: when a create or update that named images fails, a
//! separate transaction says so, so the image service can release images
//! nothing else uses. Best effort: if this write fails too (the database is
//! down), the image service's upload TTL sweeper still collects them.
use infra::trace_context::TraceParent;
use proto::{ImageId, PostId, PostRolledBack};
use sqlx::PgPool;

pub(super) async fn report(
    pool: &PgPool,
    post_id: PostId,
    image_ids: &[ImageId],
    trace: &TraceParent,
) {
    if image_ids.is_empty() {
        return;
    }
    let event = PostRolledBack {
        post_id,
        image_ids: image_ids.to_vec(),
    };
    let written = async {
        let mut tx = pool.begin().await?;
        infra::outbox::write(&mut tx, &event, Some(trace)).await?;
        tx.commit().await
    }
    .await;
    match written {
        Ok(()) => {
            tracing::warn!(%post_id, images = image_ids.len(), "change rolled back; post.rolled_back written")
        }
        Err(e) => {
            tracing::error!(%post_id, error = %e, "change rolled back and post.rolled_back could not be written")
        }
    }
}
