//! `PATCH /v1/posts/{id}` and `DELETE /v1/posts/{id}`: author only, guarded
//! by `If-Match`, each change and its event in one transaction.
use super::{etag, rollback, view};
use crate::{
    domain::{Post, PostPatch},
    error::ApiError,
    routes::AppState,
    store::posts,
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use anyhow::Context;
use infra::{auth::Caller, trace_context::TraceParent};
use proto::{ImageId, PostDeleted, PostId, PostUpdated};
use serde::Deserialize;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// Changes to a post; `image_ids` is the final ordered list. Fields left
/// out stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPost {
    title: Option<String>,
    body: Option<String>,
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    image_ids: Option<Vec<ImageId>>,
}

#[utoipa::path(
    patch,
    path = "/v1/posts/{id}",
    tag = "posts",
    request_body = PatchPost,
    params(("id" = uuid::Uuid, Path, description = "The post"), ("If-Match" = Option<String>, Header, description = "The ETag read; a stale one is 412")),
    responses(
        (status = 200, description = "The changed post (an unchanged request writes nothing)", body = super::PostView,
         headers(("ETag" = String, description = "The post's new version"))),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the author may change the post", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names an older version", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user, post_id = %id))]
pub async fn patch_post(
    req: HttpRequest,
    caller: Caller,
    trace: TraceParent,
    id: web::Path<Uuid>,
    request: web::Json<PatchPost>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = request.into_inner();
    let patch = PostPatch::parse(
        request.title,
        request.body,
        request.image_ids,
        state.max_images,
    )
    .map_err(ApiError::Validation)?;
    let post_id = PostId(*id);
    let result = patch_in_transaction(&req, &caller, &trace, post_id, &patch, &state).await;
    if let (Err(ApiError::Unexpected(_)), Some(named)) = (&result, &patch.image_ids) {
        rollback::report(&state.pool, post_id, named, &trace).await;
    }
    result
}

async fn patch_in_transaction(
    req: &HttpRequest,
    caller: &Caller,
    trace: &TraceParent,
    id: PostId,
    patch: &PostPatch,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let mut tx = state.pool.begin().await.context("begin patch")?;
    let post = lock_for_change(&mut tx, id, caller, req).await?;
    if patch.is_noop_for(&post) {
        // Nothing changes: no version bump, no event.
        return Ok(respond(HttpResponse::Ok(), &post, state));
    }
    let title = patch.title.as_deref().unwrap_or(&post.title);
    let body = patch.body.as_deref().unwrap_or(&post.body);
    posts::update_text(&mut tx, post.id, title, body)
        .await
        .context("update post")?;
    if let Some(image_ids) = &patch.image_ids {
        posts::replace_images(&mut tx, &post, image_ids)
            .await
            .context("replace images")?;
    }
    let updated = posts::lock(&mut tx, post.id)
        .await
        .context("read updated post")?
        .context("updated post vanished")?;
    let event = PostUpdated {
        post_id: post.id,
        author_id: post.author.clone(),
        image_ids: updated.images.iter().map(|i| i.image_id).collect(),
    };
    infra::outbox::write(&mut tx, &event, Some(trace))
        .await
        .context("write post.updated")?;
    tx.commit().await.context("commit patch")?;
    Ok(respond(HttpResponse::Ok(), &updated, state))
}

#[utoipa::path(
    delete,
    path = "/v1/posts/{id}",
    tag = "posts",
    params(("id" = uuid::Uuid, Path, description = "The post"), ("If-Match" = Option<String>, Header, description = "The ETag read; a stale one is 412")),
    responses(
        (status = 204, description = "Deleted; its images are abandoned"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the author may delete the post", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names an older version", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user, post_id = %id))]
pub async fn delete_post(
    req: HttpRequest,
    caller: Caller,
    trace: TraceParent,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut tx = state.pool.begin().await.context("begin delete")?;
    let post = lock_for_change(&mut tx, PostId(*id), &caller, &req).await?;
    posts::delete(&mut tx, post.id)
        .await
        .context("delete post")?;
    infra::outbox::write(&mut tx, &PostDeleted { post_id: post.id }, Some(&trace))
        .await
        .context("write post.deleted")?;
    tx.commit().await.context("commit delete")?;
    Ok(HttpResponse::NoContent().finish())
}

/// Locks the post and checks existence, authorship and `If-Match`.
async fn lock_for_change(
    tx: &mut Transaction<'_, Postgres>,
    id: PostId,
    caller: &Caller,
    req: &HttpRequest,
) -> Result<Post, ApiError> {
    let post = posts::lock(tx, id)
        .await
        .context("lock post")?
        .ok_or(ApiError::NotFound)?;
    if post.author != caller.user {
        return Err(ApiError::Forbidden);
    }
    if let Some(wanted) = req.headers().get(header::IF_MATCH) {
        let current = etag(&post);
        let matches = wanted.to_str().is_ok_and(|w| {
            w.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == current || t == format!("W/{current}"))
        });
        if !matches {
            return Err(ApiError::PreconditionFailed {
                current_etag: current,
            });
        }
    }
    Ok(post)
}

fn respond(
    mut builder: actix_web::HttpResponseBuilder,
    post: &Post,
    state: &AppState,
) -> HttpResponse {
    builder
        .insert_header((header::ETAG, etag(post)))
        .json(view(post, &state.image_base_url))
}
