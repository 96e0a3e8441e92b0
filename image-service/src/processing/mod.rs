//! Building variants. Processing is driven by state, not by the message:
//! every attached image still `pending` or `processing` is (re)built, so a
//! crash after the attach commit is repaired by the redelivery. Variant keys
//! are deterministic, so rebuilding only overwrites identical objects.
mod avif;
mod lifecycle;
mod queue;
mod threads;

use crate::{
    domain::{ImageRecord, ProcessStatus},
    pipeline::{self, Format, Limits, Preset},
    routes::variant_url,
    storage::{self, ObjectStore},
    store::images,
};
use anyhow::Context;
use infra::trace_context::TraceParent;
pub use lifecycle::Applied;
use proto::{ImageId, ImageProcessed, Owner, OwnerType, ProcessOutcome, Variant};
pub use queue::{build_queue, BuildQueue, Builder};
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
pub use threads::BuildThreads;
use tokio::sync::Semaphore;

pub struct Processor {
    pub pool: PgPool,
    pub store: ObjectStore,
    pub presets: Vec<Preset>,
    pub webp_quality: f32,
    /// AVIF variants are built after the WebP ones when set.
    pub avif: Option<pipeline::avif::AvifSettings>,
    pub limits: Limits,
    pub public_base_url: String,
    /// Bounds the images in flight, and so memory and CPU use.
    pub permits: Arc<Semaphore>,
    /// Where decoding, resizing and encoding run (one thread per permit).
    pub threads: BuildThreads,
}

impl Processor {
    /// Builds the variants of every attached image of `owner` that is not
    /// done yet. An error is transient: the message is retried.
    pub async fn process_owner(&self, owner: &Owner, trace: &TraceParent) -> anyhow::Result<()> {
        let pending = images::unprocessed_of_owner(&self.pool, owner)
            .await
            .context("list unprocessed images")?;
        let results =
            futures::future::join_all(pending.into_iter().map(|r| self.process_one(r.id, trace)))
                .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }

    /// Builds (or rebuilds) one image's variants if it is due.
    pub async fn process_image(&self, id: ImageId, trace: &TraceParent) -> anyhow::Result<()> {
        self.process_one(id, trace).await
    }

    /// Resumes images whose processing stalled for `secs` (the worker died).
    pub async fn resume_stalled(&self, secs: i64) -> anyhow::Result<usize> {
        let stalled = images::stalled(&self.pool, secs, 50)
            .await
            .context("find stalled images")?;
        let trace = TraceParent::new_root();
        for &id in &stalled {
            tracing::warn!(image_id = %id, "resuming stalled processing");
            self.process_one(id, &trace).await?;
        }
        Ok(stalled.len())
    }

