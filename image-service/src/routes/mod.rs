//! HTTP routes under `/v1`.
pub(crate) mod images;
pub(crate) mod presigned;
pub(crate) mod uploads;

use crate::{pipeline::Limits, processing::Processor, storage::ObjectStore};
use actix_web::web;
use infra::s3::S3Settings;
use proto::ImageId;
use sqlx::{postgres::PgConnectOptions, PgPool};

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

/// What every HTTP worker's [`AppState`] is made from.
#[derive(Clone)]
pub struct SharedState {
    pub limits: Limits,
    pub public_base_url: String,
    pub s3: S3Settings,
    pub processor: std::sync::Arc<Processor>,
}

impl SharedState {
    /// The state of one HTTP worker, with its own database pool of `size`
    /// and its own S3 client; call it on the worker's thread, whose runtime
    /// then drives their connections (`infra::db`).
    pub fn for_worker(&self, database: &PgConnectOptions, size: u32) -> AppState {
        AppState {
            pool: infra::db::lazy_pool(database, size),
            store: ObjectStore::new(self.s3.client(), self.s3.bucket.clone()),
            limits: self.limits,
            public_base_url: self.public_base_url.clone(),
            s3: self.s3.clone(),
            processor: self.processor.clone(),
        }
    }
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
