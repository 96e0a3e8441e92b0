//! The OpenAPI 3.1 description of the image API, generated from the
//! handlers' annotations and their body types, served at
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
    components(schemas(ProblemDoc, VariantDoc, OwnerDoc)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Errors as the operations list them.
pub type Problem = ProblemDoc;

/// The document as served and committed, rendered on first use.
static DOCUMENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(infra::openapi::render::<ApiDoc>);

/// `GET /openapi.json`.
pub async fn serve() -> actix_web::HttpResponse {
    infra::openapi::respond(DOCUMENT.as_str())
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
