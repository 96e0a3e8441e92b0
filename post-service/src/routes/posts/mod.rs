//! The posts API.
mod change;
mod create;
mod read;
mod rollback;

pub use change::{delete_post, patch_post};
pub use create::create_post;
pub use read::{get_post, list_posts};

use crate::domain::{ImageStatus, Post};

/// The post's version as an entity tag.
fn etag(post: &Post) -> String {
    format!("\"{}\"", post.version)
}

/// The post as clients see it: images in order, the first is the thumbnail;
/// `original_url` at once, `variants` once ready.
fn view(post: &Post, image_base_url: &str) -> serde_json::Value {
    let base = image_base_url.trim_end_matches('/');
    let images: Vec<_> = post
        .images
        .iter()
        .map(|image| {
            serde_json::json!({
                "id": image.image_id,
                "status": image.status,
                "original_url": format!("{base}/v1/images/{}/original", image.image_id),
                "variants": if image.status == ImageStatus::Ready { image.variants.clone() } else { vec![] },
                "error": image.error,
                "placeholder": image.placeholder,
            })
        })
        .collect();
    serde_json::json!({
        "id": post.id,
        "author_id": post.author,
        "title": post.title,
        "body": post.body,
        "version": post.version,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "thumbnail": images.first(),
        "images": images,
    })
}
