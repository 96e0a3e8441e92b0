//! The dead-letter admin API on the relay's port: what `dlq` does, as JSON
//! over HTTP, for tools and dashboards. Every endpoint needs a bearer token
//! with the `dlq:admin` scope; the token's `sub` is the actor recorded with
//! replays and discards.
use crate::{
    configuration::Settings,
    dead_letters::{
        filter::{parse_time, Filter, Status},
        replay::{Outcome, Replayer},
        store,
    },
};
use actix_web::{http::StatusCode, web, HttpResponse, ResponseError};
use infra::{auth::Caller, problem::Problem};
use serde::Deserialize;
use sqlx::PgPool;

/// Scope a token needs for every admin endpoint.
pub const ADMIN_SCOPE: &str = "dlq:admin";

pub struct AdminState {
    pub pool: PgPool,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the admin API is off: set auth.jwt_secret (RELAY_AUTH__JWT_SECRET)")]
    Disabled,
    #[error("this needs a token with the {ADMIN_SCOPE} scope")]
    Forbidden,
    #[error("no dead letter {0}")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{count} pending dead letters match; send \"confirm\": true to act on more than {limit}"
    )]
    ConfirmationRequired { count: usize, limit: u64 },
    #[error("the broker is unreachable: {0}")]
    Broker(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("2201B") => {
                AdminError::Invalid(format!("invalid reason_regex: {}", db.message()))
            }
            _ => AdminError::Unexpected(anyhow::Error::new(e).context("relay database")),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let AdminError::Unexpected(e) = self {
            tracing::error!(error = %format_args!("{e:#}"), "admin request failed");
        }
        self.problem().to_response()
    }
}

impl AdminError {
    fn problem(&self) -> Problem {
        let (status, slug, title) = match self {
            AdminError::Disabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                "admin-disabled",
                "Admin API disabled",
            ),
            AdminError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            AdminError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
            ),
            AdminError::ConfirmationRequired { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "confirmation-required",
                "Confirmation required",
            ),
            AdminError::Broker(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Broker unavailable",
            ),
            AdminError::Unexpected(_) => return Problem::internal(),
        };
        Problem::new(status, slug, title).with_detail(self.to_string())
    }
}

/// The admin routes; without a token key (`auth.jwt_secret`) every admin
/// path answers `503`, so an empty key can never verify a token.
pub fn routes(enabled: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let scope = web::scope("/v1/dead-letters");
        if !enabled {
            cfg.service(
                scope.default_service(web::to(|| async { AdminError::Disabled.error_response() })),
            );
            return;
        }
        cfg.service(
            scope
                .route("", web::get().to(list))
                .route("/stats", web::get().to(stats))
                .route("/replay", web::post().to(replay))
                .route("/discard", web::post().to(discard))
                .route("/{id}", web::get().to(show)),
        );
    }
}

/// Admin endpoints need the admin scope (a missing or bad token is already
/// a `401` from the extractor).
fn authorize(caller: Caller) -> Result<Caller, AdminError> {
    if !caller.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        return Err(AdminError::Forbidden);
    }
    Ok(caller)
}

/// The filters of `GET /v1/dead-letters`; times may be ages (`6h`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    queue: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    reason: Option<String>,
    reason_regex: Option<String>,
    fingerprint: Option<String>,
    since: Option<String>,
    until: Option<String>,
    aggregate: Option<uuid::Uuid>,
    status: Option<Status>,
    limit: Option<i64>,
}

impl ListQuery {
    fn filter(self) -> Result<Filter, AdminError> {
        let now = chrono::Utc::now();
        let time = |t: Option<String>| t.map(|t| parse_time(&t, now)).transpose();
        Ok(Filter {
            ids: Vec::new(),
            queue: self.queue,
            event_type: self.event_type,
            reason: self.reason,
            reason_regex: self.reason_regex,
            fingerprint: self.fingerprint,
            since: time(self.since).map_err(AdminError::Invalid)?,
            until: time(self.until).map_err(AdminError::Invalid)?,
            aggregate: self.aggregate,
            status: self.status,
            limit: Some(self.limit.unwrap_or(50).clamp(1, 1000)),
        })
    }
}

