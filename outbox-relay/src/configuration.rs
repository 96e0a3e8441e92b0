//! The relay's settings (`RELAY_` prefix).
use infra::{auth::AuthSettings, settings, telemetry::LogSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub admin: AdminSettings,
    pub auth: AuthSettings,
    pub amqp: AmqpSettings,
    pub outbox: OutboxSettings,
    pub dead_letters: DeadLetterSettings,
    pub log: LogSettings,
    pub shutdown: infra::shutdown::ShutdownSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadLetterSettings {
    /// The relay's own database, holding `dead_letters`.
    pub database_url: String,
    /// Replays and discards of more letters than this need `--yes`.
    pub confirm_above: u64,
    /// Replayed and discarded letters are deleted after this many days.
    pub retention_days: u64,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/relay".into(),
            confirm_above: 10,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    pub host: String,
    pub port: u16,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8082,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    pub url: String,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    pub database_urls: Vec<String>,
    pub batch_size: u32,
    pub poll_interval_ms: u64,
    /// Published rows older than this are deleted (0 keeps them forever).
    pub retention_hours: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            database_urls: vec![
                "postgres://postgres@127.0.0.1:5432/posts".into(),
                "postgres://postgres@127.0.0.1:5432/images".into(),
            ],
            batch_size: 500,
            poll_interval_ms: 1000,
            retention_hours: 24,
        }
    }
}

impl settings::Settings for Settings {
    const PREFIX: &'static str = "RELAY";
    const PROGRAM: &'static str = "outbox-relay";
    const DOCS: &'static [(&'static str, &'static str)] = &[
        (
            "admin.host",
            "Address of the health, metrics and dead-letter admin endpoints.",
        ),
        (
            "admin.port",
            "Port of the health, metrics and dead-letter admin endpoints.",
        ),
        (
            "auth.jwt_secret",
            "HS256 key for admin tokens (scope dlq:admin); empty turns the admin API off. Secret.",
        ),
        ("auth.issuer", "Required `iss` of admin tokens."),
        ("auth.audience", "Required `aud` of admin tokens."),
        (
            "amqp.url",
            "RabbitMQ URL, with vhost (e.g. amqp://user:pass@host:5672/%2f).",
        ),
        (
            "outbox.database_urls",
            "PostgreSQL URLs of the databases whose `outbox` table is relayed.",
        ),
        ("outbox.batch_size", "Rows claimed and published per batch; up to 3 batches are in flight while the broker confirms the oldest."),
        (
            "outbox.retention_hours",
            "Published outbox rows older than this are deleted, checked every minute (0 keeps them).",
        ),
        (
            "outbox.poll_interval_ms",
            "Poll interval when no notification arrives (safety net for LISTEN/NOTIFY).",
        ),
        (
            "dead_letters.database_url",
            "PostgreSQL URL of the relay's own database (dead letters).",
        ),
        (
            "dead_letters.confirm_above",
            "dlq replay/discard of more letters than this needs --yes.",
        ),
        (
            "dead_letters.retention_days",
            "Replayed and discarded dead letters are deleted after this many days.",
        ),
        (
            "shutdown.grace_secs",
            "Seconds from SIGTERM until the program exits (code 1) even if work is still in flight; keep it below the orchestrator's kill timeout.",
        ),
        ("log.format", "auto, json or text."),
        ("log.filter", "tracing filter directives (RUST_LOG wins)."),
        (
            "log.trace_sample_ratio",
            "Share of new traces exported (0–1) when OTEL_EXPORTER_OTLP_ENDPOINT is set; continued traces follow the caller.",
        ),
    ];

    fn validate(&self) -> Result<(), String> {
        self.log.validate(Self::PREFIX)?;
        if self.outbox.database_urls.is_empty() {
            return Err(
                "setting outbox.database_urls (RELAY_OUTBOX__DATABASE_URLS) needs at least one URL"
                    .into(),
            );
        }
        if let Some(bad) = self
            .outbox
            .database_urls
            .iter()
            .find(|u| !u.starts_with("postgres"))
        {
            return Err(format!(
                "setting outbox.database_urls (RELAY_OUTBOX__DATABASE_URLS): `{bad}` is not a postgres:// URL"
            ));
        }
        if !(1..=10_000).contains(&self.outbox.batch_size) {
            return Err(
                "setting outbox.batch_size (RELAY_OUTBOX__BATCH_SIZE) must be 1..=10000".into(),
            );
        }
        if self.outbox.poll_interval_ms == 0 {
            return Err(
                "setting outbox.poll_interval_ms (RELAY_OUTBOX__POLL_INTERVAL_MS) must be positive"
                    .into(),
            );
        }
        if !self.auth.jwt_secret.is_empty() {
            self.auth.validate(Self::PREFIX)?;
        }
        if self.dead_letters.retention_days == 0 {
            return Err("setting dead_letters.retention_days (RELAY_DEAD_LETTERS__RETENTION_DAYS) must be positive".into());
        }
        if !self.amqp.url.starts_with("amqp") {
            return Err("setting amqp.url (RELAY_AMQP__URL) must be an amqp:// URL".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        assert_eq!(settings::undocumented::<Settings>(), Vec::<String>::new());
    }

    #[test]
    fn defaults_are_valid() {
        settings::Settings::validate(&Settings::default()).unwrap();
    }
}
