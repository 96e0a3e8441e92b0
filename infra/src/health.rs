//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer,
//! each checked with a short timeout), for load balancers and Kubernetes.
use actix_web::{web, HttpResponse};
use futures::future::BoxFuture;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// How long one dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Check = Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The checks behind `/readyz`.
pub struct Readiness {
    checks: Vec<(String, Check)>,
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            timeout: CHECK_TIMEOUT,
        }
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long each check may take (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Box::new(move || Box::pin(check()))));
        self
    }

    /// A database answers `SELECT 1`.
    pub fn database(self, name: impl Into<String>, pool: sqlx::PgPool) -> Self {
        self.check(name, move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// The program's broker connection is up.
    pub fn broker(self, status: BrokerStatus) -> Self {
        self.check("broker", move || {
            let up = status.is_up();
            async move {
                up.then_some(())
                    .ok_or_else(|| "not connected to RabbitMQ".to_owned())
            }
        })
    }

    /// Runs every check at once; `true` when all passed.
    pub async fn run(&self) -> (bool, serde_json::Map<String, serde_json::Value>) {
        let timeout = self.timeout;
        let results =
            futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(timeout, check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (name.as_str(), outcome)
            }))
            .await;
        let mut ready = true;
        let mut report = serde_json::Map::new();
        for (name, outcome) in results {
            let value = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(e) => {
                    ready = false;
                    tracing::warn!(check = name, error = %e, "not ready");
                    e
                }
            };
            report.insert(name.to_owned(), value.into());
        }
        (ready, report)
    }
}

pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let (ready, checks) = readiness.run().await;
    let body =
        serde_json::json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether the program's broker connection is currently established; set by
/// the consumer and relay loops as they connect and fail.
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus(Arc<AtomicBool>);

impl BrokerStatus {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_fails_when_any_check_fails_or_hangs() {
        let status = BrokerStatus::default();
        let readiness = Readiness::new()
            .check("fine", || async { Ok(()) })
            .broker(status.clone());
        assert!(!readiness.run().await.0);
        status.set(true);
        let (ready, report) = readiness.run().await;
        assert!(ready, "{report:?}");

        let hanging = Readiness::new()
            .timeout(Duration::from_millis(20))
            .check("slow", std::future::pending::<Result<(), String>>);
        let (ready, report) = hanging.run().await;
        assert!(!ready);
        assert!(report["slow"].as_str().unwrap().contains("no answer"));
    }
}
