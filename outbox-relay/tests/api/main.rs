mod consumer;
mod helpers;
mod relay;
