use chrono::{DateTime, Utc};
use proto::{ImageId, Owner, OwnerType, UserId, Variant};
use serde::Serialize;
use uuid::Uuid;

/// The file's lifecycle (see DESIGN.md, "File lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Uploaded,
    Assigned,
    Attached,
    Abandoned,
    Deleted,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Uploaded => "uploaded",
            FileState::Assigned => "assigned",
            FileState::Attached => "attached",
            FileState::Abandoned => "abandoned",
            FileState::Deleted => "deleted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            FileState::Uploaded,
            FileState::Assigned,
            FileState::Attached,
            FileState::Abandoned,
            FileState::Deleted,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// Progress of building the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    Pending,
    Processing,
    Ready,
    Failed,
}

impl ProcessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessStatus::Pending => "pending",
            ProcessStatus::Processing => "processing",
            ProcessStatus::Ready => "ready",
            ProcessStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ProcessStatus::Pending,
            ProcessStatus::Processing,
            ProcessStatus::Ready,
            ProcessStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One image as stored.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: ImageId,
    pub uploader: UserId,
    pub state: FileState,
    pub process_status: ProcessStatus,
    pub owner: Option<Owner>,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub original_key: String,
    pub variants: Vec<Variant>,
    pub placeholder: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ImageRecord {
    pub fn owner_from_columns(owner_type: Option<String>, owner_id: Option<Uuid>) -> Option<Owner> {
        match (owner_type.as_deref(), owner_id) {
            (Some("post"), Some(id)) => Some(Owner {
                owner_type: OwnerType::Post,
                id,
            }),
            _ => None,
        }
    }
}
