//! `image-service reconcile [--delete]`: compares the bucket with the
//! database. Objects no row explains are leaks (removed with `--delete`);
//! rows whose objects are missing are damage. An empty report is the proof
//! that nothing leaked.
use crate::{
    domain::{FileState, ProcessStatus},
    storage::{self, ObjectStore},
    store::{images, pending},
};
use anyhow::Context;
use proto::ImageId;
use sqlx::PgPool;
use std::collections::HashSet;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys in the bucket that no live row explains.
    pub unexplained: Vec<String>,
    /// Keys live rows need that are not in the bucket.
    pub missing: Vec<String>,
    /// Unexplained keys deleted (with `--delete`).
    pub deleted: usize,
    pub objects: usize,
    pub rows: usize,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.unexplained.len() == self.deleted && self.missing.is_empty()
    }
}

pub async fn reconcile(pool: &PgPool, store: &ObjectStore, delete: bool) -> anyhow::Result<Report> {
    // Rows first: an object written after this read belongs to a row
    // committed before its write, so it is explained by a later run at worst.
    let records = images::all(pool).await.context("read rows")?;
    let staged = pending::keys(pool).await.context("read pending uploads")?;
    let keys: HashSet<String> = store.list_all().await?.into_iter().collect();
    let mut explained: HashSet<String> = staged.into_iter().collect();
    let mut in_progress = HashSet::new();
    let mut missing = Vec::new();
    for record in records.iter().filter(|r| r.state != FileState::Deleted) {
        explained.insert(record.original_key.clone());
        if !keys.contains(&record.original_key) {
            missing.push((record.id, record.original_key.clone()));
        }
        for variant in &record.variants {
            let key = storage::variant_key(record.id, &variant.name, &variant.format);
            if !keys.contains(&key) {
                missing.push((record.id, key.clone()));
            }
            explained.insert(key);
            // AVIF variants are written a moment before the row lists them.
            explained.insert(storage::variant_key(record.id, &variant.name, "avif"));
        }
        if matches!(
            record.process_status,
            ProcessStatus::Pending | ProcessStatus::Processing
        ) {
            // Variants being built are not recorded yet.
            in_progress.insert(format!("variants/{}/", record.id));
        }
    }
    let mut unexplained: Vec<String> = keys
        .iter()
        .filter(|k| {
            !explained.contains(*k) && !in_progress.iter().any(|p| k.starts_with(p.as_str()))
        })
        .cloned()
        .collect();
    unexplained.sort();
    // A sweep deletes the objects of the rows it holds locked, then marks
    // them deleted: rows it holds now, or has marked since they were read,
    // are being swept, not damaged. (A row locked for another short
    // change is left to the next run.)
    let suspects: Vec<ImageId> = missing.iter().map(|(id, _)| *id).collect();
    let unswept = if suspects.is_empty() {
        HashSet::new()
    } else {
        images::not_being_swept(pool, &suspects)
            .await
            .context("recheck rows with missing objects")?
    };
    let mut missing: Vec<String> = missing
        .into_iter()
        .filter(|(id, _)| unswept.contains(id))
        .map(|(_, key)| key)
        .collect();
    missing.sort();
    let deleted = if delete && !unexplained.is_empty() {
        store.delete_many(&unexplained).await?;
        unexplained.len()
    } else {
        0
    };
    Ok(Report {
        unexplained,
        missing,
        deleted,
        objects: keys.len(),
        rows: records.len(),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "objects in bucket: {}, image rows: {}",
            self.objects, self.rows
        )?;
        writeln!(f, "unexplained objects: {}", self.unexplained.len())?;
        for key in &self.unexplained {
            writeln!(f, "  {key}")?;
        }
        writeln!(f, "missing objects: {}", self.missing.len())?;
        for key in &self.missing {
            writeln!(f, "  {key}")?;
        }
        if self.deleted > 0 {
            writeln!(f, "deleted {} unexplained objects", self.deleted)?;
        }
        Ok(())
    }
}
