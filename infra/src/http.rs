//! The one middleware every HTTP server wraps itself in: a request id
//! (`X-Request-Id` honoured or made, and returned), the W3C trace context
//! continued from the caller, a root span carrying both (so every log line of
//! the request has them), one log line per request, and the latency metric.
use crate::{metrics::HTTP_REQUEST_DURATION, trace_context::TraceParent};
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    HttpMessage,
};
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// See the module documentation.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "http request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        %method,
        %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        status = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let remote = request
        .headers()
        .get(crate::trace_context::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    let trace = TraceParent::continue_in(remote, &span);
    trace.record_on(&span);
    // Handlers read the same context, so the outbox stores this request's span.
    request.extensions_mut().insert(trace);
    let result = next.call(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    HTTP_REQUEST_DURATION
        .with_label_values(&[method.as_str(), route.as_str(), status.to_string().as_str()])
        .observe(elapsed.as_secs_f64());
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    Ok(response)
}

/// What every HTTP server of the system has besides its own routes:
/// problem+json extractor errors, `/healthz`, `/readyz` and `/metrics`.
pub fn common(
    readiness: actix_web::web::Data<crate::health::Readiness>,
) -> impl FnOnce(&mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    move |cfg| {
        cfg.app_data(crate::problem::json_config(64 * 1024))
            .app_data(crate::problem::path_config())
            .app_data(crate::problem::query_config())
            .app_data(readiness)
            .route("/healthz", web::get().to(crate::health::healthz))
            .route("/readyz", web::get().to(crate::health::readyz))
            .route("/metrics", web::get().to(crate::metrics::metrics));
    }
}
