//! The contract between the programs: typed ids, the event envelope, the
//! event payloads and the RabbitMQ topology. Everything that crosses a process
//! boundary is defined here, once, so a change to the wire format is a change
//! to this crate (and to its golden files).
#![forbid(unsafe_code)]

pub mod envelope;
pub mod events;
pub mod ids;
pub mod topology;

pub use envelope::{DecodeError, Envelope, RawEnvelope};
pub use events::{
    Event, ImageDeleted, ImageProcessed, Owner, OwnerType, PostCreated, PostDeleted,
    PostRolledBack, PostUpdated, ProcessOutcome, Variant,
};
pub use ids::{EventId, ImageId, PostId, UserId};
