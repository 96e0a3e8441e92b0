//! Exchange, queue and routing-key names, and the arguments every queue is
//! declared with. Declaring with the same arguments is idempotent, so every
//! program may declare the whole topology at start.

/// Topic exchange for events of the post service.
pub const POST_EVENTS: &str = "post.events";
/// Topic exchange for events of the image service.
pub const IMAGE_EVENTS: &str = "image.events";
/// Direct exchange that routes dead letters to `<queue>.dlq` by routing key.
pub const DEAD_LETTERS: &str = "dead-letters";

/// A consumer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: &'static str,
    pub exchange: &'static str,
    /// Topic patterns bound on `exchange`.
    pub bindings: &'static [&'static str],
}

/// The image service consumes post events.
pub const IMAGE_SERVICE_POST_EVENTS: QueueSpec = QueueSpec {
    name: "image-service.post-events",
    exchange: POST_EVENTS,
    bindings: &["post.#"],
};

/// The post service consumes image events.
pub const POST_SERVICE_IMAGE_EVENTS: QueueSpec = QueueSpec {
    name: "post-service.image-events",
    exchange: IMAGE_EVENTS,
    bindings: &["image.processed"],
};

/// Every consumer queue of the system.
pub const QUEUES: [QueueSpec; 2] = [IMAGE_SERVICE_POST_EVENTS, POST_SERVICE_IMAGE_EVENTS];

/// Every event exchange of the system.
pub const EXCHANGES: [&str; 2] = [POST_EVENTS, IMAGE_EVENTS];

/// How many times RabbitMQ delivers a message before dead-lettering it.
/// Consumers retry transient failures themselves; this is the backstop for a
/// consumer that crashes on a message over and over.
pub const DELIVERY_LIMIT: i64 = 20;

/// The retry ladder: a message that failed transiently for the n-th time
/// waits in the n-th retry queue of its queue for this long (the queue's
/// message TTL), then returns to its queue. After the last step it is
/// dead-lettered. Consumers may wait less per message, never more.
pub const RETRY_DELAYS_MS: [u64; 5] = [1_000, 5_000, 30_000, 120_000, 300_000];

/// The retry queue of `queue` for ladder step `step` (0-based).
pub fn retry_queue(queue: &str, step: usize) -> String {
    format!("{queue}.retry.{}", step + 1)
}

/// The dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The exchange an event type is published to, from its prefix.
pub fn exchange_for(event_type: &str) -> Option<&'static str> {
    match event_type.split('.').next() {
        Some("post") => Some(POST_EVENTS),
        Some("image") => Some(IMAGE_EVENTS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_route_to_the_exchange_of_their_service() {
        assert_eq!(exchange_for("post.created"), Some(POST_EVENTS));
        assert_eq!(exchange_for("image.processed"), Some(IMAGE_EVENTS));
        assert_eq!(exchange_for("user.created"), None);
    }

    #[test]
    fn retry_queues_are_numbered_by_step() {
        assert_eq!(retry_queue("q", 0), "q.retry.1");
        assert!(RETRY_DELAYS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_queue_has_a_dead_letter_queue() {
        assert_eq!(
            dead_letter_queue(IMAGE_SERVICE_POST_EVENTS.name),
            "image-service.post-events.dlq"
        );
    }
}
