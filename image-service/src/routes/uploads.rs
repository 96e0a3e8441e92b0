//! `POST /v1/uploads`: raw body or multipart. The format is sniffed from the
//! bytes and the header checked against the limits before anything is
//! decoded. The row is committed before the S3 write, so no object can exist
//! that the database does not know about.
use super::AppState;
use crate::{
    error::ApiError,
    pipeline::{self, ProbeError},
    storage,
    store::images::{self, NewUpload},
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use anyhow::Context;
use futures::StreamExt;
use infra::auth::Caller;
use proto::ImageId;

/// Stores an image: the raw body, or a multipart form with a `file` part.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "uploads",
    request_body(content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "multipart/form-data")),
                 description = "The image bytes; the format is sniffed, never taken from names or headers"),
    responses(
        (status = 201, description = "Stored", body = Uploaded),
        (status = 400, description = "A multipart body without a `file` part", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over the byte, pixel or side limit", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JPEG, PNG, WebP, GIF, AVIF or HEIF (the detail names what it is)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A header that cannot be read", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The object store is unavailable; nothing was kept", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user, image_id = tracing::field::Empty))]
pub async fn upload(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let max = state.limits.max_bytes;
    let body = if is_multipart(&req) {
        read_multipart(&req, payload, max).await?
    } else {
        let declared = check_declared_length(&req, max)?;
        read_capped(payload, declared, max).await?
    };
    store_upload(&state, &caller, ImageId::new(), body).await
}

/// Checks `body` (format, header, limits), commits its row and then writes
/// it as the original. Shared by direct and presigned uploads.
pub(super) async fn store_upload(
    state: &AppState,
    caller: &Caller,
    id: ImageId,
    body: Vec<u8>,
) -> Result<HttpResponse, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("the upload is empty".into()));
    }
    if body.len() as u64 > state.limits.max_bytes {
        return Err(too_large(state.limits.max_bytes));
    }
    let format = pipeline::sniff(&body).map_err(|e| ApiError::UnsupportedFormat(e.0))?;
    let limits = state.limits;
    let probe = pipeline::probe(&body, format, &limits).map_err(|e| match e {
        ProbeError::TooLarge(m) => ApiError::TooLarge(m),
        ProbeError::Unreadable(m) => ApiError::Unreadable(m),
    })?;

    tracing::Span::current().record("image_id", tracing::field::display(id));
    let key = storage::original_key(id);
    images::insert_uploaded(
        &state.pool,
        &NewUpload {
            id,
            uploader: &caller.user,
            content_type: format.content_type(),
            width: probe.width,
            height: probe.height,
            bytes: body.len() as u64,
            original_key: &key,
        },
    )
    .await
    .context("insert image row")?;

    let size = body.len() as u64;
    if let Err(e) = state.store.put(&key, body, format.content_type()).await {
        // Nothing was stored (or a partial write will be overwritten by no
        // one): remove the row so the upload leaves no trace, and let the
        // client retry.
        if let Err(db) = images::delete_unstored(&state.pool, id).await {
            tracing::error!(error = %db, image_id = %id, "could not remove row of failed upload");
        }
        return Err(ApiError::StorageUnavailable(e.into()));
    }
    tracing::info!(image_id = %id, bytes = size, "upload stored");
    Ok(HttpResponse::Created().json(Uploaded {
        id,
        state: "uploaded",
        content_type: format.content_type(),
        width: probe.width,
        height: probe.height,
        bytes: size,
        original_url: state.original_url(id),
    }))
}

/// A stored upload, not yet named by any post.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Upload)]
pub struct Uploaded {
    #[schema(value_type = uuid::Uuid)]
    pub id: ImageId,
    /// `uploaded`.
    pub state: &'static str,
    /// Sniffed from the bytes: `image/jpeg`, `image/png`, `image/webp` or `image/gif`.
    pub content_type: &'static str,
    /// Displayed size (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Needs a token.
    pub original_url: String,
}

fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Refuses a declared length over `max`; returns the declared length.
fn check_declared_length(req: &HttpRequest, max: u64) -> Result<Option<u64>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max => Err(too_large(max)),
        _ => Ok(declared),
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the upload is larger than the limit of {max} bytes"
    ))
}

/// Reads the body, refusing as soon as it passes `max`. Once bytes arrive
/// the buffer is sized from the declared length (already checked against
/// `max`), so a large upload is not copied each time the buffer grows.
async fn read_capped(
    mut payload: web::Payload,
    declared: Option<u64>,
    max: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
        if body.capacity() == 0 {
            body.reserve(declared.unwrap_or(0).min(max) as usize);
        }
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the first file part of a multipart body (field `file`, or the
/// first part with a file name), within `max` bytes. The client's file name
/// is ignored.
async fn read_multipart(
    req: &HttpRequest,
    payload: web::Payload,
    max: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut multipart = actix_multipart::Multipart::new(req.headers(), payload.into_inner());
    while let Some(field) = multipart.next().await {
        let mut field =
            field.map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let disposition = field.content_disposition();
        let is_file =
            disposition.is_some_and(|d| d.get_name() == Some("file") || d.get_filename().is_some());
        let mut body = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
            if (body.len() + chunk.len()) as u64 > max {
                return Err(too_large(max));
            }
            if is_file {
                body.extend_from_slice(&chunk);
            }
        }
        if is_file {
            return Ok(body);
        }
    }
    Err(ApiError::BadRequest(
        "the multipart body has no `file` part".into(),
    ))
}
