//! `POST /v1/posts`, with `Idempotency-Key`.
use super::{etag, rollback, view};
use crate::{
    domain::NewPost,
    error::ApiError,
    routes::AppState,
    store::{
        idempotency::{self, Claim},
        posts,
    },
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use anyhow::Context;
use infra::{auth::Caller, trace_context::TraceParent};
use proto::{ImageId, PostCreated, PostId};
use serde::{Deserialize, Serialize};

/// A new post; `image_ids` are the caller's uploads, in display order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePost {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    image_ids: Vec<ImageId>,
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Writes the post, its image list and `post.created` in one transaction and
/// answers at once: the images show `processing` until the image service
/// reports back. With an `Idempotency-Key`, a retry of the same request gets
/// the first answer and writes nothing.
#[utoipa::path(
    post,
    path = "/v1/posts",
    tag = "posts",
    request_body = CreatePost,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the first answer; the same key with another body is 422")),
    responses(
        (status = 201, description = "Created; its images show `processing`", body = super::PostView,
         headers(("ETag" = String, description = "The post's version"), ("Location" = String))),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body, unknown fields, too many or repeated images, or a reused Idempotency-Key", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user, post_id = tracing::field::Empty))]
pub async fn create_post(
    req: HttpRequest,
    caller: Caller,
    trace: TraceParent,
    request: web::Json<CreatePost>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let request = request.into_inner();
    let fingerprint = serde_json::to_value(&request).context("serialise request")?;
    let new = NewPost::parse(
        request.title,
        request.body,
        request.image_ids,
        state.max_images,
    )
    .map_err(ApiError::Validation)?;

    let id = PostId::new();
    tracing::Span::current().record("post_id", tracing::field::display(id));
    let result = create_in_transaction(
        &state,
        &caller,
        &trace,
        id,
        &new,
        key.as_deref(),
        &fingerprint,
    )
    .await;
    if let Err(ApiError::Unexpected(_)) = &result {
        rollback::report(&state.pool, id, &new.image_ids, &trace).await;
    }
    result
}

#[tracing::instrument(name = "transaction", skip_all, fields(post_id = %id))]
async fn create_in_transaction(
    state: &AppState,
    caller: &Caller,
    trace: &TraceParent,
    id: PostId,
    new: &NewPost,
    key: Option<&str>,
    fingerprint: &serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let mut tx = state.pool.begin().await.context("begin create post")?;
    if let Some(key) = key {
        match idempotency::claim(&mut tx, &caller.user, key, fingerprint)
            .await
            .context("claim idempotency key")?
        {
            Claim::New => {}
            Claim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
            Claim::Replay { status, body } => {
                tracing::info!("replaying the first answer for this Idempotency-Key");
                let status =
                    actix_web::http::StatusCode::from_u16(status).context("stored status")?;
                return Ok(HttpResponse::build(status)
                    .insert_header(("Idempotent-Replayed", "true"))
                    .json(body));
            }
        }
    }
    let post = posts::insert_post(&mut tx, id, &caller.user, new)
        .await
        .context("insert post")?;
    let event = PostCreated {
        post_id: id,
        author_id: caller.user.clone(),
        image_ids: new.image_ids.clone(),
    };
    infra::outbox::write(&mut tx, &event, Some(trace))
        .await
        .context("write post.created")?;
    let body =
        serde_json::to_value(view(&post, &state.image_base_url)).context("serialise the post")?;
    if let Some(key) = key {
        idempotency::save_response(&mut tx, &caller.user, key, 201, &body)
            .await
            .context("save idempotent response")?;
    }
    tx.commit().await.context("commit create post")?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/posts/{id}")))
        .insert_header((header::ETAG, etag(&post)))
        .json(body))
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::Validation("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(key.to_owned()))
}
