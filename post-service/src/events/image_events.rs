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
    /// returns `false`.
    pub async fn apply(&self, event: &Envelope<ImageProcessed>) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await.context("begin")?;
        if !infra::inbox::record(&mut tx, EventId(event.id), &event.event_type)
            .await
            .context("record inbox")?
        {
            tracing::info!("duplicate image.processed ignored");
            return Ok(false);
        }
        let data = &event.data;
        if let Some(owner) = data
            .owner
            .as_ref()
            .filter(|o| o.owner_type == OwnerType::Post)
        {
            let status = match data.status {
                ProcessOutcome::Ready => ImageStatus::Ready,
                ProcessOutcome::Failed => ImageStatus::Failed,
            };
            let found = posts::record_image_result(
                &mut tx,
                PostId(owner.id),
                data.image_id,
                status,
                &data.variants,
                data.error.as_deref(),
                data.placeholder.as_deref(),
            )
            .await
            .context("record image result")?;
            if !found {
                tracing::info!(post_id = %owner.id, "post no longer has this image; nothing to record");
            }
        }
        tx.commit().await.context("commit")?;
        Ok(true)
    }
}
