//! The image service's settings (`IMAGE_` prefix).
use crate::{
    pipeline::{Limits, Preset},
    sweeper::SweepSettings,
};
use infra::{auth::AuthSettings, s3::S3Settings, settings, telemetry::LogSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub application: ApplicationSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub auth: AuthSettings,
    pub s3: S3Settings,
    pub limits: Limits,
    pub variants: VariantSettings,
    pub workers: WorkerSettings,
    pub sweeper: SweepSettings,
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
    /// Base of the URLs handed out for originals and variants.
    pub public_base_url: String,
}

impl Default for ApplicationSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8081,
            workers: 0,
            public_base_url: "http://127.0.0.1:8081".into(),
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
            url: "postgres://postgres@127.0.0.1:5432/images".into(),
            // amqp.concurrency handlers, the builds, uploads and the sweeper.
            max_connections: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    pub url: String,
    /// Post events handled at once (and the prefetch). Handlers are one
    /// short transaction each (builds run from the build queue), mostly
    /// waiting on PostgreSQL; with 4 of them the consumer fell behind a
    /// busy post service and deliveries waited seconds in the queue
    /// (docs/PERFORMANCE.md, "What was tuned").
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
pub struct VariantSettings {
    /// `name:width` pairs.
    pub presets: Vec<String>,
    /// Lossy WebP quality, 0–100.
    pub webp_quality: f32,
    /// Also build AVIF variants (after the WebP ones are ready).
    pub avif: bool,
    /// AVIF quality, 1–100.
    pub avif_quality: f32,
    /// AVIF encoder speed, 1 (slowest, smallest) to 10.
    pub avif_speed: u8,
}

impl Default for VariantSettings {
    fn default() -> Self {
        Self {
            presets: vec!["1x:400".into(), "2x:800".into(), "large:1600".into()],
            webp_quality: 80.0,
            // Off by default: rav1e takes seconds per 12 MP photo on one
            // core, even with its assembly, and the work shares the image
            // permits with the WebP builds (see README).
            avif: false,
            avif_quality: 60.0,
            avif_speed: 8,
        }
    }
}

impl VariantSettings {
    /// The AVIF encoding, when AVIF variants are built.
    pub fn avif(&self) -> Option<crate::pipeline::avif::AvifSettings> {
        self.avif.then_some(crate::pipeline::avif::AvifSettings {
            quality: self.avif_quality,
            speed: self.avif_speed,
        })
    }

    /// The parsed presets; `validate` has checked they parse.
    pub fn parsed(&self) -> Vec<Preset> {
        self.presets
            .iter()
            .filter_map(|p| parse_preset(p).ok())
            .collect()
    }
}

fn parse_preset(text: &str) -> Result<Preset, String> {
    let (name, width) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not name:width"))?;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "preset name `{name}` must be letters, digits, - or _"
        ));
    }
    let width: u32 = width
        .parse()
        .map_err(|_| format!("preset width `{width}` is not a number"))?;
    if !(1..=16_384).contains(&width) {
        return Err(format!("preset width {width} must be 1..=16384"));
    }
    Ok(Preset {
        name: name.to_owned(),
        width,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Images processed at once (decode, resize, encode run on this many
    /// blocking threads); 0 means one per CPU core.
    pub images_in_flight: usize,
    /// How often the build queue (attached images still pending) is
    /// checked when no event names new work.
    pub queue_poll_ms: u64,
    /// The build threads' `nice` value, 0–19: higher leaves more of a busy
    /// machine to requests, events and the databases.
    pub build_niceness: i32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            images_in_flight: 0,
            queue_poll_ms: 1000,
            build_niceness: 10,
        }
    }
}

