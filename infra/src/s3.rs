//! S3 client set-up from settings. Works with AWS S3 (leave `endpoint` empty)
//! and any S3-compatible server (set `endpoint`, usually with path style).
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible server; empty for AWS S3.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    /// Never logged.
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most local servers.
    pub force_path_style: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            bucket: "images".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            force_path_style: true,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

impl S3Settings {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err(format!(
                "setting s3.bucket ({prefix}_S3__BUCKET) must not be empty"
            ));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(format!(
                "settings s3.access_key_id and s3.secret_access_key \
                 ({prefix}_S3__ACCESS_KEY_ID, {prefix}_S3__SECRET_ACCESS_KEY) are required"
            ));
        }
        Ok(())
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        let credentials = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "settings",
        );
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(self.force_path_style);
        if !self.endpoint.is_empty() {
            config = config.endpoint_url(&self.endpoint);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }
}
