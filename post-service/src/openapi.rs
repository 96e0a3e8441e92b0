//! The OpenAPI 3.1 description of the posts API, generated from the
//! handlers' annotations and the request and response types, served at
//! `/openapi.json` and committed as `docs/api/post-service.json`.
use crate::routes::posts::{change, create, read, PostView};
use infra::openapi::{BearerAuth, ProblemDoc, VariantDoc};
use utoipa::{OpenApi, ToSchema};

/// Errors as the operations list them.
pub type Problem = ProblemDoc;

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
    components(schemas(ProblemDoc, VariantDoc, PostPage)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The document as served and committed, rendered on first use.
static DOCUMENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(infra::openapi::render::<ApiDoc>);

/// `GET /openapi.json`.
pub async fn serve() -> actix_web::HttpResponse {
    infra::openapi::respond(DOCUMENT.as_str())
}

/// A page of posts, newest first.
#[derive(serde::Serialize, ToSchema)]
pub struct PostPage {
    pub items: Vec<PostView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