    #[tracing::instrument(skip_all, fields(image_id = %id))]
    async fn process_one(&self, id: ImageId, trace: &TraceParent) -> anyhow::Result<()> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        let Some(record) = images::start_processing(&self.pool, id)
            .await
            .context("start processing")?
        else {
            return Ok(());
        };
        self.process_claimed(record, trace).await
    }

    /// Builds, stores and records an image this worker has claimed
    /// (`processing`); the caller holds one of [`Self::permits`]. A
    /// transient failure hands the image back (`pending`) and is returned.
    pub async fn process_claimed(
        &self,
        record: ImageRecord,
        trace: &TraceParent,
    ) -> anyhow::Result<()> {
        let id = record.id;
        let started = std::time::Instant::now();
        let heartbeat = async {
            let every = std::time::Duration::from_secs(images::HEARTBEAT_SECS);
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = images::touch_processing(&self.pool, id).await {
                    tracing::warn!(error = %e, "build heartbeat not recorded");
                }
            }
        };
        let built = tokio::select! {
            built = self.build_and_store(&record) => built,
            never = heartbeat => never,
        };
        let outcome = match built {
            Ok(outcome) => outcome,
            Err(e) => {
                // Transient: the event is retried, and finds the image
                // pending again.
                if let Err(release) = images::release_processing(&self.pool, id).await {
                    tracing::warn!(error = %release, "claim left to expire");
                }
                return Err(e);
            }
        };
        let mut later = None;
        let mut tx = self.pool.begin().await.context("begin finish")?;
        let event = match outcome {
            Ok((mut variants, placeholder, resized)) => {
                // AVIF comes later; keep the listed AVIF variants meanwhile
                // (a rebuild writes them again under the same keys).
                if self.avif.is_some() {
                    variants.extend(avif::kept(&record, &variants));
                    later = Some(resized);
                }
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "variants ready"
                );
                let ready = Outcome {
                    status: ProcessStatus::Ready,
                    variants,
                    error: None,
                    placeholder,
                };
                self.finish(&mut tx, &record, ready).await?
            }
            Err(reason) => {
                tracing::warn!(%reason, "image cannot be processed");
                let failed = Outcome {
                    status: ProcessStatus::Failed,
                    variants: vec![],
                    error: Some(reason),
                    placeholder: None,
                };
                self.finish(&mut tx, &record, failed).await?
            }
        };
        let stale = match &event {
            Some(event) => stale_variant_keys(&record, &event.variants),
            None => vec![],
        };
        if let Some(event) = event {
            infra::outbox::write(&mut tx, &event, Some(&trace.child())).await?;
        }
        tx.commit().await.context("commit finish")?;
        if !stale.is_empty() {
            // Variants of presets no longer configured, removed only now
            // that the row no longer lists them.
            if let Err(e) = self.store.delete_many(&stale).await {
                tracing::warn!(error = %e, "stale variants left for reconcile");
            }
        }
        if let (Some(resized), Some(settings)) = (later, self.avif) {
            // Still under the permit: AVIF work counts as this image's.
            if let Err(e) = self.build_avif(record.id, resized, settings).await {
                tracing::warn!(error = %format_args!("{e:#}"), "AVIF variants not built; WebP ones serve");
            }
        }
        Ok(())
    }

    /// `Ok(Err(reason))` is a permanent failure of this image; `Err` is transient.
    async fn build_and_store(&self, record: &ImageRecord) -> anyhow::Result<Result<Built, String>> {
        let built = match self.build(record).await? {
            Ok(built) => built,
            Err(reason) => return Ok(Err(reason)),
        };
        let (placeholder, resized) = (built.placeholder, built.resized);
        let built = built.variants;
        let uploads = built.iter().map(|v| {
            let key = storage::variant_key(record.id, &v.name, "webp");
            async move { self.store.put(&key, v.webp.clone(), "image/webp").await }
        });
        for result in futures::future::join_all(uploads).await {
            result?;
        }
        let variants = built
            .into_iter()
            .map(|v| Variant {
                url: variant_url(&self.public_base_url, record.id, &v.name, "webp"),
                name: v.name,
                format: "webp".into(),
                width: v.width,
                height: v.height,
                bytes: v.webp.len() as u64,
            })
            .collect();
        Ok(Ok((variants, placeholder, resized)))
    }

    /// Reads the original and builds every preset on the blocking pool;
    /// nothing is stored. Errors as for [`Self::build_and_store`].
    async fn build(&self, record: &ImageRecord) -> anyhow::Result<Result<pipeline::Built, String>> {
        let Some(original) = self.store.get(&record.original_key).await? else {
            return Ok(Err("the original is missing from storage".into()));
        };
        let Some(format) = Format::from_content_type(&record.content_type) else {
            return Ok(Err(format!(
                "unsupported content type {}",
                record.content_type
            )));
        };
        let (presets, quality, limits) = (self.presets.clone(), self.webp_quality, self.limits);
        let span = tracing::Span::current();
        let built = self
            .threads
            .run(move || {
                span.in_scope(|| {
                    pipeline::build_variants(&original.bytes, format, &presets, quality, &limits)
                })
            })
            .await;
        Ok(match built {
            Ok(built) => built,
            Err(panic) => Err(format!("the decoder crashed: {panic}")),
        })
    }

    async fn finish(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        record: &ImageRecord,
        outcome: Outcome,
    ) -> anyhow::Result<Option<ImageProcessed>> {
        let Outcome {
            status,
            variants,
            error,
            placeholder,
        } = outcome;
        let changed = images::finish_processing(
            tx,
            record.id,
            status,
            &variants,
            error.as_deref(),
            placeholder.as_deref(),
        )
        .await
        .context("record processing outcome")?;
        if !changed {
            return Ok(None);
        }
        Ok(Some(ImageProcessed {
            image_id: record.id,
            owner: record.owner.clone(),
            status: match status {
                ProcessStatus::Ready => ProcessOutcome::Ready,
                _ => ProcessOutcome::Failed,
            },
            variants,
            error,
            placeholder,
        }))
    }
}

/// Variants, placeholder and the resized pixels of a successful build.
type Built = (Vec<Variant>, Option<String>, Vec<pipeline::Resized>);

/// The result of one processing attempt.
struct Outcome {
    status: ProcessStatus,
    variants: Vec<Variant>,
    error: Option<String>,
    placeholder: Option<String>,
}

/// Keys of variants the record listed that the new build no longer has.
fn stale_variant_keys(record: &ImageRecord, built: &[Variant]) -> Vec<String> {
    record
        .variants
        .iter()
        .filter(|old| {
            !built
                .iter()
                .any(|new| new.name == old.name && new.format == old.format)
        })
        .map(|old| storage::variant_key(record.id, &old.name, &old.format))
        .collect()
}

/// The post as an image owner.
pub fn post_owner(post_id: proto::PostId) -> Owner {
    Owner {
        owner_type: OwnerType::Post,
        id: post_id.0,
    }
}
