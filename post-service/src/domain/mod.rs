//! Validated inputs and the post as read.
mod post;

pub use post::{ImageStatus, NewPost, Post, PostImage, PostPatch};
