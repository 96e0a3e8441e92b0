//! Handles messages from `image-service.post-events`.
use crate::processing::{post_owner, Applied, Processor};
use infra::{
    amqp::{header_str, Handler, Outcome},
    trace_context::{TraceParent, TRACEPARENT},
};
use lapin::message::Delivery;
use proto::{Event, PostCreated, PostDeleted, PostId, PostRolledBack, PostUpdated, RawEnvelope};
use std::sync::Arc;
use tracing::Instrument;

pub struct PostEventsHandler {
    pub processor: Arc<Processor>,
}

impl Handler for PostEventsHandler {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let raw = match RawEnvelope::parse(&delivery.data) {
            Ok(raw) => raw,
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        let remote = header_str(delivery.properties.headers().as_ref(), TRACEPARENT)
            .map(str::to_owned)
            .or_else(|| raw.traceparent.clone());
        let trace = TraceParent::continue_from(remote.as_deref());
        let span = tracing::info_span!(
            "handle post event",
            event_id = %raw.id,
            event_type = %raw.event_type,
            aggregate_id = %raw.aggregate_id,
            sequence = raw.sequence,
            trace_id = %trace.trace_id(),
        );
        self.dispatch(raw, trace).instrument(span).await
    }
}

impl PostEventsHandler {
    async fn dispatch(&self, raw: RawEnvelope, trace: TraceParent) -> Outcome {
        let processor = &self.processor;
        let (applied, post) = match raw.event_type.as_str() {
            PostCreated::TYPE => match raw.decode::<PostCreated>() {
                Ok(e) => {
                    let d = &e.data;
                    let result = processor
                        .apply_post_images(&e, d.post_id, &d.author_id, &d.image_ids, &trace)
                        .await;
                    (result, Some(d.post_id))
                }
                Err(e) => return Outcome::DeadLetter(e.to_string()),
            },
            PostUpdated::TYPE => match raw.decode::<PostUpdated>() {
                Ok(e) => {
                    let d = &e.data;
                    let result = processor
                        .apply_post_images(&e, d.post_id, &d.author_id, &d.image_ids, &trace)
                        .await;
                    (result, Some(d.post_id))
                }
                Err(e) => return Outcome::DeadLetter(e.to_string()),
            },
            PostDeleted::TYPE => match raw.decode::<PostDeleted>() {
                Ok(e) => (processor.apply_post_deleted(&e, e.data.post_id).await, None),
                Err(e) => return Outcome::DeadLetter(e.to_string()),
            },
            PostRolledBack::TYPE => match raw.decode::<PostRolledBack>() {
                Ok(e) => (
                    processor
                        .apply_post_rolled_back(&e, &e.data.image_ids)
                        .await,
                    None,
                ),
                Err(e) => return Outcome::DeadLetter(e.to_string()),
            },
            other => return Outcome::DeadLetter(format!("unknown event type `{other}`")),
        };
        match applied {
            Ok(Applied::Early { expected }) => {
                return Outcome::Defer(format!("waiting for sequence {expected} of this post"));
            }
            Err(e) => return Outcome::Retry(format!("{e:#}")),
            Ok(Applied::Yes | Applied::Duplicate) => {}
        }
        // Build whatever the post's images still lack, also after a
        // duplicate: the first delivery may have crashed mid-way.
        match post {
            Some(post) => self.process(post, &trace).await,
            None => Outcome::Done,
        }
    }

    async fn process(&self, post: PostId, trace: &TraceParent) -> Outcome {
        match self.processor.process_owner(&post_owner(post), trace).await {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Retry(format!("{e:#}")),
        }
    }
}
