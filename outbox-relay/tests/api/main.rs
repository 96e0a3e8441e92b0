mod admin;
mod consumer;
mod dead_letters;
mod dlq_helpers;
mod helpers;
mod relay;
mod replay;
