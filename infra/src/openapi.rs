//! What both services' OpenAPI documents share: the bearer scheme, the
//! problem+json body, the variant shape, and serving the document.
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, ToSchema,
};

/// Adds the `bearer` security scheme (HS256 JWT).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with issuer and audience from the settings; `sub` is the caller.",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error: RFC 9457 problem details, served as `application/problem+json`
/// with a stable `type` (`/problems/<slug>`), e.g. `/problems/not-found`,
/// `/problems/unauthorized`, `/problems/malformed-json`, `/problems/internal`;
/// each operation lists its own.
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    #[schema(rename = "type", example = "/problems/not-found")]
    problem_type: String,
    title: String,
    status: u16,
    detail: Option<String>,
}

/// One stored variant of an image.
#[derive(ToSchema)]
#[schema(as = Variant)]
#[allow(dead_code)]
pub struct VariantDoc {
    /// Preset name, e.g. `1x`.
    name: String,
    /// `webp` or `avif`.
    format: String,
    width: u32,
    height: u32,
    bytes: u64,
    /// Public, immutable URL of the bytes.
    url: String,
}

/// The document as served and committed (pretty JSON).
pub fn render<T: utoipa::OpenApi>() -> String {
    T::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// `GET /openapi.json` of a document rendered once.
pub fn respond(document: &'static str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(document)
}
