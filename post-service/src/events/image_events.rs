//! Handles messages from `post-service.image-events`: records each image's
//! outcome on the posts that have it, once per event (inbox).
use crate::{domain::ImageStatus, store::posts};
use anyhow::Context;
use infra::{
    amqp::{header_str, Handler, Outcome},
    trace_context::{TraceParent, TRACEPARENT},
};
use lapin::message::Delivery;
use proto::{
    Envelope, Event, EventId, ImageProcessed, OwnerType, PostId, ProcessOutcome, RawEnvelope,
};
use sqlx::PgPool;
use tracing::Instrument;

pub struct ImageEventsHandler {
    pub pool: PgPool,
}

impl Handler for ImageEventsHandler {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let raw = match RawEnvelope::parse(&delivery.data) {
            Ok(raw) => raw,
            Err(e) => return Outcome::DeadLetter(e.to_string()),
        };
        infra::metrics::observe_delivery(
            proto::topology::POST_SERVICE_IMAGE_EVENTS.name,
            &raw.event_type,
            raw.occurred_at,
            !infra::amqp::first_delivery(delivery),
        );
        let span = tracing::info_span!(
            "handle image event",
            otel.name = %format!("{} process", raw.event_type),
            otel.kind = "consumer",
            event_id = %raw.id,
            event_type = %raw.event_type,
            aggregate_id = %raw.aggregate_id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let remote = header_str(delivery.properties.headers().as_ref(), TRACEPARENT)
            .map(str::to_owned)
            .or_else(|| raw.traceparent.clone());
        let trace = TraceParent::continue_in(remote.as_deref(), &span);
        trace.record_on(&span);
        async {
            match raw.event_type.as_str() {
                ImageProcessed::TYPE => match raw.decode::<ImageProcessed>() {
                    Ok(event) => match self.apply(&event).await {
                        Ok(true) => Outcome::Done,
                        Ok(false) => Outcome::Duplicate,
                        Err(e) => Outcome::Retry(format!("{e:#}")),
                    },
                    Err(e) => Outcome::DeadLetter(e.to_string()),
                },
                other => Outcome::DeadLetter(format!("unknown event type `{other}`")),
            }
        }
        .instrument(span)
        .await
    }
}

impl ImageEventsHandler {
    /// Applies one `image.processed`; a duplicate changes nothing and
    /// returns `false`. The inbox row and the image's result commit together
    /// in one statement.
    pub async fn apply(&self, event: &Envelope<ImageProcessed>) -> anyhow::Result<bool> {
        let data = &event.data;
        let post = data
            .owner
            .as_ref()
            .filter(|o| o.owner_type == OwnerType::Post)
            .map(|o| PostId(o.id));
        let status = match data.status {
            ProcessOutcome::Ready => ImageStatus::Ready,
            ProcessOutcome::Failed => ImageStatus::Failed,
        };
        let recorded = posts::record_image_result_once(
            &self.pool,
            &posts::ImageResult {
                event_id: EventId(event.id),
                event_type: &event.event_type,
                post,
                image_id: data.image_id,
                status,
                variants: &data.variants,
                error: data.error.as_deref(),
                placeholder: data.placeholder.as_deref(),
            },
        )
        .await
        .context("record image result")?;
        Ok(match recorded {
            posts::Recorded::Duplicate => {
                tracing::info!("duplicate image.processed ignored");
                false
            }
            posts::Recorded::Applied { found } => {
                if let (Some(post), false) = (post, found) {
                    tracing::info!(post_id = %post, "post no longer has this image; nothing to record");
                }
                true
            }
        })
    }
}
