//! The object store: originals and variants in one private bucket, under
//! keys made by the server only. No key is a prefix of another
//! (`originals/<id>`, `variants/<id>/<name>.<ext>`).
use aws_sdk_s3::{primitives::ByteStream, Client};
use proto::ImageId;

#[derive(Clone)]
pub struct ObjectStore {
    client: Client,
    bucket: String,
}

/// An object read back.
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub e_tag: Option<String>,
}

/// Any failure of the object store; callers treat it as transient.
#[derive(Debug, thiserror::Error)]
#[error("object store: {0:#}")]
pub struct StorageError(#[from] anyhow::Error);

pub fn original_key(id: ImageId) -> String {
    format!("originals/{id}")
}

/// Where a presigned upload is staged until `complete` verified it.
pub fn staging_key(id: ImageId) -> String {
    format!("uploads/{id}")
}

/// The formats variants are stored in (their file extensions).
pub const VARIANT_FORMATS: [&str; 2] = ["webp", "avif"];

pub fn variant_key(id: ImageId, name: &str, extension: &str) -> String {
    format!("variants/{id}/{name}.{extension}")
}

impl ObjectStore {
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    #[tracing::instrument(
        name = "s3 put",
        skip(self, bytes),
        fields(otel.kind = "client", bytes = bytes.len())
    )]
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            // The request is still signed, and the SDK's CRC32 checksum
            // (checked by the server) guards the body; signing the payload
            // too would hash every byte with SHA-256 on both sides: about a
            // quarter of what uploads cost the image service and the S3
            // server together under load (docs/PERFORMANCE.md).
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("put {key}")))?;
        Ok(())
    }

    /// Whether the bucket can be reached (for `/readyz`).
    pub async fn check(&self) -> Result<(), String> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| infra::problem::cause_chain(&e))
    }

    /// Deletes objects in batches of 1000 (`DeleteObjects`). A key that does
    /// not exist counts as deleted.
    #[tracing::instrument(skip(self, keys), fields(keys = keys.len()))]
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::Error::new(e).context("build delete request"))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| anyhow::Error::new(e).context("build delete request"))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| anyhow::Error::new(e).context("delete objects"))?;
            let failed: Vec<String> = output
                .errors()
                .iter()
                .filter(|e| e.code() != Some("NoSuchKey"))
                .map(|e| format!("{}: {}", e.key().unwrap_or("?"), e.message().unwrap_or("?")))
                .collect();
            if !failed.is_empty() {
                return Err(anyhow::anyhow!("could not delete {}", failed.join(", ")).into());
            }
        }
        Ok(())
    }

    /// Every key in the bucket.
    pub async fn list_all(&self) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| anyhow::Error::new(e).context("list objects"))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// Reads an object; `None` when it does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, key: &str) -> Result<Option<StoredObject>, StorageError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("get {key}")).into()),
        };
        let content_type = output.content_type().map(str::to_owned);
        let e_tag = output.e_tag().map(str::to_owned);
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("read body of {key}")))?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject {
            bytes,
            content_type,
            e_tag,
        }))
    }
}
