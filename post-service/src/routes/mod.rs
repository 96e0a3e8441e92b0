//! HTTP routes under `/v1`.
pub(crate) mod posts;

use actix_web::web;
use sqlx::PgPool;

/// What handlers share.
pub struct AppState {
    pub pool: PgPool,
    pub image_base_url: String,
    pub max_images: usize,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(crate::openapi::serve));
    cfg.service(
        web::scope("/v1")
            .route("/posts", web::post().to(posts::create_post))
            .route("/posts", web::get().to(posts::list_posts))
            .route("/posts/{id}", web::get().to(posts::get_post))
            .route("/posts/{id}", web::patch().to(posts::patch_post))
            .route("/posts/{id}", web::delete().to(posts::delete_post)),
    );
}
