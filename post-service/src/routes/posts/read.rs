//! `GET /v1/posts/{id}` and `GET /v1/posts?limit=&cursor=`.
use super::{etag, view};
use crate::{error::ApiError, routes::AppState, store::posts};
use actix_web::{http::header, web, HttpResponse};
use anyhow::Context;
use infra::auth::Caller;
use proto::PostId;
use serde::Deserialize;
use uuid::Uuid;

#[utoipa::path(
    get,
    path = "/v1/posts/{id}",
    tag = "posts",
    params(("id" = uuid::Uuid, Path, description = "The post")),
    responses(
        (status = 200, description = "The post with its images in order", body = super::PostView,
         headers(("ETag" = String, description = "The post's version, for If-Match"))),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(post_id = %id))]
pub async fn get_post(
    _caller: Caller,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let post = posts::get(&state.pool, PostId(*id))
        .await
        .context("read post")?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&post)))
        .json(view(&post, &state.image_base_url)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Posts per page, 1 to 100 (default 20).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Newest first. `next_cursor` is opaque to clients (it is the last post's
/// id) and `null` on the last page.
#[utoipa::path(
    get,
    path = "/v1/posts",
    tag = "posts",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of posts, newest first", body = crate::openapi::PostPage),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit or cursor", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_posts(
    _caller: Caller,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be 1..={MAX_LIMIT}"
        )));
    }
    let cursor = match &query.cursor {
        None => None,
        Some(c) => Some(PostId(c.parse().map_err(|_| {
            ApiError::Validation("cursor is not one this API returned".into())
        })?)),
    };
    // One extra row tells whether another page exists.
    let mut page = posts::list(&state.pool, limit + 1, cursor)
        .await
        .context("list posts")?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next_cursor = if more {
        page.last().map(|p| p.id.to_string())
    } else {
        None
    };
    let items: Vec<_> = page
        .iter()
        .map(|p| view(p, &state.image_base_url))
        .collect();
    Ok(HttpResponse::Ok().json(crate::openapi::PostPage { items, next_cursor }))
}
