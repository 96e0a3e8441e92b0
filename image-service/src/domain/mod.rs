//! Image states and the record as stored.
mod image;

pub use image::{FileState, ImageRecord, ProcessStatus};
