//! The file lifecycle driven by post events: attach the post's final image
//! list, abandon what it dropped, abandon everything when it is deleted.
//!
//! Each event is applied in one transaction together with its inbox record
//! and its aggregate's sequence, so a redelivered event changes nothing and
//! events of one post apply in order even with several consumers.
use super::{post_owner, Processor};
use crate::{
    domain::{FileState, ImageRecord, ProcessStatus},
    store::images,
};
use anyhow::Context;
use infra::{inbox, trace_context::TraceParent};
use proto::{Envelope, EventId, ImageId, ImageProcessed, Owner, PostId, ProcessOutcome, UserId};
use sqlx::{Postgres, Transaction};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    Yes,
    /// Applied before (or superseded by a later event): nothing to do.
    Duplicate,
    /// An earlier event of the same post is still missing: retry later.
    Early { expected: i64 },
}

impl Processor {
    /// Applies `post.created` or `post.updated`: the post's images become
    /// exactly `image_ids`. Images it had before and no longer lists are
    /// abandoned.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, post_id = %post_id))]
    pub async fn apply_post_images<T>(
        &self,
        event: &Envelope<T>,
        post_id: PostId,
        author: &UserId,
        image_ids: &[ImageId],
        trace: &TraceParent,
    ) -> anyhow::Result<Applied> {
        let mut tx = self.pool.begin().await.context("begin apply")?;
        let applied = begin_event(&mut tx, event).await?;
        if applied != Applied::Yes {
            return Ok(applied);
        }
        let owner = post_owner(post_id);
        // Before its first event nothing is attached to a post.
        if event.sequence > 1 {
            let abandoned = images::abandon_others(&mut tx, &owner, image_ids)
                .await
                .context("abandon dropped images")?;
            if abandoned > 0 {
                tracing::info!(abandoned, "images dropped by the post were abandoned");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for &image_id in image_ids.iter().filter(|id| seen.insert(**id)) {
            self.attach_one(&mut tx, image_id, &owner, author, trace)
                .await?;
        }
        tx.commit().await.context("commit apply")?;
        Ok(Applied::Yes)
    }

    /// Applies `post.deleted`: every image of the post is abandoned.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, post_id = %post_id))]
    pub async fn apply_post_deleted<T>(
        &self,
        event: &Envelope<T>,
        post_id: PostId,
    ) -> anyhow::Result<Applied> {
        let mut tx = self.pool.begin().await.context("begin apply")?;
        let applied = begin_event(&mut tx, event).await?;
        if applied != Applied::Yes {
            return Ok(applied);
        }
        let abandoned = images::abandon_others(&mut tx, &post_owner(post_id), &[])
            .await
            .context("abandon images")?;
        tracing::info!(abandoned, "post deleted; its images were abandoned");
        tx.commit().await.context("commit apply")?;
        Ok(Applied::Yes)
    }

    /// Applies `post.rolled_back`: of the images the failed change named,
    /// those nothing has claimed are abandoned (the sweeper deletes them
    /// after the grace period unless a retry attaches them first). Attached
    /// images, for example by a successful retry, are left alone.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, post_id = %event.aggregate_id))]
    pub async fn apply_post_rolled_back<T>(
        &self,
        event: &Envelope<T>,
        image_ids: &[ImageId],
    ) -> anyhow::Result<Applied> {
        let mut tx = self.pool.begin().await.context("begin apply")?;
        let applied = begin_event(&mut tx, event).await?;
        if applied != Applied::Yes {
            return Ok(applied);
        }
        let abandoned = images::abandon_unclaimed(&mut tx, image_ids)
            .await
            .context("abandon unclaimed images")?;
        tracing::info!(abandoned, "rolled-back change; unclaimed images abandoned");
        tx.commit().await.context("commit apply")?;
        Ok(Applied::Yes)
    }

    /// Attaches one image, or refuses it with a reason (reported to the
    /// post as a failed image; the image itself is left untouched).
    async fn attach_one(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        image_id: ImageId,
        owner: &Owner,
        author: &UserId,
        trace: &TraceParent,
    ) -> anyhow::Result<()> {
        // The usual case, an upload of the author's that no post holds, in
        // one statement; anything else is read under the row's lock.
        let report = match images::attach_unclaimed(tx, image_id, owner, author)
            .await
            .context("attach image")?
        {
            Some(attached) => already_built(image_id, owner, attached),
            None => attach_locked(tx, image_id, owner, author).await?,
        };
        if let Some(event) = report {
            infra::outbox::write(tx, &event, Some(&trace.child())).await?;
        }
        Ok(())
    }
}

/// [`Processor::attach_one`] for an image that is not a free upload of the
/// author's: missing, someone else's, deleted, or attached already.
/// Returns what to report to the post at once, if anything.
async fn attach_locked(
    tx: &mut Transaction<'_, Postgres>,
    image_id: ImageId,
    owner: &Owner,
    author: &UserId,
) -> anyhow::Result<Option<ImageProcessed>> {
    let record = images::lock(tx, image_id).await.context("lock image")?;
    let refusal = match &record {
        None => Some("image not found"),
        Some(r) if r.uploader != *author => Some("image is not an upload of the post's author"),
        Some(r) if r.state == FileState::Deleted => Some("image was deleted"),
        Some(r) if r.state == FileState::Attached && r.owner.as_ref() != Some(owner) => {
            Some("image is attached to another owner")
        }
        Some(_) => None,
    };
    Ok(match (refusal, record) {
        (Some(reason), _) => {
            tracing::warn!(image_id = %image_id, reason, "image not attached");
            Some(ImageProcessed {
                image_id,
                owner: Some(owner.clone()),
                status: ProcessOutcome::Failed,
                variants: vec![],
                error: Some(reason.to_owned()),
                placeholder: None,
            })
        }
        (None, Some(record)) => {
            let already = record.state == FileState::Attached;
            images::attach(tx, image_id, owner)
                .await
                .context("attach image")?;
            match already {
                true => None,
                false => already_built(image_id, owner, record),
            }
        }
        (None, None) => unreachable!("a missing image is refused"),
    })
}

/// An image newly attached with its variants built already (attached again
/// after being abandoned) is reported ready at once.
fn already_built(image_id: ImageId, owner: &Owner, record: ImageRecord) -> Option<ImageProcessed> {
    (record.process_status == ProcessStatus::Ready).then(|| ImageProcessed {
        image_id,
        owner: Some(owner.clone()),
        status: ProcessOutcome::Ready,
        variants: record.variants,
        error: None,
        placeholder: record.placeholder,
    })
}

/// Records the event in the inbox and checks its place in the post's
/// sequence (one statement in the usual cases); only `Applied::Yes` lets
/// the caller apply it.
async fn begin_event<T>(
    tx: &mut Transaction<'_, Postgres>,
    event: &Envelope<T>,
) -> anyhow::Result<Applied> {
    use inbox::Admission;
    let admission = inbox::admit(
        tx,
        &event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        EventId(event.id),
        &event.event_type,
    )
    .await
    .context("check sequence and inbox")?;
    Ok(match admission {
        Admission::Apply => Applied::Yes,
        Admission::Seen => Applied::Duplicate,
        Admission::Stale { last } => {
            tracing::info!(
                sequence = event.sequence,
                last,
                "event already applied or superseded"
            );
            Applied::Duplicate
        }
        Admission::Early { expected } => Applied::Early { expected },
    })
}
