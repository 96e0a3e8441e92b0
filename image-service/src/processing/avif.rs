//! The second step of a build: AVIF variants, encoded after the image is
//! `ready` with its WebP variants, uploaded, then listed on the row.
//!
//! Objects are written before the row lists them. If the file was deleted
//! meanwhile (the sweeper lists every preset's AVIF key, so it deletes what
//! was written before it), the objects written after are removed here; a
//! rebuild started meanwhile writes the same keys and lists them itself.
use super::Processor;
use crate::{
    domain::ImageRecord,
    pipeline::{avif, Resized},
    routes::variant_url,
    storage,
    store::images,
};
use anyhow::Context;
use proto::{ImageId, Variant};

/// AVIF variants the row lists whose preset the new WebP build still has.
pub(super) fn kept(record: &ImageRecord, webp: &[Variant]) -> Vec<Variant> {
    record
        .variants
        .iter()
        .filter(|old| old.format == "avif")
        .filter(|old| {
            webp.iter().any(|new| {
                new.name == old.name && (new.width, new.height) == (old.width, old.height)
            })
        })
        .cloned()
        .collect()
}

impl Processor {
    /// Builds the AVIF variants of ready images that lack them (the AVIF
    /// step was cut short, or AVIF was turned on after they were built),
    /// a few at a time, unchanged for `secs`. Returns how many were built.
    pub async fn backfill_avif(&self, secs: i64, limit: i64) -> anyhow::Result<usize> {
        let Some(settings) = self.avif else {
            return Ok(0);
        };
        let lacking = images::lacking_avif(&self.pool, secs, limit)
            .await
            .context("find images without AVIF")?;
        for &id in &lacking {
            if let Err(e) = self.backfill_one(id, settings).await {
                // Put at the back of the line, so one image that keeps
                // failing does not hold up the others.
                tracing::warn!(image_id = %id, error = %format_args!("{e:#}"), "missing AVIF variants not built; trying later");
                images::touch(&self.pool, id)
                    .await
                    .context("requeue image")?;
            }
        }
        Ok(lacking.len())
    }

    async fn backfill_one(&self, id: ImageId, settings: avif::AvifSettings) -> anyhow::Result<()> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        let Some(record) = images::get(&self.pool, id).await.context("read image")? else {
            return Ok(());
        };
        tracing::info!(image_id = %id, "building missing AVIF variants");
        // The WebP variants are already stored; only the resized pixels
        // are needed.
        match self.build(&record).await? {
            Ok(built) => self.build_avif(id, built.resized, settings).await,
            Err(reason) => Err(anyhow::anyhow!(reason)),
        }
    }

    pub(super) async fn build_avif(
        &self,
        id: ImageId,
        resized: Vec<Resized>,
        settings: avif::AvifSettings,
    ) -> anyhow::Result<()> {
        let encoded = self
            .threads
            .run(move || {
                resized
                    .into_iter()
                    .map(|r| avif::encode(&r, settings).map(|bytes| (r, bytes)))
                    .collect::<Result<Vec<_>, String>>()
            })
            .await
            .map_err(|panic| anyhow::anyhow!("the AVIF encoder crashed: {panic}"))?
            .map_err(anyhow::Error::msg)?;
        let uploads = encoded.iter().map(|(r, bytes)| {
            let key = storage::variant_key(id, &r.name, "avif");
            async move { self.store.put(&key, bytes.clone(), "image/avif").await }
        });
        for result in futures::future::join_all(uploads).await {
            result?;
        }
        let variants: Vec<Variant> = encoded
            .iter()
            .map(|(r, bytes)| Variant {
                url: variant_url(&self.public_base_url, id, &r.name, "avif"),
                name: r.name.clone(),
                format: "avif".into(),
                width: r.width,
                height: r.height,
                bytes: bytes.len() as u64,
            })
            .collect();
        match images::set_avif_variants(&self.pool, id, &variants)
            .await
            .context("list AVIF variants")?
        {
            images::AvifListed::Listed => {
                tracing::info!(variants = variants.len(), "AVIF variants ready")
            }
            images::AvifListed::Deleted => {
                let keys: Vec<String> = variants
                    .iter()
                    .map(|v| storage::variant_key(id, &v.name, "avif"))
                    .collect();
                self.store.delete_many(&keys).await?;
            }
            images::AvifListed::Rebuilding => {}
        }
        Ok(())
    }
}
