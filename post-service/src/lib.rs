//! The post service: the product-facing posts API. A post, its image list and
//! the event describing the change commit in one short transaction; no image
//! or S3 work ever happens in a request.
#![forbid(unsafe_code)]

pub mod configuration;
pub mod domain;
pub mod error;
pub mod events;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod store;
