//! The OpenAPI 3.1 description of the image API, generated from the
//! handlers' annotations and the body types below, served at
//! `/openapi.json` and committed as `docs/api/image-service.json`.
use crate::routes::{images, presigned, uploads};
use infra::openapi::{BearerAuth, ProblemDoc, VariantDoc};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "image-service",
        description = "Uploads (sniffed, limited from the header, stored before any post names \
                       them), the file lifecycle and the variants. Variant URLs are public; \
                       everything else needs a bearer token."
    ),
    paths(
        uploads::upload,
        presigned::presign,
        presigned::complete,
        images::get_image,
        images::reprocess,
        images::get_original,
        images::get_variant
    ),
    components(schemas(ProblemDoc, VariantDoc, UploadDoc, PresignedPostDoc, OwnerDoc)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Errors as the operations list them.
pub type Problem = ProblemDoc;

/// The document as served and committed.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// `GET /openapi.json`.
pub async fn serve() -> actix_web::HttpResponse {
    infra::openapi::respond(&document())
}

/// A stored upload, not yet named by any post.
#[derive(ToSchema)]
#[schema(as = Upload)]
#[allow(dead_code)]
pub struct UploadDoc {
    id: uuid::Uuid,
    /// `uploaded`.
    state: String,
    /// Sniffed from the bytes: `image/jpeg`, `image/png`, `image/webp` or `image/gif`.
    content_type: String,
    /// Displayed size (EXIF orientation applied).
    width: u32,
    height: u32,
    bytes: u64,
    /// Needs a token.
    original_url: String,
}

/// A presigned S3 POST: send `fields` and then the file as form data to
/// `url`, then call `POST /v1/uploads/{id}/complete`.
#[derive(ToSchema)]
#[schema(as = PresignedPost)]
#[allow(dead_code)]
pub struct PresignedPostDoc {
    id: uuid::Uuid,
    url: String,
    fields: std::collections::BTreeMap<String, String>,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The policy's `content-length-range` upper bound.
    max_bytes: u64,
}

/// Who an image belongs to once attached.
#[derive(ToSchema)]
#[schema(as = Owner)]
#[allow(dead_code)]
pub struct OwnerDoc {
    /// `post`.
    #[schema(rename = "type")]
    owner_type: String,
    id: uuid::Uuid,
}
