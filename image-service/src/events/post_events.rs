//! Handles messages from `image-service.post-events`.
use crate::processing::{Applied, BuildQueue, Processor};
use infra::{
    amqp::{header_str, Handler, Outcome},
    trace_context::{TraceParent, TRACEPARENT},
};
use lapin::message::Delivery;
use proto::{
    Envelope, Event, ImageId, PostCreated, PostDeleted, PostRolledBack, PostUpdated, RawEnvelope,
};
use std::sync::Arc;
use tracing::Instrument;

pub struct PostEventsHandler {
    pub processor: Arc<Processor>,
    /// Where attached images go to be built; the event is acknowledged
    /// without waiting for their variants.
    pub builds: BuildQueue,
}

impl Handler for PostEventsHandler {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let raw = match RawEnvelope::parse(&delivery.data) {
            Ok(raw) => raw,
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        infra::metrics::observe_delivery(
            proto::topology::IMAGE_SERVICE_POST_EVENTS.name,
            &raw.event_type,
            raw.occurred_at,
            !infra::amqp::first_delivery(delivery),
        );
        let remote = header_str(delivery.properties.headers().as_ref(), TRACEPARENT)
            .map(str::to_owned)
            .or_else(|| raw.traceparent.clone());
        let span = tracing::info_span!(
            "handle post event",
            otel.name = %format!("{} process", raw.event_type),
            otel.kind = "consumer",
            event_id = %raw.id,
            event_type = %raw.event_type,
            aggregate_id = %raw.aggregate_id,
            sequence = raw.sequence,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let trace = TraceParent::continue_in(remote.as_deref(), &span);
        trace.record_on(&span);
        self.dispatch(raw, trace).instrument(span).await
    }
}

impl PostEventsHandler {
    async fn dispatch(&self, raw: RawEnvelope, trace: TraceParent) -> Outcome {
        let (applied, attached) = match self.apply(raw, &trace).await {
            Ok(done) => done,
            Err(outcome) => return outcome,
        };
        let outcome = match applied {
            Ok(Applied::Early { expected }) => {
                return Outcome::Defer(format!("waiting for sequence {expected} of this post"));
            }
            Err(e) => return Outcome::Retry(format!("{e:#}")),
            Ok(Applied::Yes) => Outcome::Done,
            Ok(Applied::Duplicate) => Outcome::Duplicate,
        };
        // Also after a duplicate: the first delivery may have crashed before
        // the builds started. Images already built are skipped.
        self.builds.push(&attached, &trace);
        outcome
    }

    /// Applies the event's state change; returns the images it attached,
    /// which may need building. `Err` is the outcome for an event that cannot be read.
    async fn apply(
        &self,
        raw: RawEnvelope,
        trace: &TraceParent,
    ) -> Result<(anyhow::Result<Applied>, Vec<ImageId>), Outcome> {
        let processor = &self.processor;
        Ok(match raw.event_type.as_str() {
            PostCreated::TYPE => {
                let e = decode::<PostCreated>(raw)?;
                let d = &e.data;
                let applied =
                    processor.apply_post_images(&e, d.post_id, &d.author_id, &d.image_ids, trace);
                (applied.await, d.image_ids.clone())
            }
            PostUpdated::TYPE => {
                let e = decode::<PostUpdated>(raw)?;
                let d = &e.data;
                let applied =
                    processor.apply_post_images(&e, d.post_id, &d.author_id, &d.image_ids, trace);
                (applied.await, d.image_ids.clone())
            }
            PostDeleted::TYPE => {
                let e = decode::<PostDeleted>(raw)?;
                (
                    processor.apply_post_deleted(&e, e.data.post_id).await,
                    vec![],
                )
            }
            PostRolledBack::TYPE => {
                let e = decode::<PostRolledBack>(raw)?;
                (
                    processor
                        .apply_post_rolled_back(&e, &e.data.image_ids)
                        .await,
                    vec![],
                )
            }
            other => return Err(Outcome::DeadLetter(format!("unknown event type `{other}`"))),
        })
    }
}

/// A payload that does not match its type is a permanent failure.
fn decode<E: Event + serde::de::DeserializeOwned>(
    raw: RawEnvelope,
) -> Result<Envelope<E>, Outcome> {
    raw.decode::<E>()
        .map_err(|e| Outcome::DeadLetter(e.to_string()))
}
