//! Handles messages from `image-service.post-events`.
use crate::processing::{post_owner, Processor};
use infra::{
    amqp::{header_str, Handler, Outcome},
    trace_context::{TraceParent, TRACEPARENT},
};
use lapin::message::Delivery;
use proto::{Event, PostCreated, RawEnvelope};
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
            trace_id = %trace.trace_id(),
        );
        self.dispatch(raw, trace).instrument(span).await
    }
}

impl PostEventsHandler {
    async fn dispatch(&self, raw: RawEnvelope, trace: TraceParent) -> Outcome {
        match raw.event_type.as_str() {
            PostCreated::TYPE => {
                let event = match raw.decode::<PostCreated>() {
                    Ok(event) => event,
                    Err(e) => return Outcome::DeadLetter(e.to_string()),
                };
                if let Err(e) = self.processor.attach_post(&event, &trace).await {
                    return Outcome::Retry(format!("{e:#}"));
                }
                match self
                    .processor
                    .process_owner(&post_owner(&event), &trace)
                    .await
                {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Retry(format!("{e:#}")),
                }
            }
            other => Outcome::DeadLetter(format!("unknown event type `{other}`")),
        }
    }
}
