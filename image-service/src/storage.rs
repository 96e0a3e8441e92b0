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

pub fn variant_key(id: ImageId, name: &str, extension: &str) -> String {
    format!("variants/{id}/{name}.{extension}")
}

impl ObjectStore {
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    #[tracing::instrument(skip(self, bytes), fields(bytes = bytes.len()))]
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
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("put {key}")))?;
        Ok(())
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
