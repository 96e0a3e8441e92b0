//! Consuming image events.
mod image_events;

pub use image_events::ImageEventsHandler;
