//! Bearer JWT authentication (HS256). The key, issuer and audience come from
//! settings; the caller is identified by the token's `sub`.
use crate::problem::Problem;
use actix_web::{http::StatusCode, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proto::UserId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Token settings shared by both HTTP services.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HS256 signing key. Required; never logged.
    pub jwt_secret: String,
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            issuer: "posts-images".into(),
            audience: "posts-images".into(),
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl AuthSettings {
    /// Checks the settings, naming the offending one in the error.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.jwt_secret.len() < 16 {
            return Err(format!(
                "setting auth.jwt_secret ({prefix}_AUTH__JWT_SECRET) must be at least 16 bytes"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
}

/// Verifies tokens; shared with handlers as `web::Data<Authenticator>`.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            key: DecodingKey::from_secret(settings.jwt_secret.as_bytes()),
            validation,
        }
    }

    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::InvalidToken("empty sub".into()));
        }
        Ok(Caller {
            user: UserId(data.claims.sub),
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Signs a token for `sub`, valid for `ttl_seconds`. Used by tests and tools.
pub fn issue_token(settings: &AuthSettings, sub: &str, ttl_seconds: i64) -> String {
    issue_scoped_token(settings, sub, "", ttl_seconds)
}

/// Signs a token for `sub` with space-separated `scope`s (e.g. `dlq:admin`).
pub fn issue_scoped_token(
    settings: &AuthSettings,
    sub: &str,
    scope: &str,
    ttl_seconds: i64,
) -> String {
    let claims = Claims {
        sub: sub.to_owned(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        exp: chrono::Utc::now().timestamp() + ttl_seconds,
        scope: scope.to_owned(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .with_detail(self.to_string())
            .to_response();
        response.headers_mut().insert(
            actix_web::http::header::WWW_AUTHENTICATE,
            actix_web::http::header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, AuthError> {
    let authenticator = req
        .app_data::<web::Data<Authenticator>>()
        .expect("Authenticator is registered as app data");
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?;
    let caller = authenticator.verify(token.trim())?;
    tracing::Span::current().record("user_id", tracing::field::display(&caller.user));
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: "a-test-secret-of-enough-length".into(),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn an_issued_token_verifies_and_names_the_user() {
        let token = issue_token(&settings(), "user-7", 60);
        let caller = Authenticator::new(&settings()).verify(&token).unwrap();
        assert_eq!(caller.user, UserId("user-7".into()));
    }

    #[test]
    fn scopes_of_a_token_reach_the_caller() {
        let token = issue_scoped_token(&settings(), "sre", "dlq:admin images:admin", 60);
        let caller = Authenticator::new(&settings()).verify(&token).unwrap();
        assert_eq!(caller.scopes, vec!["dlq:admin", "images:admin"]);
    }

    #[test]
    fn tokens_with_another_key_audience_or_expired_are_rejected() {
        let other_key = AuthSettings {
            jwt_secret: "another-secret-of-enough-length".into(),
            ..settings()
        };
        let other_audience = AuthSettings {
            audience: "someone-else".into(),
            ..settings()
        };
        let auth = Authenticator::new(&settings());
        for token in [
            issue_token(&other_key, "u", 60),
            issue_token(&other_audience, "u", 60),
            issue_token(&settings(), "u", -3600),
            "not-a-jwt".to_string(),
        ] {
            assert!(auth.verify(&token).is_err(), "accepted {token}");
        }
    }

    #[test]
    fn a_short_secret_is_refused_naming_the_setting() {
        let err = AuthSettings::default().validate("POST").unwrap_err();
        assert!(err.contains("POST_AUTH__JWT_SECRET"), "{err}");
    }
}