impl WorkerSettings {
    pub fn images_in_flight(&self) -> usize {
        if self.images_in_flight > 0 {
            self.images_in_flight
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
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
    const PREFIX: &'static str = "IMAGE";
    const PROGRAM: &'static str = "image-service";
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
        (
            "application.public_base_url",
            "Base URL of this service in the URLs it hands out.",
        ),
        ("database.url", "PostgreSQL URL of the image database."),
        (
            "database.max_connections",
            "Most connections the service opens, split evenly between a pool per HTTP worker and one for background work (which gets the remainder).",
        ),
        ("amqp.url", "RabbitMQ URL, with vhost."),
        (
            "amqp.concurrency",
            "Post events handled at once (prefetch).",
        ),
        (
            "auth.jwt_secret",
            "HS256 key for bearer tokens (at least 16 bytes). Secret.",
        ),
        ("auth.issuer", "Required `iss` of tokens."),
        ("auth.audience", "Required `aud` of tokens."),
        (
            "s3.endpoint",
            "S3-compatible endpoint URL; empty for AWS S3.",
        ),
        ("s3.region", "S3 region."),
        ("s3.bucket", "Bucket for originals and variants."),
        ("s3.access_key_id", "S3 access key id."),
        ("s3.secret_access_key", "S3 secret access key. Secret."),
        (
            "s3.force_path_style",
            "Path-style addressing (needed by most local S3 servers).",
        ),
        ("limits.max_bytes", "Largest accepted upload, in bytes."),
        ("limits.max_pixels", "Largest accepted width x height."),
        ("limits.max_side", "Largest accepted width or height."),
        ("limits.max_decode_bytes", "Memory one decode may allocate."),
        (
            "variants.presets",
            "Variant presets as name:width, comma-separated.",
        ),
        ("variants.webp_quality", "Lossy WebP quality, 0-100."),
        (
            "variants.avif",
            "Also build AVIF variants, after the WebP ones are ready (costly: see README).",
        ),
        ("variants.avif_quality", "AVIF quality, 1-100."),
        (
            "variants.avif_speed",
            "AVIF encoder speed, 1 (slowest, smallest files) to 10 (fastest).",
        ),
        (
            "workers.images_in_flight",
            "Images processed at once; 0 = one per CPU core.",
        ),
        (
            "workers.queue_poll_ms",
            "How often the build queue (attached images still pending, shared by all instances) is checked when no event names new work.",
        ),
        (
            "workers.build_niceness",
            "The nice value (0-19) of the threads that build variants: higher leaves more of a busy machine to requests, events and the databases, and builds take longer under load.",
        ),
        (
            "sweeper.enabled",
            "Run the sweeper in this process (false where another replica sweeps).",
        ),
        (
            "sweeper.interval_secs",
            "Seconds between sweeps for unused files.",
        ),
        (
            "sweeper.upload_ttl_secs",
            "Uploads never attached are deleted after this many seconds.",
        ),
        (
            "sweeper.abandoned_grace_secs",
            "Abandoned files are deleted after this many seconds.",
        ),
        ("sweeper.batch_size", "Files deleted per sweep batch."),
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
        self.s3.validate(Self::PREFIX)?;
        if self.variants.presets.is_empty() {
            return Err(
                "setting variants.presets (IMAGE_VARIANTS__PRESETS) needs at least one preset"
                    .into(),
            );
        }
        for preset in &self.variants.presets {
            parse_preset(preset)
                .map_err(|e| format!("setting variants.presets (IMAGE_VARIANTS__PRESETS): {e}"))?;
        }
        if !(0.0..=100.0).contains(&self.variants.webp_quality) {
            return Err(
                "setting variants.webp_quality (IMAGE_VARIANTS__WEBP_QUALITY) must be 0..=100"
                    .into(),
            );
        }
        if !(1.0..=100.0).contains(&self.variants.avif_quality) {
            return Err(
                "setting variants.avif_quality (IMAGE_VARIANTS__AVIF_QUALITY) must be 1..=100"
                    .into(),
            );
        }
        if !(1..=10).contains(&self.variants.avif_speed) {
            return Err(
                "setting variants.avif_speed (IMAGE_VARIANTS__AVIF_SPEED) must be 1..=10".into(),
            );
        }
        if self.limits.max_bytes == 0 || self.limits.max_pixels == 0 || self.limits.max_side == 0 {
            return Err("settings limits.* (IMAGE_LIMITS__*) must be positive".into());
        }
        if self.sweeper.interval_secs == 0 || self.sweeper.batch_size == 0 {
            return Err("settings sweeper.interval_secs and sweeper.batch_size (IMAGE_SWEEPER__*) must be positive".into());
        }
        if !(0..=19).contains(&self.workers.build_niceness) {
            return Err(
                "setting workers.build_niceness (IMAGE_WORKERS__BUILD_NICENESS) must be 0..=19"
                    .into(),
            );
        }
        if self.workers.queue_poll_ms == 0 {
            return Err(
                "setting workers.queue_poll_ms (IMAGE_WORKERS__QUEUE_POLL_MS) must be positive"
                    .into(),
            );
        }
        self.pool_budget().map_err(|e| {
            format!(
                "settings database.max_connections and application.workers \
                 (IMAGE_DATABASE__MAX_CONNECTIONS, IMAGE_APPLICATION__WORKERS): {e}"
            )
        })?;
        if self.amqp.concurrency == 0 {
            return Err(
                "setting amqp.concurrency (IMAGE_AMQP__CONCURRENCY) must be positive".into(),
            );
        }
        let base = &self.application.public_base_url;
        if !base.is_empty() && !base.starts_with("http") {
            return Err("setting application.public_base_url (IMAGE_APPLICATION__PUBLIC_BASE_URL) must be an http(s) URL, or empty for this server's own address".into());
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
    fn presets_parse_and_bad_ones_name_the_setting() {
        assert_eq!(
            VariantSettings::default().parsed(),
            vec![
                Preset {
                    name: "1x".into(),
                    width: 400
                },
                Preset {
                    name: "2x".into(),
                    width: 800
                },
                Preset {
                    name: "large".into(),
                    width: 1600
                },
            ]
        );
        let env = vec![
            (
                "IMAGE_AUTH__JWT_SECRET".to_string(),
                "0123456789abcdef0123".to_string(),
            ),
            ("IMAGE_S3__ACCESS_KEY_ID".to_string(), "k".to_string()),
            ("IMAGE_S3__SECRET_ACCESS_KEY".to_string(), "s".to_string()),
            (
                "IMAGE_VARIANTS__PRESETS".to_string(),
                "1x:400,bad".to_string(),
            ),
        ];
        let err = settings::load::<Settings>(None, env).unwrap_err();
        assert!(err.contains("IMAGE_VARIANTS__PRESETS"), "{err}");
    }

    #[test]
    fn a_build_niceness_outside_the_nice_range_names_the_setting() {
        let env = |niceness: &str| {
            vec![
                ("IMAGE_AUTH__JWT_SECRET", "0123456789abcdef0123"),
                ("IMAGE_S3__ACCESS_KEY_ID", "k"),
                ("IMAGE_S3__SECRET_ACCESS_KEY", "s"),
                ("IMAGE_WORKERS__BUILD_NICENESS", niceness),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
        };
        let loaded = settings::load::<Settings>(None, env("19")).unwrap();
        assert_eq!(loaded.workers.build_niceness, 19);
        for bad in ["20", "-1"] {
            let err = settings::load::<Settings>(None, env(bad)).unwrap_err();
            assert!(
                err.contains("IMAGE_WORKERS__BUILD_NICENESS"),
                "{bad}: {err}"
            );
        }
    }
}