async fn list(
    caller: Caller,
    query: web::Query<ListQuery>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    authorize(caller)?;
    let filter = query.into_inner().filter()?;
    let items = store::list(&state.pool, &filter).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

async fn stats(caller: Caller, state: web::Data<AdminState>) -> Result<HttpResponse, AdminError> {
    authorize(caller)?;
    let groups = store::stats(&state.pool).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "groups": groups })))
}

async fn show(
    caller: Caller,
    id: web::Path<i64>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    authorize(caller)?;
    let id = id.into_inner();
    let letter = store::get(&state.pool, id)
        .await?
        .ok_or(AdminError::NotFound(id))?;
    let actions = store::actions(&state.pool, id).await?;
    Ok(HttpResponse::Ok().json(letter.to_json(&actions)))
}

/// The body of `POST …/replay` and `POST …/discard`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Change {
    filter: Filter,
    /// Every pending letter, when `filter` selects nothing in particular.
    all: bool,
    dry_run: bool,
    /// Needed to act on more than `dead_letters.confirm_above` letters.
    confirm: bool,
    /// Replay only: messages per second.
    rate: Option<f64>,
    /// Discard only, required: why.
    reason: Option<String>,
}

/// The pending letters a change selects, after its checks.
async fn select(change: &mut Change, state: &AdminState) -> Result<Vec<i64>, AdminError> {
    match change.filter.status {
        None | Some(Status::Pending) => change.filter.status = Some(Status::Pending),
        Some(_) => {
            return Err(AdminError::Invalid(
                "only pending dead letters can be changed".into(),
            ))
        }
    }
    if change.filter.selects_everything() && !change.all {
        return Err(AdminError::Invalid(
            "name ids or a filter, or send \"all\": true".into(),
        ));
    }
    let ids = store::matching_ids(&state.pool, &change.filter).await?;
    let limit = state.settings.dead_letters.confirm_above;
    if ids.len() as u64 > limit && !change.confirm && !change.dry_run {
        return Err(AdminError::ConfirmationRequired {
            count: ids.len(),
            limit,
        });
    }
    Ok(ids)
}

async fn dry_run(ids: Vec<i64>, state: &AdminState) -> Result<HttpResponse, AdminError> {
    let items = store::listed(&state.pool, &ids).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "dry_run": true, "items": items })))
}

async fn replay(
    caller: Caller,
    body: web::Json<Change>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let caller = authorize(caller)?;
    let mut change = body.into_inner();
    if change.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(AdminError::Invalid(
            "rate must be a positive number per second".into(),
        ));
    }
    let ids = select(&mut change, &state).await?;
    if change.dry_run {
        return dry_run(ids, &state).await;
    }
    let connection = infra::amqp::connect(&state.settings.amqp.url, "outbox-relay admin replay")
        .await
        .map_err(|e| AdminError::Broker(e.to_string()))?;
    let publisher = infra::amqp::Publisher::new(&connection)
        .await
        .map_err(|e| AdminError::Broker(e.to_string()))?;
    let replayer = Replayer {
        pool: &state.pool,
        publisher: &publisher,
        actor: caller.user.0.clone(),
        rate: change.rate,
    };
    let result = replayer.replay(&ids, |_| {}).await;
    let _ = connection.close(200, "replay done").await;
    let items = result.map_err(|e| AdminError::Broker(format!("{e:#}")))?;
    let published = items
        .iter()
        .filter(|r| r.outcome == Outcome::Published)
        .count();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "published": published, "items": items })))
}

async fn discard(
    caller: Caller,
    body: web::Json<Change>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let caller = authorize(caller)?;
    let mut change = body.into_inner();
    let reason = change
        .reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| AdminError::Invalid("discard needs a reason".into()))?;
    let ids = select(&mut change, &state).await?;
    if change.dry_run {
        return dry_run(ids, &state).await;
    }
    let discarded =
        crate::dead_letters::discard(&state.pool, &ids, &caller.user.0, &reason).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "discarded": discarded })))
}
