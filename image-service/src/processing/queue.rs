//! The build queue. Post events only attach images (one short transaction)
//! and are acknowledged at once; the variants are built afterwards by a
//! dispatcher that hands claimed images to at most `permits` builds at a
//! time. The queue itself is the database: attached images still `pending`,
//! oldest first, shared by every instance and kept across crashes. An
//! in-process channel of hints from the consumer lets a new image start at
//! once, in the trace of the event that attached it; the dispatcher also
//! polls the table for work the hints missed (another instance's events,
//! a restart, a build handed back after a transient failure).
use super::Processor;
use crate::{domain::ImageRecord, store::images};
use anyhow::Context;
use infra::trace_context::TraceParent;
use proto::ImageId;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Hints beyond this many are dropped; the table still has them.
const HINTS: usize = 10_000;
/// The longest pause after consecutive transient failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The consumer's side: names images that were just attached.
#[derive(Clone)]
pub struct BuildQueue {
    hints: mpsc::Sender<(ImageId, TraceParent)>,
}

impl BuildQueue {
    /// Asks for `ids` to be built soon, continuing `trace`. Never waits:
    /// images already built are skipped, and a dropped hint only means the
    /// image is found by the next poll.
    pub fn push(&self, ids: &[ImageId], trace: &TraceParent) {
        for &id in ids {
            if self.hints.try_send((id, trace.clone())).is_err() {
                tracing::debug!(image_id = %id, "build hint dropped; the poll finds it");
            }
        }
    }
}

/// The building side: runs until cancelled.
pub struct Builder {
    processor: Arc<Processor>,
    hints: mpsc::Receiver<(ImageId, TraceParent)>,
    poll: Duration,
}

/// A connected queue and builder. `poll` is how often the table is checked
/// for pending images when no hint arrives.
pub fn build_queue(processor: Arc<Processor>, poll: Duration) -> (BuildQueue, Builder) {
    let (tx, rx) = mpsc::channel(HINTS);
    (
        BuildQueue { hints: tx },
        Builder {
            processor,
            hints: rx,
            poll,
        },
    )
}

impl Builder {
    /// Claims and builds images until `cancel` fires, then lets the builds
    /// in flight finish. Images not started stay `pending` for the next run.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut builds = tokio::task::JoinSet::new();
        let failures = Arc::new(AtomicU32::new(0));
        loop {
            // Reap finished builds so the set holds only running ones.
            while builds.try_join_next().is_some() {}
            let failed = failures.load(Ordering::Relaxed);
            if failed > 0 {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff(failed)) => {}
                }
            }
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                permit = self.processor.permits.clone().acquire_owned() => {
                    permit.expect("semaphore never closes")
                }
            };
            let claimed = tokio::select! {
                _ = cancel.cancelled() => break,
                claimed = self.next() => claimed,
            };
            let (record, trace) = match claimed {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %format_args!("{e:#}"), "claiming an image to build failed");
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let (processor, failures) = (self.processor.clone(), failures.clone());
            let span = tracing::info_span!("build", image_id = %record.id);
            trace.adopt(&span);
            builds.spawn(
                async move {
                    match processor.process_claimed(record, &trace).await {
                        Ok(()) => failures.store(0, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(error = %format_args!("{e:#}"), "build failed; the image waits for a retry");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
        while builds.join_next().await.is_some() {}
    }

    /// The next image to build: a hinted one if any can be claimed, else
    /// the table's oldest pending one; waits for a hint or the poll when
    /// there is none.
    async fn next(&mut self) -> anyhow::Result<(ImageRecord, TraceParent)> {
        loop {
            while let Ok((id, trace)) = self.hints.try_recv() {
                if let Some(record) = images::start_processing(&self.processor.pool, id)
                    .await
                    .context("claim a hinted image")?
                {
                    return Ok((record, trace));
                }
            }
            if let Some(record) = images::claim_next(&self.processor.pool)
                .await
                .context("claim the next pending image")?
            {
                return Ok((record, TraceParent::new_root()));
            }
            tokio::select! {
                hint = self.hints.recv() => match hint {
                    Some((id, trace)) => {
                        if let Some(record) = images::start_processing(&self.processor.pool, id)
                            .await
                            .context("claim a hinted image")?
                        {
                            return Ok((record, trace));
                        }
                    }
                    // Every queue handle is gone: only the table is left.
                    None => tokio::time::sleep(self.poll).await,
                },
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

/// 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`], each 80–100 % of that so
/// instances do not retry in step.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF);
    infra::amqp::jittered(base)
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap_with_bounded_jitter() {
        for (failures, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)] {
            let wait = backoff(failures);
            let base = Duration::from_secs(base);
            assert!(
                wait >= base.mul_f64(0.8) && wait <= base,
                "{failures} failures: {wait:?}"
            );
        }
    }
}
