//! The post service's settings (`POST_` prefix).
use infra::{auth::AuthSettings, settings, telemetry::LogSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub application: ApplicationSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub auth: AuthSettings,
    pub images: ImageLinkSettings,
    pub log: LogSettings,
    pub shutdown: infra::shutdown::ShutdownSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplicationSettings {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads, each with its own connection pool; 0: one per core.
    pub workers: usize,
    /// Most images a post may have.
    pub max_images: usize,
}

impl Default for ApplicationSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            max_images: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/posts".into(),
            max_connections: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    pub url: String,
    /// Image events handled at once (prefetch).
    pub concurrency: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            concurrency: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageLinkSettings {
    /// Public base URL of the image service, for `original_url`.
    pub public_base_url: String,
}

impl Default for ImageLinkSettings {
    fn default() -> Self {
        Self {
            public_base_url: "http://127.0.0.1:8081".into(),
        }
    }
}

impl Settings {
    /// How `database.max_connections` is shared between the HTTP workers'
    /// pools and the background pool.
    pub fn pool_budget(&self) -> Result<infra::db::PoolBudget, String> {
        infra::db::PoolBudget::split(self.database.max_connections, self.application.workers)
    }
}

impl settings::Settings for Settings {
    const PREFIX: &'static str = "POST";
    const PROGRAM: &'static str = "post-service";
    const DOCS: &'static [(&'static str, &'static str)] = &[
        ("application.host", "Address to listen on."),
        (
            "application.port",
            "Port to listen on (0 picks a free one).",
        ),
        (
            "application.workers",
            "HTTP worker threads, each with its own connection pool; 0 = one per CPU core.",
        ),
        ("application.max_images", "Most images one post may have."),
        ("database.url", "PostgreSQL URL of the post database."),
        (
            "database.max_connections",
            "Most connections the service opens, split evenly between a pool per HTTP worker and one for background work (which gets the remainder).",
        ),
        ("amqp.url", "RabbitMQ URL, with vhost."),
        (
            "amqp.concurrency",
            "Image events handled at once (prefetch).",
        ),
        (
            "auth.jwt_secret",
            "HS256 key for bearer tokens (at least 16 bytes). Secret.",
        ),
        ("auth.issuer", "Required `iss` of tokens."),
        ("auth.audience", "Required `aud` of tokens."),
        (
            "images.public_base_url",
            "Public base URL of the image service, used in original_url.",
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
        self.auth.validate(Self::PREFIX)?;
        if !self.images.public_base_url.starts_with("http") {
            return Err("setting images.public_base_url (POST_IMAGES__PUBLIC_BASE_URL) must be an http(s) URL".into());
        }
        if self.application.max_images == 0 {
            return Err(
                "setting application.max_images (POST_APPLICATION__MAX_IMAGES) must be positive"
                    .into(),
            );
        }
        self.pool_budget().map_err(|e| {
            format!(
                "settings database.max_connections and application.workers \
                 (POST_DATABASE__MAX_CONNECTIONS, POST_APPLICATION__WORKERS): {e}"
            )
        })?;
        if self.amqp.concurrency == 0 {
            return Err(
                "setting amqp.concurrency (POST_AMQP__CONCURRENCY) must be positive".into(),
            );
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
    fn a_connection_budget_too_small_for_the_workers_stops_start_up() {
        let vars = vec![
            (
                "POST_AUTH__JWT_SECRET".to_owned(),
                "0123456789abcdef".to_owned(),
            ),
            ("POST_APPLICATION__WORKERS".to_owned(), "4".to_owned()),
            ("POST_DATABASE__MAX_CONNECTIONS".to_owned(), "4".to_owned()),
        ];
        let err = settings::load::<Settings>(None, vars).unwrap_err();
        assert!(err.contains("POST_DATABASE__MAX_CONNECTIONS"), "{err}");
        assert!(err.contains("at least 5"), "{err}");
    }

    #[test]
    fn a_missing_secret_stops_start_up_naming_the_setting() {
        let err = settings::load::<Settings>(None, Vec::new()).unwrap_err();
        assert!(err.contains("POST_AUTH__JWT_SECRET"), "{err}");
    }
}
