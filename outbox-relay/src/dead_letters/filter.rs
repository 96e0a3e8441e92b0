//! Which dead letters a command or request is about: the same filters for
//! `list`, `replay` and `discard`, from the command line or a query string.
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The three states of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Replayed,
    Discarded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Replayed => "replayed",
            Status::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pending" => Ok(Status::Pending),
            "replayed" => Ok(Status::Replayed),
            "discarded" => Ok(Status::Discarded),
            other => Err(format!(
                "status must be pending, replayed or discarded, not `{other}`"
            )),
        }
    }
}

/// Filters; an empty filter matches everything. `ids` selects rows by id
/// and combines with the other filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    pub ids: Vec<i64>,
    pub queue: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Failure reason contains this text.
    pub reason: Option<String>,
    /// Failure reason matches this (PostgreSQL) regular expression.
    pub reason_regex: Option<String>,
    pub fingerprint: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    pub aggregate: Option<uuid::Uuid>,
    pub status: Option<Status>,
    pub limit: Option<i64>,
}

impl Filter {
    /// True when nothing narrows the selection (only status or limit set).
    pub fn selects_everything(&self) -> bool {
        self.ids.is_empty()
            && self.queue.is_none()
            && self.event_type.is_none()
            && self.reason.is_none()
            && self.reason_regex.is_none()
            && self.fingerprint.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.aggregate.is_none()
    }
}

/// A point in time: RFC 3339 (`2026-11-25T08:00:00Z`), a date
/// (`2026-11-25`, midnight UTC), or an age such as `90s`, `30m`, `6h`, `7d`.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let amount: i64 = number.parse().map_err(|_| bad_time(text))?;
    let age = match unit {
        "s" => Duration::seconds(amount),
        "m" => Duration::minutes(amount),
        "h" => Duration::hours(amount),
        "d" => Duration::days(amount),
        _ => return Err(bad_time(text)),
    };
    Ok(now - age)
}

fn bad_time(text: &str) -> String {
    format!("`{text}` is not a time: use RFC 3339, YYYY-MM-DD, or an age like 30m, 6h, 7d")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_dates_or_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| parse_time(t, now).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-11-24T08:30:00+01:00").unwrap(),
            "2026-11-24T07:30:00+00:00"
        );
        assert_eq!(at("2026-11-20").unwrap(), "2026-11-20T00:00:00+00:00");
        assert_eq!(at("90s").unwrap(), "2026-11-25T11:58:30+00:00");
        assert_eq!(at("6h").unwrap(), "2026-11-25T06:00:00+00:00");
        assert_eq!(at("2d").unwrap(), "2026-11-23T12:00:00+00:00");
        for bad in ["", "h", "yesterday", "5w", "2026-13-01"] {
            assert!(at(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn a_query_string_fills_the_filter() {
        let filter: Filter = serde_json::from_value(
            serde_json::json!({"type": "post.created", "status": "pending"}),
        )
        .unwrap();
        assert_eq!(filter.event_type.as_deref(), Some("post.created"));
        assert_eq!(filter.status, Some(Status::Pending));
        assert!(!filter.selects_everything());
        let pending: Filter =
            serde_json::from_value(serde_json::json!({"status": "pending", "limit": 5})).unwrap();
        assert!(pending.selects_everything());
        assert!(serde_json::from_value::<Filter>(serde_json::json!({"colour": "red"})).is_err());
    }
}
