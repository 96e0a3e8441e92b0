//! HTTP routes under `/v1`.
pub(crate) mod images;
pub(crate) mod presigned;
pub(crate) mod uploads;

use crate::{pipeline::Limits, processing::Processor, storage::ObjectStore};
use actix_web::web;
use infra::s3::S3Settings;
use proto::ImageId;
use sqlx::PgPool;

/// What handlers share.
pub struct AppState {
    pub pool: PgPool,
    pub store: ObjectStore,
    pub limits: Limits,
    pub public_base_url: String,
    /// For signing presigned POST policies.
    pub s3: S3Settings,
    /// Runs reprocessing requests.
    pub processor: std::sync::Arc<Processor>,
}

impl AppState {
    pub fn original_url(&self, id: ImageId) -> String {
        original_url(&self.public_base_url, id)
    }
}

pub fn original_url(base: &str, id: ImageId) -> String {
    format!("{}/v1/images/{id}/original", base.trim_end_matches('/'))
}

pub fn variant_url(base: &str, id: ImageId, name: &str, extension: &str) -> String {
    format!(
        "{}/v1/images/{id}/variants/{name}.{extension}",
        base.trim_end_matches('/')
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(crate::openapi::serve));
    cfg.service(
        web::scope("/v1")
            .route("/uploads", web::post().to(uploads::upload))
            .route("/uploads/presign", web::post().to(presigned::presign))
            .route(
                "/uploads/{id}/complete",
                web::post().to(presigned::complete),
            )
            .route("/images/{id}", web::get().to(images::get_image))
            .route("/images/{id}/original", web::get().to(images::get_original))
            .route("/images/{id}/reprocess", web::post().to(images::reprocess))
            .route(
                "/images/{id}/variants/{file}",
                web::get().to(images::get_variant),
            ),
    );
}
