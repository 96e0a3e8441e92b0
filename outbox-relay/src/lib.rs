//! The outbox relay: publishes committed outbox rows of any number of service
//! databases to RabbitMQ, at least once, with publisher confirms.
#![forbid(unsafe_code)]

pub mod admin;
pub mod configuration;
pub mod dead_letters;
pub mod dlq;
pub mod relay;
pub mod retention;
pub mod startup;
