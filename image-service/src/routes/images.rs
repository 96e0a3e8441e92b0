//! Reading images: metadata, the original (authenticated) and variants
//! (public, immutable, cacheable).
use super::AppState;
use crate::{domain::ImageRecord, error::ApiError, storage};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use anyhow::Context;
use infra::auth::Caller;
use proto::ImageId;
use uuid::Uuid;

/// Variants never change under their key, so caches may keep them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// An image's states, variants and placeholder.
#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = uuid::Uuid, Path, description = "The image")),
    responses(
        (status = 200, description = "The image", body = ImageView),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(image_id = %id))]
pub async fn get_image(
    _caller: Caller,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let record = crate::store::images::get(&state.pool, ImageId(*id))
        .await
        .context("read image")?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view(&record, &state)))
}

/// An image as the API shows it: its file state, its processing state and
/// its variants.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Image)]
pub struct ImageView<'a> {
    #[schema(value_type = Uuid)]
    pub id: ImageId,
    /// `uploaded`, `attached`, `abandoned` or `deleted`.
    #[schema(value_type = String)]
    pub state: crate::domain::FileState,
    /// `pending`, `processing`, `ready` or `failed`.
    #[schema(value_type = String)]
    pub process_status: crate::domain::ProcessStatus,
    /// The post it is attached to, once attached.
    #[schema(value_type = Option<crate::openapi::OwnerDoc>)]
    pub owner: &'a Option<proto::Owner>,
    /// Needs a token.
    pub original_url: String,
    /// WebP variants once `ready`; AVIF ones follow when enabled.
    #[schema(value_type = Vec<infra::openapi::VariantDoc>)]
    pub variants: &'a [proto::Variant],
    /// Displayed size (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    /// A ThumbHash (base64) to paint before any variant loads.
    pub placeholder: Option<&'a str>,
    pub content_type: &'a str,
    pub bytes: u64,
    /// Processing attempts so far.
    pub attempts: i32,
    /// Why processing failed.
    pub error: Option<&'a str>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn view<'a>(record: &'a ImageRecord, state: &AppState) -> ImageView<'a> {
    ImageView {
        id: record.id,
        state: record.state,
        process_status: record.process_status,
        owner: &record.owner,
        original_url: state.original_url(record.id),
        variants: &record.variants,
        width: record.width,
        height: record.height,
        placeholder: record.placeholder.as_deref(),
        content_type: &record.content_type,
        bytes: record.bytes,
        attempts: record.attempts,
        error: record.last_error.as_deref(),
        created_at: record.created_at,
    }
}

/// Scope that lets internal services act on any image.
const ADMIN_SCOPE: &str = "images:admin";

/// Rebuilds an attached image's variants (after a failure, or when presets
/// changed). Answers `202` at once; the work runs in the background and
/// ends with `image.processed`, like the first build.
#[utoipa::path(
    post,
    path = "/v1/images/{id}/reprocess",
    tag = "images",
    params(("id" = uuid::Uuid, Path, description = "The image")),
    responses(
        (status = 202, description = "Rebuilding; ends with `image.processed`", body = ImageView),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only the uploader or an images:admin token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Only attached images whose processing finished", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(image_id = %id))]
pub async fn reprocess(
    caller: Caller,
    trace: infra::trace_context::TraceParent,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = ImageId(*id);
    let record = crate::store::images::get(&state.pool, id)
        .await
        .context("read image")?
        .ok_or(ApiError::NotFound)?;
    if record.uploader != caller.user && !caller.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        return Err(ApiError::Forbidden(
            "only the uploader or an images:admin token may reprocess".into(),
        ));
    }
    let Some(record) = crate::store::images::request_reprocess(&state.pool, id)
        .await
        .context("request reprocess")?
    else {
        return Err(ApiError::Conflict(format!(
            "only attached images whose processing has finished can be reprocessed (state {}, process_status {})",
            record.state.as_str(),
            record.process_status.as_str()
        )));
    };
    let processor = state.processor.clone();
    tokio::spawn(async move {
        if let Err(e) = processor.process_image(id, &trace).await {
            tracing::warn!(image_id = %id, error = %format_args!("{e:#}"), "reprocess failed; the stalled-image resumer retries it");
        }
    });
    Ok(HttpResponse::Accepted().json(view(&record, &state)))
}

/// The original bytes; originals are private, so a token is required.
#[utoipa::path(
    get,
    path = "/v1/images/{id}/original",
    tag = "images",
    params(("id" = uuid::Uuid, Path, description = "The image"), ("If-None-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The original bytes (private cache)", content_type = "image/*", body = Vec<u8>,
         headers(("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(image_id = %id))]
pub async fn get_original(
    req: HttpRequest,
    _caller: Caller,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let record = crate::store::images::get(&state.pool, ImageId(*id))
        .await
        .context("read image")?
        .ok_or(ApiError::NotFound)?;
    serve(&req, &state, &record.original_key, "private, max-age=3600").await
}

/// A variant: `GET /v1/images/{id}/variants/1x.webp` (or `.avif`), or
/// `…/variants/1x`, which answers AVIF to clients whose `Accept` names
/// `image/avif` (once it is built) and WebP to the others.
#[utoipa::path(
    get,
    path = "/v1/images/{id}/variants/{file}",
    tag = "images",
    security(()),
    params(("id" = uuid::Uuid, Path, description = "The image"),
           ("file" = String, Path, description = "`1x.webp`, `1x.avif`, or `1x` to negotiate by Accept"),
           ("Accept" = Option<String>, Header, description = "`image/avif` picks AVIF on the negotiated URL"),
           ("If-None-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The variant; immutable by extension, a day when negotiated (Vary: Accept)",
         content((Vec<u8> = "image/webp"), (Vec<u8> = "image/avif")),
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such image or variant", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(image_id = %path.0))]
pub async fn get_variant(
    req: HttpRequest,
    path: web::Path<(Uuid, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, file) = path.into_inner();
    let id = ImageId(id);
    let (name, extension) = match file.rsplit_once('.') {
        Some((name, extension)) => (name, Some(extension)),
        None => (file.as_str(), None),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ApiError::NotFound);
    }
    match extension {
        Some(format) if storage::VARIANT_FORMATS.contains(&format) => {
            serve(
                &req,
                &state,
                &storage::variant_key(id, name, format),
                IMMUTABLE,
            )
            .await
        }
        Some(_) => Err(ApiError::NotFound),
        None => {
            let avif = if accepts_avif(&req) {
                let key = storage::variant_key(id, name, "avif");
                match serve(&req, &state, &key, NEGOTIATED).await {
                    Err(ApiError::NotFound) => None,
                    other => Some(other),
                }
            } else {
                None
            };
            let webp = storage::variant_key(id, name, "webp");
            let mut response = match avif {
                Some(response) => response?,
                None => serve(&req, &state, &webp, NEGOTIATED).await?,
            };
            response
                .headers_mut()
                .insert(header::VARY, header::HeaderValue::from_static("Accept"));
            Ok(response)
        }
    }
}

/// The answer of a negotiated URL can change (AVIF appears after WebP), so
/// it is cached for a day, per `Accept`.
const NEGOTIATED: &str = "public, max-age=86400";

/// Whether `Accept` names `image/avif` with a non-zero quality.
fn accepts_avif(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let refused = |p: &str| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            };
            parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("image/avif"))
                && !parts.any(refused)
        })
}

async fn serve(
    req: &HttpRequest,
    state: &AppState,
    key: &str,
    cache: &str,
) -> Result<HttpResponse, ApiError> {
    let object = state
        .store
        .get(key)
        .await
        .map_err(|e| ApiError::StorageUnavailable(e.into()))?
        .ok_or(ApiError::NotFound)?;
    if let (Some(tag), Some(wanted)) = (&object.e_tag, req.headers().get(header::IF_NONE_MATCH)) {
        if wanted
            .to_str()
            .is_ok_and(|w| w.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
        {
            return Ok(HttpResponse::NotModified()
                .insert_header((header::ETAG, tag.as_str()))
                .insert_header((header::CACHE_CONTROL, cache))
                .finish());
        }
    }
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, cache));
    response.insert_header((
        header::CONTENT_TYPE,
        object
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    ));
    if let Some(tag) = &object.e_tag {
        response.insert_header((header::ETAG, tag.as_str()));
    }
    Ok(response.body(object.bytes))
}
