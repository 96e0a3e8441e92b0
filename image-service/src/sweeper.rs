//! Deletes the objects of files nobody uses: uploads never claimed within
//! the upload TTL, and files abandoned longer than the grace period.
//!
//! The state that justifies a deletion (`abandoned`, or an old `uploaded`)
//! is committed before the sweeper sees it. The rows stay locked while their
//! objects are deleted, so a concurrent attach waits and then sees `deleted`.
//! A crash after the S3 delete and before the commit repeats the delete on
//! the next sweep, where a missing object counts as done.
use crate::{
    pipeline::Preset,
    storage::{self, ObjectStore},
    store::{images, pending},
};
use anyhow::Context;
use proto::{ImageDeleted, ImageId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepSettings {
    /// Whether this process sweeps at all. Several replicas may all sweep
    /// (their claims skip each other's rows); tests that drive sweeps
    /// themselves turn it off.
    pub enabled: bool,
    /// Seconds between sweeps.
    pub interval_secs: u64,
    /// Uploads never attached are deleted after this many seconds.
    pub upload_ttl_secs: u64,
    /// Abandoned files are deleted after this many seconds.
    pub abandoned_grace_secs: u64,
    /// Files deleted per batch (one transaction, one `DeleteObjects`).
    pub batch_size: u32,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            upload_ttl_secs: 24 * 3600,
            abandoned_grace_secs: 3600,
            batch_size: 100,
        }
    }
}

pub struct Sweeper {
    pub pool: PgPool,
    pub store: ObjectStore,
    pub presets: Vec<Preset>,
    pub settings: SweepSettings,
}

impl Sweeper {
    /// Deletes one batch of files and of expired presigned uploads; returns
    /// how many were deleted.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_once(&self) -> anyhow::Result<usize> {
        Ok(self.sweep_files().await? + self.sweep_expired_uploads().await?)
    }

    /// Staging objects of presigned uploads whose policy expired.
    async fn sweep_expired_uploads(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await.context("begin sweep")?;
        let expired = pending::lock_expired(&mut tx, self.settings.batch_size.into())
            .await
            .context("find expired uploads")?;
        if expired.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = expired.iter().map(|p| p.object_key.clone()).collect();
        self.store.delete_many(&keys).await?;
        let ids: Vec<uuid::Uuid> = expired.iter().map(|p| p.id).collect();
        pending::delete(&mut tx, &ids)
            .await
            .context("forget expired uploads")?;
        tx.commit().await.context("commit sweep")?;
        Ok(ids.len())
    }

    async fn sweep_files(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await.context("begin sweep")?;
        let due = images::lock_sweepable(
            &mut tx,
            self.settings.abandoned_grace_secs as i64,
            self.settings.upload_ttl_secs as i64,
            self.settings.batch_size.into(),
        )
        .await
        .context("find files to delete")?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut keys = Vec::new();
        for record in &due {
            keys.push(record.original_key.clone());
            // Every preset in every format, not only the recorded variants:
            // a build that crashed half-way, or AVIF variants written but
            // not listed yet, leave objects the row does not name.
            let names = self
                .presets
                .iter()
                .map(|p| p.name.as_str())
                .chain(record.variants.iter().map(|v| v.name.as_str()));
            for name in names {
                for format in storage::VARIANT_FORMATS {
                    keys.push(storage::variant_key(record.id, name, format));
                }
            }
        }
        keys.sort();
        keys.dedup();
        self.store.delete_many(&keys).await?;
        let ids: Vec<ImageId> = due.iter().map(|r| r.id).collect();
        images::mark_deleted(&mut tx, &ids)
            .await
            .context("mark deleted")?;
        for &image_id in &ids {
            infra::outbox::write(&mut tx, &ImageDeleted { image_id }, None).await?;
        }
        tx.commit().await.context("commit sweep")?;
        tracing::info!(
            files = ids.len(),
            objects = keys.len(),
            "swept unused files"
        );
        Ok(ids.len())
    }

    /// Sweeps every interval (draining full batches at once) until cancelled.
    pub async fn run(&self, cancel: CancellationToken) {
        if !self.settings.enabled {
            tracing::info!("the sweeper is turned off in this process");
            return;
        }
        let interval = Duration::from_secs(self.settings.interval_secs);
        while !cancel.is_cancelled() {
            loop {
                match self.sweep_once().await {
                    Ok(n) if n as u32 >= self.settings.batch_size => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %format_args!("{e:#}"), "sweep failed; retrying next interval");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
