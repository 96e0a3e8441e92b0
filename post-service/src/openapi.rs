//! The OpenAPI 3.1 description of the posts API, generated from the
//! handlers' annotations and the request and response types, served at
//! `/openapi.json` and committed as `docs/api/post-service.json`.
use crate::routes::posts::{change, create, read, PostView};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "post-service",
        description = "Posts with ordered images. Writes commit the post and its event in one \
                       transaction; image variants appear as the image service reports them."
    ),
    paths(
        create::create_post,
        read::get_post,
        read::list_posts,
        change::patch_post,
        change::delete_post
    ),
    components(schemas(Problem, VariantDoc, PostPage)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as served and committed.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// `GET /openapi.json`.
pub async fn serve() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256 JWT; `sub` is the caller (the author)."))
                    .build(),
            ),
        );
    }
}

/// An error: RFC 9457 problem details (`application/problem+json`). `type`
/// is stable: `/problems/validation`, `/problems/not-found`,
/// `/problems/forbidden`, `/problems/stale-version`,
/// `/problems/idempotency-key-reused`, `/problems/unauthorized`,
/// `/problems/malformed-json`, `/problems/internal`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    #[schema(rename = "type", example = "/problems/validation")]
    problem_type: String,
    title: String,
    status: u16,
    detail: Option<String>,
}

/// One variant of a ready image.
#[derive(ToSchema)]
#[schema(as = Variant)]
#[allow(dead_code)]
pub struct VariantDoc {
    /// Preset name, e.g. `1x`.
    name: String,
    /// `webp` (or `avif`).
    format: String,
    width: u32,
    height: u32,
    bytes: u64,
    /// Public, immutable URL of the bytes.
    url: String,
}

/// A page of posts, newest first.
#[derive(serde::Serialize, ToSchema)]
pub struct PostPage {
    pub items: Vec<PostView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
