//! Plumbing shared by the three programs: layered settings, telemetry, JWT
//! authentication, problem+json errors, the transactional outbox and inbox,
//! AMQP helpers, S3 client set-up, W3C trace context and graceful shutdown.
//! Nothing here knows about posts or images.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod auth;
pub mod db;
pub mod health;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod problem;
pub mod s3;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

#[cfg(feature = "testing")]
pub mod testing;

/// Runs the shared migrations (outbox, inbox) and then the service's own.
/// Both migrators ignore each other's versions, so they share one history
/// table without conflict.
pub async fn migrate(
    pool: &sqlx::PgPool,
    service: &sqlx::migrate::Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    outbox::migrate(pool).await?;
    let mut own = sqlx::migrate::Migrator {
        migrations: service.migrations.clone(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    own.set_ignore_missing(true);
    own.run(pool).await
}
