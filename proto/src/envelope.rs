//! The one JSON envelope every message travels in.
use crate::events::Event;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

/// An event with its metadata. `id` is the deduplication key and `sequence`
/// grows by one per aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    pub traceparent: Option<String>,
    pub data: T,
}

/// An envelope whose payload has not been interpreted yet.
pub type RawEnvelope = Envelope<serde_json::Value>;

/// Why a message could not be understood. Every variant is permanent:
/// retrying the same bytes cannot succeed, so the message is dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("unsupported version {version} of `{event_type}`")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("malformed `{event_type}` payload: {reason}")]
    MalformedPayload { event_type: String, reason: String },
}

impl RawEnvelope {
    /// Parses the envelope; unknown fields are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    /// Interprets the payload as `E`, checking type and version first.
    pub fn decode<E: Event + DeserializeOwned>(self) -> Result<Envelope<E>, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError::UnknownType(self.event_type));
        }
        if self.version != E::VERSION {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type,
                version: self.version,
            });
        }
        let data =
            serde_json::from_value(self.data).map_err(|e| DecodeError::MalformedPayload {
                event_type: self.event_type.clone(),
                reason: e.to_string(),
            })?;
        Ok(Envelope {
            id: self.id,
            event_type: self.event_type,
            version: self.version,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            occurred_at: self.occurred_at,
            traceparent: self.traceparent,
            data,
        })
    }
}
