//! The wire format is pinned by golden files: each must parse into its typed
//! event and serialise back to the same JSON.
use chrono::{TimeZone, Utc};
use proto::*;
use serde::de::DeserializeOwned;
use uuid::{uuid, Uuid};

fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn round_trip<E: Event + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    expected: Envelope<E>,
) {
    let json = golden(name);
    let parsed = RawEnvelope::parse(json.to_string().as_bytes())
        .unwrap()
        .decode::<E>()
        .unwrap();
    assert_eq!(
        parsed, expected,
        "golden file {name} no longer parses to the expected event"
    );
    assert_eq!(
        serde_json::to_value(&expected).unwrap(),
        json,
        "serialising the event no longer gives golden file {name}"
    );
}

const POST: Uuid = uuid!("01937a4e-8b2c-7000-8000-000000000001");
const IMAGE_A: Uuid = uuid!("01937a4e-8b2c-7000-8000-00000000000a");
const IMAGE_B: Uuid = uuid!("01937a4e-8b2c-7000-8000-00000000000b");

#[test]
fn post_created_matches_its_golden_file() {
    round_trip(
        "post.created",
        Envelope {
            id: uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a7b"),
            event_type: "post.created".into(),
            version: 1,
            aggregate_type: "post".into(),
            aggregate_id: POST,
            sequence: 1,
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            data: PostCreated {
                post_id: PostId(POST),
                author_id: UserId("user-1".into()),
                image_ids: vec![ImageId(IMAGE_A), ImageId(IMAGE_B)],
            },
        },
    );
}

#[test]
fn image_processed_matches_its_golden_file() {
    round_trip(
        "image.processed",
        Envelope {
            id: uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a7c"),
            event_type: "image.processed".into(),
            version: 1,
            aggregate_type: "image".into(),
            aggregate_id: IMAGE_A,
            sequence: 2,
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 1).unwrap(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01".into()),
            data: ImageProcessed {
                image_id: ImageId(IMAGE_A),
                owner: Some(Owner {
                    owner_type: OwnerType::Post,
                    id: POST,
                }),
                status: ProcessOutcome::Ready,
                variants: vec![Variant {
                    name: "1x".into(),
                    format: "webp".into(),
                    width: 400,
                    height: 300,
                    bytes: 18211,
                    url: format!("http://127.0.0.1:8081/v1/images/{IMAGE_A}/variants/1x.webp"),
                }],
                error: None,
                placeholder: Some("1QcSHQRnh493V4dIh4eXh1h4kJUI".into()),
            },
        },
    );
}

fn post_envelope<E>(
    id: Uuid,
    event_type: &str,
    sequence: i64,
    minute: u32,
    data: E,
) -> Envelope<E> {
    Envelope {
        id,
        event_type: event_type.into(),
        version: 1,
        aggregate_type: "post".into(),
        aggregate_id: POST,
        sequence,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 24, 12, minute, 0).unwrap(),
        traceparent: None,
        data,
    }
}

#[test]
fn post_updated_matches_its_golden_file() {
    round_trip(
        "post.updated",
        post_envelope(
            uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a7d"),
            "post.updated",
            2,
            5,
            PostUpdated {
                post_id: PostId(POST),
                author_id: UserId("user-1".into()),
                image_ids: vec![ImageId(IMAGE_B)],
            },
        ),
    );
}

#[test]
fn post_deleted_matches_its_golden_file() {
    round_trip(
        "post.deleted",
        post_envelope(
            uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a7e"),
            "post.deleted",
            3,
            10,
            PostDeleted {
                post_id: PostId(POST),
            },
        ),
    );
}

#[test]
fn post_rolled_back_matches_its_golden_file() {
    round_trip(
        "post.rolled_back",
        post_envelope(
            uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a7f"),
            "post.rolled_back",
            1,
            15,
            PostRolledBack {
                post_id: PostId(POST),
                image_ids: vec![ImageId(IMAGE_A)],
            },
        ),
    );
}

#[test]
fn image_deleted_matches_its_golden_file() {
    let mut expected = post_envelope(
        uuid!("01937a4e-8b2c-7c3d-9a1b-2c3d4e5f6a80"),
        "image.deleted",
        3,
        20,
        ImageDeleted {
            image_id: ImageId(IMAGE_A),
        },
    );
    expected.aggregate_type = "image".into();
    expected.aggregate_id = IMAGE_A;
    round_trip("image.deleted", expected);
}

#[test]
fn unknown_fields_are_ignored() {
    let mut json = golden("post.created");
    json["added_later"] = serde_json::json!(true);
    json["data"]["also_new"] = serde_json::json!([1, 2]);
    let event = RawEnvelope::parse(json.to_string().as_bytes())
        .unwrap()
        .decode::<PostCreated>()
        .unwrap();
    assert_eq!(event.data.image_ids.len(), 2);
}

#[test]
fn an_unknown_type_or_version_is_a_permanent_decode_error() {
    let mut json = golden("post.created");
    json["version"] = serde_json::json!(2);
    let err = RawEnvelope::parse(json.to_string().as_bytes())
        .unwrap()
        .decode::<PostCreated>()
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::UnsupportedVersion { version: 2, .. }),
        "{err}"
    );

    let err = RawEnvelope::parse(golden("post.created").to_string().as_bytes())
        .unwrap()
        .decode::<ImageProcessed>()
        .unwrap_err();
    assert!(matches!(err, DecodeError::UnknownType(_)), "{err}");

    assert!(matches!(
        RawEnvelope::parse(b"{not json"),
        Err(DecodeError::Malformed(_))
    ));
}
