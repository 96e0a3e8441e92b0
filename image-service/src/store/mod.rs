//! SQL for the image service. Functions that change state take the caller's
//! transaction.
pub mod images;
pub mod pending;
