//! The posts API.
pub mod change;
pub mod create;
pub mod read;
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
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PostView {
    #[schema(value_type = uuid::Uuid)]
    pub id: proto::PostId,
    /// The `sub` of the author's token.
    #[schema(value_type = String)]
    pub author_id: proto::UserId,
    pub title: String,
    pub body: String,
    /// Grows with every change; the `ETag` of the post.
    pub version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The first image, or `null` for a post without images.
    pub thumbnail: Option<ImageView>,
    pub images: Vec<ImageView>,
}

/// One image of a post.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ImageView {
    #[schema(value_type = uuid::Uuid)]
    pub id: proto::ImageId,
    #[schema(value_type = String, example = "processing")]
    /// `processing`, `ready` or `failed`.
    pub status: ImageStatus,
    /// The original's URL (needs a token); usable at once.
    pub original_url: String,
    /// Empty until `ready`.
    #[schema(value_type = Vec<infra::openapi::VariantDoc>)]
    pub variants: Vec<proto::Variant>,
    /// Why the image failed.
    pub error: Option<String>,
    /// A ThumbHash (base64) to paint before any variant loads.
    pub placeholder: Option<String>,
}

fn view(post: &Post, image_base_url: &str) -> PostView {
    let base = image_base_url.trim_end_matches('/');
    let images: Vec<ImageView> = post
        .images
        .iter()
        .map(|image| ImageView {
            id: image.image_id,
            status: image.status,
            original_url: format!("{base}/v1/images/{}/original", image.image_id),
            variants: if image.status == ImageStatus::Ready {
                image.variants.clone()
            } else {
                vec![]
            },
            error: image.error.clone(),
            placeholder: image.placeholder.clone(),
        })
        .collect();
    PostView {
        id: post.id,
        author_id: post.author.clone(),
        title: post.title.clone(),
        body: post.body.clone(),
        version: post.version,
        created_at: post.created_at,
        updated_at: post.updated_at,
        thumbnail: images.first().cloned(),
        images,
    }
}
