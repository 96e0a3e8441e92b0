//! Event payloads (`data` of the envelope). Field names are the wire format.
use crate::ids::{ImageId, PostId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What every payload declares about itself.
pub trait Event: Serialize {
    /// The envelope's `type`, also the routing key.
    const TYPE: &'static str;
    /// The payload's schema version.
    const VERSION: u32;
    /// The kind of aggregate the event belongs to.
    const AGGREGATE_TYPE: &'static str;
    /// The aggregate the event belongs to; orders `sequence`.
    fn aggregate_id(&self) -> Uuid;
}

/// A post was created with these images, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCreated {
    pub post_id: PostId,
    pub author_id: UserId,
    pub image_ids: Vec<ImageId>,
}

impl Event for PostCreated {
    const TYPE: &'static str = "post.created";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "post";
    fn aggregate_id(&self) -> Uuid {
        self.post_id.0
    }
}

/// A post changed; `image_ids` is its final, ordered image list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostUpdated {
    pub post_id: PostId,
    pub author_id: UserId,
    pub image_ids: Vec<ImageId>,
}

impl Event for PostUpdated {
    const TYPE: &'static str = "post.updated";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "post";
    fn aggregate_id(&self) -> Uuid {
        self.post_id.0
    }
}

/// A post was deleted; its images are no longer used by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostDeleted {
    pub post_id: PostId,
}

impl Event for PostDeleted {
    const TYPE: &'static str = "post.deleted";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "post";
    fn aggregate_id(&self) -> Uuid {
        self.post_id.0
    }
}

/// A create or update that named these images failed and was rolled back;
/// images it would have attached and nothing else uses may be cleaned up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostRolledBack {
    /// The post that was being created or updated.
    pub post_id: PostId,
    pub image_ids: Vec<ImageId>,
}

impl Event for PostRolledBack {
    const TYPE: &'static str = "post.rolled_back";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "post";
    fn aggregate_id(&self) -> Uuid {
        self.post_id.0
    }
}

/// The objects of an image are gone from storage; the row stays as a tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDeleted {
    pub image_id: ImageId,
}

impl Event for ImageDeleted {
    const TYPE: &'static str = "image.deleted";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "image";
    fn aggregate_id(&self) -> Uuid {
        self.image_id.0
    }
}

/// The kind of thing an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerType {
    Post,
}

/// The owner an image is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    #[serde(rename = "type")]
    pub owner_type: OwnerType,
    pub id: Uuid,
}

/// Final outcome of processing one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessOutcome {
    Ready,
    Failed,
}

/// One built variant of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Preset name, e.g. `1x`.
    pub name: String,
    /// File format, e.g. `webp`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub url: String,
}

/// The image service finished (or gave up) building an image's variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProcessed {
    pub image_id: ImageId,
    pub owner: Option<Owner>,
    pub status: ProcessOutcome,
    pub variants: Vec<Variant>,
    pub error: Option<String>,
    /// ThumbHash of the image, base64, when it could be decoded.
    #[serde(default)]
    pub placeholder: Option<String>,
}

impl Event for ImageProcessed {
    const TYPE: &'static str = "image.processed";
    const VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "image";
    fn aggregate_id(&self) -> Uuid {
        self.image_id.0
    }
}
