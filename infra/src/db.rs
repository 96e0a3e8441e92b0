//! PostgreSQL pools that stay on one async runtime each.
//!
//! The HTTP server runs every worker thread on its own single-threaded
//! runtime, and a connection is driven by the event loop of the runtime that
//! opened it. With one pool for the whole process, a handler on one worker
//! used connections opened by the other worker or by the background tasks:
//! each of its round trips waited for that other thread's event loop, which
//! under load is busy with its own requests, and cost an extra thread
//! wake-up. So each HTTP worker opens its own pool, and background work
//! (consumers, builds, sweeps) another; `database.max_connections` is split
//! between them.
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;

/// How long a request or task waits for a free connection before failing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a service's connection budget is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBudget {
    /// HTTP worker threads, each with its own pool.
    pub workers: usize,
    /// Connections of each worker's pool.
    pub per_worker: u32,
    /// Connections of the background pool.
    pub background: u32,
}

impl PoolBudget {
    /// Splits `total` connections evenly between `workers` HTTP workers
    /// (`0`: one per core) and the background pool, which gets the
    /// remainder. Fails when `total` cannot give every pool one connection.
    pub fn split(total: u32, workers: usize) -> Result<Self, String> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            workers
        };
        let pools = u32::try_from(workers + 1).map_err(|_| "too many HTTP workers".to_owned())?;
        if total < pools {
            return Err(format!(
                "{total} connections cannot give {workers} HTTP workers and the background work \
                 one each; raise database.max_connections to at least {pools} or lower \
                 application.workers"
            ));
        }
        let per_worker = total / pools;
        Ok(Self {
            workers,
            per_worker,
            background: total - per_worker * (pools - 1),
        })
    }
}

/// A pool of at most `size` connections, opened on first use by the
/// runtime that uses it. Call it on that runtime.
pub fn lazy_pool(options: &PgConnectOptions, size: u32) -> PgPool {
    pool_options(size).connect_lazy_with(options.clone())
}

/// A pool of at most `size` connections whose first connection is opened
/// now, so a wrong URL fails at start.
pub async fn connect(url: &str, size: u32) -> Result<(PgPool, PgConnectOptions), sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let pool = pool_options(size).connect_with(options.clone()).await?;
    Ok((pool, options))
}

fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_evenly_and_the_background_pool_takes_the_rest() {
        let budget = PoolBudget::split(20, 2).unwrap();
        assert_eq!((budget.per_worker, budget.background), (6, 8));
        let budget = PoolBudget::split(3, 2).unwrap();
        assert_eq!((budget.per_worker, budget.background), (1, 1));
    }

    #[test]
    fn a_budget_too_small_for_every_pool_is_refused() {
        let error = PoolBudget::split(2, 2).unwrap_err();
        assert!(error.contains("at least 3"), "{error}");
    }

    #[test]
    fn zero_workers_means_one_per_core() {
        let budget = PoolBudget::split(100, 0).unwrap();
        assert!(budget.workers >= 1);
        assert!(budget.per_worker * budget.workers as u32 + budget.background <= 100);
    }
}
