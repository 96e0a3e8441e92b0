mod changes;
mod helpers;
mod image_events;
mod openapi;
mod posts;
