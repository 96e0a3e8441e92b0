//! The service's HTTP errors and their problem+json mapping, in one place.
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use infra::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("not found")]
    NotFound,
    #[error("only the author may change or delete a post")]
    Forbidden,
    #[error("the post is now at version {current_etag}; read it again and retry")]
    PreconditionFailed { current_etag: String },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Validation(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            )
            .with_detail(detail),
            ApiError::NotFound => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Forbidden => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                .with_detail(self.to_string()),
            ApiError::PreconditionFailed { .. } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale-version",
                "Precondition failed",
            )
            .with_detail(self.to_string()),
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            )
            .with_detail(self.to_string()),
            ApiError::Unexpected(_) => Problem::internal(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unexpected(e) = self {
            tracing::error!(error = %format_args!("{e:#}"), "request failed");
        }
        self.problem().to_response()
    }
}
