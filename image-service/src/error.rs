//! The service's HTTP errors and their problem+json mapping, in one place.
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use infra::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("object store unavailable")]
    StorageUnavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    fn problem(&self) -> Problem {
        use ApiError::*;
        let (status, slug, title) = match self {
            TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Image too large",
            ),
            UnsupportedFormat(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-image-format",
                "Unsupported image format",
            ),
            Unreadable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable-image",
                "Unreadable image",
            ),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            StorageUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage temporarily unavailable",
            ),
            Unexpected(_) => return Problem::internal(),
        };
        let problem = Problem::new(status, slug, title);
        match self {
            StorageUnavailable(_) | NotFound => problem,
            other => problem.with_detail(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %infra::problem::cause_chain(self), "request failed");
        }
        self.problem().to_response()
    }
}
