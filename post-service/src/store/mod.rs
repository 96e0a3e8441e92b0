//! SQL for the post service. Functions that change state take the caller's
//! transaction.
pub mod idempotency;
pub mod posts;
