//! `POST /v1/posts` and `GET /v1/posts/{id}`.
use super::AppState;
use crate::{
    domain::{ImageStatus, NewPost, Post},
    error::ApiError,
    store::posts,
};
use actix_web::{http::header, web, HttpResponse};
use anyhow::Context;
use infra::{auth::Caller, trace_context::TraceParent};
use proto::{ImageId, PostCreated, PostId};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePost {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    image_ids: Vec<ImageId>,
}

/// Writes the post, its image list and `post.created` in one transaction and
/// answers at once: the images show `processing` until the image service
/// reports back.
#[tracing::instrument(skip_all, fields(user_id = %caller.user, post_id = tracing::field::Empty))]
pub async fn create_post(
    caller: Caller,
    trace: TraceParent,
    request: web::Json<CreatePost>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = request.into_inner();
    let new = NewPost::parse(
        request.title,
        request.body,
        request.image_ids,
        state.max_images,
    )
    .map_err(ApiError::Validation)?;
    let id = PostId::new();
    tracing::Span::current().record("post_id", tracing::field::display(id));

    let mut tx = state.pool.begin().await.context("begin create post")?;
    posts::insert_post(&mut tx, id, &caller.user, &new)
        .await
        .context("insert post")?;
    let event = PostCreated {
        post_id: id,
        author_id: caller.user.clone(),
        image_ids: new.image_ids.clone(),
    };
    infra::outbox::write(&mut tx, &event, Some(&trace))
        .await
        .context("write post.created")?;
    tx.commit().await.context("commit create post")?;

    let post = posts::get(&state.pool, id)
        .await
        .context("read created post")?
        .context("created post vanished")?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/posts/{id}")))
        .insert_header((header::ETAG, etag(&post)))
        .json(view(&post, &state.image_base_url)))
}

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

fn etag(post: &Post) -> String {
    format!("\"{}\"", post.version)
}

/// The post as clients see it: images in order, the first is the thumbnail;
/// `original_url` at once, `variants` once ready.
fn view(post: &Post, image_base_url: &str) -> serde_json::Value {
    let base = image_base_url.trim_end_matches('/');
    let images: Vec<_> = post
        .images
        .iter()
        .map(|image| {
            serde_json::json!({
                "id": image.image_id,
                "status": image.status,
                "original_url": format!("{base}/v1/images/{}/original", image.image_id),
                "variants": if image.status == ImageStatus::Ready { image.variants.clone() } else { vec![] },
                "error": image.error,
            })
        })
        .collect();
    serde_json::json!({
        "id": post.id,
        "author_id": post.author,
        "title": post.title,
        "body": post.body,
        "version": post.version,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "thumbnail": images.first(),
        "images": images,
    })
}
