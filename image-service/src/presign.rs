//! Presigned POST policies (AWS Signature Version 4) for clients that upload
//! straight to S3. The policy pins the bucket and the server-made key and
//! enforces the byte limit with `content-length-range`; the image service
//! verifies the object before the upload counts.
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use infra::s3::S3Settings;
use serde::Serialize;
use sha2::Sha256;
use std::collections::BTreeMap;

/// What a client needs to POST the file: the URL and the form fields to send
/// before the `file` field.
#[derive(Debug, Clone, Serialize)]
pub struct PresignedPost {
    pub url: String,
    pub fields: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

pub fn presign_post(
    s3: &S3Settings,
    key: &str,
    max_bytes: u64,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> PresignedPost {
    let date = now.format("%Y%m%d").to_string();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let credential = format!("{}/{date}/{}/s3/aws4_request", s3.access_key_id, s3.region);
    let expires_at = now + valid_for;
    let policy = serde_json::json!({
        "expiration": expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "conditions": [
            {"bucket": s3.bucket},
            {"key": key},
            ["content-length-range", 1, max_bytes],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ],
    });
    use base64::Engine;
    let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signing_key = [date.as_str(), s3.region.as_str(), "s3", "aws4_request"]
        .iter()
        .fold(
            format!("AWS4{}", s3.secret_access_key).into_bytes(),
            |key, part| hmac(&key, part.as_bytes()),
        );
    let signature = hex::encode(hmac(&signing_key, policy.as_bytes()));
    let fields = BTreeMap::from([
        ("key".to_owned(), key.to_owned()),
        ("policy".to_owned(), policy),
        ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), amz_date),
        ("x-amz-signature".to_owned(), signature),
    ]);
    PresignedPost {
        url: bucket_url(s3),
        fields,
        expires_at,
    }
}

fn bucket_url(s3: &S3Settings) -> String {
    match (s3.endpoint.trim_end_matches('/'), s3.force_path_style) {
        ("", _) => format!("https://{}.s3.{}.amazonaws.com/", s3.bucket, s3.region),
        (endpoint, true) => format!("{endpoint}/{}", s3.bucket),
        (endpoint, false) => {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            format!("{scheme}://{}.{host}/", s3.bucket)
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_follows_the_sigv4_example() {
        // AWS's published example: secret, 20120215, us-east-1, iam.
        let key = ["20120215", "us-east-1", "iam", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |k, p| hmac(&k, p.as_bytes()),
            );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn the_policy_pins_bucket_key_and_size() {
        let s3 = S3Settings {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            ..S3Settings::default()
        };
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 24, 12, 0, 0).unwrap();
        let post = presign_post(&s3, "originals/x", 1000, Duration::minutes(15), now);
        assert_eq!(post.url, "http://127.0.0.1:9000/images");
        use base64::Engine;
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&post.fields["policy"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2026-11-24T12:15:00.000Z");
        let conditions = policy["conditions"].to_string();
        assert!(
            conditions.contains(r#"{"key":"originals/x"}"#),
            "{conditions}"
        );
        assert!(
            conditions.contains(r#"["content-length-range",1,1000]"#),
            "{conditions}"
        );
        assert_eq!(
            post.fields["x-amz-credential"],
            "AKID/20261124/us-east-1/s3/aws4_request"
        );
    }
}
