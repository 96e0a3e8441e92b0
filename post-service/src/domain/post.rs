use chrono::{DateTime, Utc};
use proto::{ImageId, PostId, UserId, Variant};
use serde::Serialize;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 20_000;

/// A post to create, validated.
#[derive(Debug, Clone)]
pub struct NewPost {
    pub title: String,
    pub body: String,
    pub image_ids: Vec<ImageId>,
}

impl NewPost {
    /// Checks the request; the error says what is wrong, for a `422`.
    pub fn parse(
        title: String,
        body: String,
        image_ids: Vec<ImageId>,
        max_images: usize,
    ) -> Result<Self, String> {
        let title = title.trim().to_owned();
        if title.is_empty() {
            return Err("title must not be empty".into());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!(
                "title must be at most {MAX_TITLE_CHARS} characters"
            ));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(format!("body must be at most {MAX_BODY_CHARS} characters"));
        }
        if image_ids.len() > max_images {
            return Err(format!("a post may have at most {max_images} images"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = image_ids.iter().find(|id| !seen.insert(**id)) {
            return Err(format!("image {dup} is listed twice"));
        }
        Ok(Self {
            title,
            body,
            image_ids,
        })
    }
}

/// A change to a post, validated. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PostPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    /// The final ordered list, when given.
    pub image_ids: Option<Vec<ImageId>>,
}

impl PostPatch {
    pub fn parse(
        title: Option<String>,
        body: Option<String>,
        image_ids: Option<Vec<ImageId>>,
        max_images: usize,
    ) -> Result<Self, String> {
        // Validate the given fields with the same rules as a new post.
        let probe = NewPost::parse(
            title.clone().unwrap_or_else(|| "unchanged".into()),
            body.clone().unwrap_or_default(),
            image_ids.clone().unwrap_or_default(),
            max_images,
        )?;
        Ok(Self {
            title: title.map(|_| probe.title),
            body,
            image_ids,
        })
    }

    /// Whether applying the patch to `post` changes nothing.
    pub fn is_noop_for(&self, post: &Post) -> bool {
        let current: Vec<ImageId> = post.images.iter().map(|i| i.image_id).collect();
        self.title.as_ref().is_none_or(|t| *t == post.title)
            && self.body.as_ref().is_none_or(|b| *b == post.body)
            && self.image_ids.as_ref().is_none_or(|ids| *ids == current)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    Processing,
    Ready,
    Failed,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Processing => "processing",
            ImageStatus::Ready => "ready",
            ImageStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ImageStatus::Processing,
            ImageStatus::Ready,
            ImageStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One image of a post as last reported by the image service.
#[derive(Debug, Clone)]
pub struct PostImage {
    pub image_id: ImageId,
    pub status: ImageStatus,
    pub variants: Vec<Variant>,
    pub error: Option<String>,
    pub placeholder: Option<String>,
}

impl PostImage {
    /// A newly listed image, until the image service reports on it.
    pub fn processing(image_id: ImageId) -> Self {
        Self {
            image_id,
            status: ImageStatus::Processing,
            variants: vec![],
            error: None,
            placeholder: None,
        }
    }
}

/// A post with its images in order.
#[derive(Debug, Clone)]
pub struct Post {
    pub id: PostId,
    pub author: UserId,
    pub title: String,
    pub body: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub images: Vec<PostImage>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn parse(title: &str, images: Vec<ImageId>) -> Result<NewPost, String> {
        NewPost::parse(title.into(), "body".into(), images, 3)
    }

    #[test]
    fn a_valid_post_is_trimmed_and_kept_in_order() {
        let ids = vec![ImageId::new(), ImageId::new()];
        let post = parse("  Hello ", ids.clone()).unwrap();
        assert_eq!(post.title, "Hello");
        assert_eq!(post.image_ids, ids);
    }

    #[test]
    fn a_patch_repeating_the_current_values_is_a_noop() {
        let image = ImageId::new();
        let post = Post {
            id: PostId::new(),
            author: UserId("a".into()),
            title: "T".into(),
            body: "B".into(),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            images: vec![PostImage {
                image_id: image,
                status: ImageStatus::Processing,
                variants: vec![],
                error: None,
                placeholder: None,
            }],
        };
        let same = PostPatch::parse(Some(" T ".into()), None, Some(vec![image]), 5).unwrap();
        assert!(same.is_noop_for(&post));
        let reordered = PostPatch::parse(None, None, Some(vec![]), 5).unwrap();
        assert!(!reordered.is_noop_for(&post));
        assert!(PostPatch::parse(Some(" ".into()), None, None, 5).is_err());
    }

    #[test]
    fn empty_titles_duplicates_and_too_many_images_are_refused() {
        assert!(parse("   ", vec![]).is_err());
        assert!(parse(&"x".repeat(201), vec![]).is_err());
        let id = ImageId::new();
        assert!(parse("t", vec![id, id]).unwrap_err().contains("twice"));
        assert!(parse("t", (0..4).map(|_| ImageId::new()).collect()).is_err());
    }
}
