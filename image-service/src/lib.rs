//! The image service: takes uploads, attaches files to their owners when post
//! events arrive, builds variants, and reports back with `image.processed`.
#![forbid(unsafe_code)]

pub mod configuration;
pub mod domain;
pub mod error;
pub mod events;
pub mod openapi;
pub mod pipeline;
pub mod presign;
pub mod processing;
pub mod reconcile;
pub mod routes;
pub mod startup;
pub mod storage;
pub mod store;
pub mod sweeper;
