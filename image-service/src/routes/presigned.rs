//! Presigned uploads: `POST /v1/uploads/presign` hands out a POST policy for
//! the staging key `uploads/<id>`; `POST /v1/uploads/{id}/complete` verifies
//! what arrived exactly like a direct upload before it becomes an image.
use super::{uploads::store_upload, AppState};
use crate::{error::ApiError, presign::presign_post, storage, store::pending};
use actix_web::{web, HttpResponse};
use anyhow::Context;
use chrono::{Duration, Utc};
use infra::auth::Caller;
use proto::ImageId;
use uuid::Uuid;

/// How long a presigned policy stays usable.
const VALID_FOR_MINUTES: i64 = 15;

/// A presigned S3 POST for a direct upload, limited to the byte limit.
#[utoipa::path(
    post,
    path = "/v1/uploads/presign",
    tag = "uploads",
    responses(
        (status = 201, description = "The policy; valid for 15 minutes", body = Presigned),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user))]
pub async fn presign(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = ImageId::new();
    let key = storage::staging_key(id);
    let now = Utc::now();
    let valid_for = Duration::minutes(VALID_FOR_MINUTES);
    // Committed before the client can write the object.
    pending::insert(&state.pool, id, &caller.user, &key, now + valid_for)
        .await
        .context("record pending upload")?;
    let post = presign_post(&state.s3, &key, state.limits.max_bytes, valid_for, now);
    Ok(HttpResponse::Created().json(Presigned {
        id,
        url: post.url,
        fields: post.fields,
        expires_at: post.expires_at,
        max_bytes: state.limits.max_bytes,
    }))
}

/// A presigned S3 POST: send `fields` and then the file as form data to
/// `url`, then call `POST /v1/uploads/{id}/complete`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PresignedPost)]
pub struct Presigned {
    #[schema(value_type = Uuid)]
    pub id: ImageId,
    pub url: String,
    pub fields: std::collections::BTreeMap<String, String>,
    pub expires_at: chrono::DateTime<Utc>,
    /// The policy's `content-length-range` upper bound.
    pub max_bytes: u64,
}

/// Verifies a presigned upload like a direct one and registers it; a bad
/// object is deleted and refused.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    tag = "uploads",
    params(("id" = uuid::Uuid, Path, description = "The image")),
    responses(
        (status = 201, description = "Stored", body = super::uploads::Uploaded),
        (status = 401, description = "Missing or invalid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending upload of the caller", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Completed already, or nothing uploaded yet", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over the byte, pixel or side limit", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not an accepted format", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A header that cannot be read", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.user, image_id = %id))]
pub async fn complete(
    caller: Caller,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = ImageId(*id);
    // The pending row stays locked until the outcome is recorded, so two
    // completes of one upload cannot both register it.
    let mut tx = state.pool.begin().await.context("begin complete")?;
    let upload = pending::lock(&mut tx, id, &caller.user)
        .await
        .context("read pending upload")?
        .ok_or(ApiError::NotFound)?;
    if upload.completed_at.is_some() {
        return Err(ApiError::Conflict(
            "this upload was completed already".into(),
        ));
    }
    let object = state
        .store
        .get(&upload.object_key)
        .await
        .map_err(|e| ApiError::StorageUnavailable(e.into()))?
        .ok_or_else(|| ApiError::Conflict("nothing was uploaded for this id yet".into()))?;
    match store_upload(&state, &caller, id, object.bytes).await {
        Ok(response) => {
            pending::mark_completed(&mut tx, id)
                .await
                .context("mark completed")?;
            tx.commit().await.context("commit complete")?;
            remove_staging(&state, &upload.object_key).await;
            Ok(response)
        }
        Err(refused) if refused_for_good(&refused) => {
            // A bad object: remove it, then the row that explained it.
            state
                .store
                .delete_many(std::slice::from_ref(&upload.object_key))
                .await
                .map_err(|e| ApiError::StorageUnavailable(e.into()))?;
            pending::delete(&mut tx, &[upload.id])
                .await
                .context("forget pending upload")?;
            tx.commit().await.context("commit refusal")?;
            Err(refused)
        }
        Err(other) => Err(other),
    }
}

fn refused_for_good(error: &ApiError) -> bool {
    use actix_web::ResponseError;
    error.status_code().is_client_error()
}

/// The verified bytes now live under the original's key; the staging copy
/// goes at once (or with the pending row when it expires).
async fn remove_staging(state: &AppState, key: &str) {
    if let Err(e) = state.store.delete_many(&[key.to_owned()]).await {
        tracing::warn!(error = %e, key, "staging object left for the sweeper");
    }
}
