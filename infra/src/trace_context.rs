//! W3C trace context (`traceparent`), carried from the HTTP request into the
//! outbox row, the message headers and the consumer's own events.
use std::fmt;
use uuid::Uuid;

/// The header and message-header name.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// Starts a new, sampled trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: Uuid::new_v4().as_u128(),
            span_id: random_span_id(),
            flags: 1,
        }
    }

    /// A new span in the same trace, as a child of this one.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_span_id(),
            ..self.clone()
        }
    }

    /// Parses a version-00 `traceparent`; anything invalid gives `None`
    /// (the caller then starts a new trace, as the W3C spec asks).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Continues a remote context when there is a valid one, else starts anew.
    pub fn continue_from(value: Option<&str>) -> Self {
        value
            .and_then(Self::parse)
            .map(|parent| parent.child())
            .unwrap_or_else(Self::new_root)
    }

    /// The 32-hex-digit trace id, for logs.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The 16-hex-digit span id, for logs.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Records `trace_id` and `span_id` on `span` (fields it declares).
    pub fn record_on(&self, span: &tracing::Span) {
        span.record("trace_id", tracing::field::display(self.trace_id()));
        span.record("span_id", tracing::field::display(self.span_id()));
    }

    /// The context of `span` as exported over OTLP: its trace id and its own
    /// span id, so that what is handed on (outbox row, message header) names
    /// a span the collector receives. `None` when spans are not exported.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        let span_ref = context.span();
        let found = span_ref.span_context();
        found.is_valid().then(|| Self {
            trace_id: u128::from_be_bytes(found.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(found.span_id().to_bytes()),
            flags: found.trace_flags().to_u8(),
        })
    }

    /// Makes `span` a child of this (remote) context in exported traces.
    /// Must be called before the span is first entered; does nothing when
    /// spans are not exported.
    pub fn adopt(&self, span: &tracing::Span) {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let remote = SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// The context to hand on from `span`, created for work that continues
    /// `remote` (a `traceparent` received, if any): with export on, `span`
    /// becomes the remote span's child and its own context is returned;
    /// without, a child of `remote` (or a new trace) as before.
    pub fn continue_in(remote: Option<&str>, span: &tracing::Span) -> Self {
        let parent = remote.and_then(Self::parse);
        if let Some(parent) = &parent {
            parent.adopt(span);
        }
        Self::of_span(span)
            .unwrap_or_else(|| parent.map(|p| p.child()).unwrap_or_else(Self::new_root))
    }
}

fn random_span_id() -> u64 {
    // Never zero: an all-zero span id is invalid.
    (Uuid::new_v4().as_u128() as u64).max(1)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl actix_web::FromRequest for TraceParent {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use actix_web::HttpMessage;
        // The request's own span, when the observing middleware made one.
        if let Some(current) = req.extensions().get::<TraceParent>() {
            return std::future::ready(Ok(current.clone()));
        }
        let header = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
        std::future::ready(Ok(Self::continue_from(header)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_round_trips() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(text).unwrap().to_string(), text);
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let parent = TraceParent::new_root();
        let child = parent.child();
        assert_eq!(parent.trace_id(), child.trace_id());
        assert_ne!(parent.to_string(), child.to_string());
    }

    #[test]
    fn invalid_values_are_rejected() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_missing_context_starts_a_new_trace() {
        let a = TraceParent::continue_from(None);
        let b = TraceParent::continue_from(Some("garbage"));
        assert_ne!(a.trace_id(), b.trace_id());
    }
}
