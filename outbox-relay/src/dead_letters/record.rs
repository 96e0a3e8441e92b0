//! What a dead-lettered message says about itself: the failure headers our
//! consumers add, or the broker's own `x-death` when it dead-lettered the
//! message (delivery limit), and the envelope in the body.
use super::fingerprint::fingerprint;
use chrono::{DateTime, Utc};
use infra::amqp::headers;
use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldTable},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A dead letter ready to be stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub dedup_key: String,
    pub queue: String,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<Uuid>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub headers: serde_json::Value,
    /// The AMQP properties with their wire types, for an exact replay.
    pub properties: serde_json::Value,
    pub body: Vec<u8>,
    pub reason: String,
    pub fingerprint: String,
    pub attempts: Option<i64>,
    pub consumer: Option<String>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_failed_at: Option<DateTime<Utc>>,
}

impl DeadLetter {
    pub fn from_delivery(queue: &str, delivery: &Delivery) -> Self {
        let properties = &delivery.properties;
        let table = properties.headers().clone().unwrap_or_default();
        let headers = table_to_json(&table);
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let time = |name: &str| {
            text(name)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        // The broker's record of its own dead-lettering, newest first.
        let death = headers
            .get("x-death")
            .and_then(|d| d.as_array())
            .and_then(|d| d.first())
            .cloned();
        let reason = text(headers::FAILURE_REASON).unwrap_or_else(|| match &death {
            Some(d) => format!(
                "dead-lettered by the broker: {}",
                d.get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("unknown")
            ),
            None => "no reason recorded".into(),
        });
        let envelope = proto::RawEnvelope::parse(&delivery.data).ok();
        let dedup_key = {
            let mut hash = Sha256::new();
            hash.update(queue.as_bytes());
            hash.update(headers.to_string().as_bytes());
            hash.update(&delivery.data);
            hex::encode(hash.finalize())
        };
        DeadLetter {
            dedup_key,
            queue: queue.to_owned(),
            message_id: properties.message_id().as_ref().map(|m| m.to_string()),
            event_type: properties
                .kind()
                .as_ref()
                .map(|t| t.to_string())
                .or_else(|| envelope.as_ref().map(|e| e.event_type.clone())),
            aggregate_id: envelope.as_ref().map(|e| e.aggregate_id),
            original_exchange: text(headers::ORIGINAL_EXCHANGE).or_else(|| {
                death
                    .as_ref()
                    .and_then(|d| d.get("exchange")?.as_str().map(str::to_owned))
            }),
            original_routing_key: text(headers::ORIGINAL_ROUTING_KEY).or_else(|| {
                death.as_ref().and_then(|d| {
                    d.get("routing-keys")?
                        .as_array()?
                        .first()?
                        .as_str()
                        .map(str::to_owned)
                })
            }),
            fingerprint: fingerprint(&reason),
            reason,
            attempts: headers
                .get(headers::ATTEMPTS)
                .and_then(|a| a.as_i64())
                .or_else(|| death.as_ref().and_then(|d| d.get("count")?.as_i64())),
            consumer: text(headers::CONSUMER),
            first_failed_at: time(headers::FIRST_FAILED_AT),
            last_failed_at: time(headers::LAST_FAILED_AT),
            headers,
            properties: serde_json::to_value(properties).unwrap_or_default(),
            body: delivery.data.clone(),
        }
    }
}

/// AMQP header table as JSON, for storage and display.
pub fn table_to_json(table: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::json;
    match value {
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldArray(a) => {
            serde_json::Value::Array(a.as_slice().iter().map(value_to_json).collect())
        }
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::Void => serde_json::Value::Null,
        other => json!(format!("{other:?}")),
    }
}
