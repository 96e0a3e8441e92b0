//! Consuming post events.
mod post_events;

pub use post_events::PostEventsHandler;
