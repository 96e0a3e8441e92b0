//! RFC 9457 problem details, the body of every error response.
use actix_web::{http::StatusCode, HttpResponse};
use serde::Serialize;

/// A problem+json body. `type` is stable (`/problems/<slug>`) so clients can
/// branch on it; `title` is fixed per type; `detail` explains this occurrence.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The opaque answer to an unexpected failure; the cause is logged, never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

/// Extractor settings whose rejections are problem+json too, so malformed
/// JSON or a bad path id never produce a plain-text error.
pub fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError;
            let problem = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                ),
                JsonPayloadError::ContentType => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Unsupported media type",
                )
                .with_detail("expected application/json"),
                _ => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Malformed JSON body",
                ),
            }
            .with_detail_if_missing(err.to_string());
            actix_web::error::InternalError::from_response(err, problem.to_response()).into()
        })
}

/// Path extractor settings answering `404` problem+json for ids that do not parse.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|err, _req| {
        let problem = Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .with_detail(err.to_string());
        actix_web::error::InternalError::from_response(err, problem.to_response()).into()
    })
}

/// Query-string extractor settings answering `400` problem+json.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, _req| {
        let problem = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
        )
        .with_detail(err.to_string());
        actix_web::error::InternalError::from_response(err, problem.to_response()).into()
    })
}

impl Problem {
    fn with_detail_if_missing(self, detail: String) -> Self {
        if self.detail.is_some() {
            self
        } else {
            self.with_detail(detail)
        }
    }
}

/// Answers routes that do not exist with a problem+json `404`.
pub async fn not_found() -> HttpResponse {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
        .with_detail("no such route")
        .to_response()
}

/// `error: cause: cause…`, for logging an error held by reference.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
