//! Logging and tracing set-up: JSON lines outside a terminal, readable text
//! in one; spans exported over OTLP/HTTP when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. The exporter reads the other `OTEL_EXPORTER_OTLP_*` variables
//! itself (protocol, headers, timeout); `OTEL_SERVICE_NAME` overrides the
//! program's name and `OTEL_BSP_*` tune the batching.
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text when it is.
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` wins when set.
    pub filter: String,
    /// Share of new traces exported (0.0–1.0) when OTLP export is on; a
    /// trace continued from a caller follows the caller's sampling flag.
    pub trace_sample_ratio: f64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            filter: "info".into(),
            trace_sample_ratio: 1.0,
        }
    }
}

impl LogSettings {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(format!(
                "setting log.trace_sample_ratio ({prefix}_LOG__TRACE_SAMPLE_RATIO) must be between 0 and 1"
            ));
        }
        Ok(())
    }
}

/// Keeps the span exporter running; dropping it exports what is queued
/// (waiting at most a few seconds) and stops it.
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "the last spans could not be exported");
            }
        }
    }
}

/// Installs the global subscriber once; later calls (as in tests) change
/// nothing and export nothing. `service` names the program in traces.
pub fn init(service: &'static str, settings: &LogSettings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let (json, text) = if json {
        let layer = fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr);
        (Some(layer), None)
    } else {
        (None, Some(fmt::layer().with_writer(std::io::stderr)))
    };
    let provider = otlp_configured()
        .then(|| tracer_provider(service, settings.trace_sample_ratio))
        .and_then(|built| {
            built
                .inspect_err(|e| eprintln!("OTLP trace export is off: {e}"))
                .ok()
        });
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_threads(false)
            .with_tracked_inactivity(false)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .with(otel)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider(service: &'static str, ratio: f64) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_batch_exporter(exporter)
        .build())
}
