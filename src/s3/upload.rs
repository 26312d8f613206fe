//! Streaming upload: parts of [`PART_SIZE`], [`PARTS_IN_FLIGHT`] at a time, hashed in order.

use super::error::{Classifier, S3Error};
use super::{MANIFEST_SUFFIX, S3Client, TransferProgress, Uploaded};
use crate::model::{Checksum, SnapshotName};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Size of one multipart part. 16 MiB × 10 000 parts allows 156 GiB, far above etcd's limit.
pub const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts buffered at once, counting the one being read: the upload's memory bound.
pub const PARTS_IN_FLIGHT: usize = 4;
/// S3's limit on the number of parts.
const MAX_PARTS: i32 = 10_000;
/// Abort attempts: a part still being written when the abort arrives can survive it.
const ABORT_ATTEMPTS: u32 = 3;

/// One finished part: what CompleteMultipartUpload needs, and its size for progress.
type PartDone = (CompletedPart, u64);

impl S3Client {
    /// Streams `data` to snapshot `name`, returning its size and BLAKE3 checksum.
    ///
    /// The object appears only when complete: on any failure (reading, network, server) the
    /// multipart upload is aborted, leaving neither an object nor parts behind. If the
    /// returned future is dropped mid-way, the abort is started on the current runtime.
    pub async fn upload(
        &self,
        name: &SnapshotName,
        mut data: impl AsyncRead + Send + Unpin,
        progress: &dyn TransferProgress,
    ) -> Result<Uploaded, S3Error> {
        if name.as_str().ends_with(MANIFEST_SUFFIX) {
            return Err(S3Error::ReservedName { name: name.to_string() });
        }
        progress.started(None);
        let result = self.upload_inner(name, &mut data, progress).await;
        progress.finished();
        result
    }

    async fn upload_inner(
        &self,
        name: &SnapshotName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        progress: &dyn TransferProgress,
    ) -> Result<Uploaded, S3Error> {
        let key = self.key(name);
        let slots = Arc::new(Semaphore::new(PARTS_IN_FLIGHT));
        let permit = slots.clone().acquire_owned().await.map_err(internal)?;
        let mut hasher = blake3::Hasher::new();
        let first = read_part(data, 0).await?;

        if first.len() < PART_SIZE {
            hasher.update(&first);
            let size = first.len() as u64;
            self.retire_manifest(name).await?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/octet-stream")
                .content_length(size as i64)
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| self.errors.sdk("upload", Some(&key), e))?;
            progress.advanced(size);
            return Ok(Uploaded { size, checksum: Checksum::from_hasher(&hasher) });
        }

        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            // Declared (on AWS) so that it accepts the CRC32 the SDK adds to every part; other
            // servers get no checksum they were not asked for (see `Endpoint::checksums_when_required`).
            .set_checksum_algorithm(self.crc32.then_some(ChecksumAlgorithm::Crc32))
            .send()
            .await
            .map_err(|e| self.errors.sdk("upload", Some(&key), e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| S3Error::Internal("CreateMultipartUpload returned no upload id".into()))?
            .to_string();
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.clone(),
            upload_id: upload_id.clone(),
            armed: true,
        };

        let result = async {
            let (mut parts, size) =
                self.upload_parts(&key, &upload_id, first, permit, slots, data, &mut hasher, progress).await?;
            parts.sort_by_key(|p| p.part_number());
            self.retire_manifest(name).await?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.errors.sdk("upload", Some(&key), e))?;
            Ok(Uploaded { size, checksum: Checksum::from_hasher(&hasher) })
        }
        .await;

        if result.is_err() {
            abort_upload(&self.client, &self.bucket, &key, &upload_id).await;
        }
        guard.armed = false;
        result
    }

    /// Sends `first` and the rest of `data` as parts, holding at most [`PARTS_IN_FLIGHT`]
    /// buffers. Returns the completed parts and the total size. On error every part task
    /// has ended before it returns, so an abort that follows is not raced by a late part.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Vec<u8>,
        first_permit: OwnedSemaphorePermit,
        slots: Arc<Semaphore>,
        data: &mut (dyn AsyncRead + Send + Unpin),
        hasher: &mut blake3::Hasher,
        progress: &dyn TransferProgress,
    ) -> Result<(Vec<CompletedPart>, u64), S3Error> {
        let mut tasks: JoinSet<Result<PartDone, S3Error>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut size: u64 = 0;

        let mut take = |joined: Result<Result<PartDone, S3Error>, tokio::task::JoinError>| {
            let (part, len) = joined.map_err(internal)??;
            progress.advanced(len);
            done.push(part);
            Ok::<(), S3Error>(())
        };

        let result = async {
            let mut part = first;
            let mut permit = first_permit;
            let mut number: i32 = 1;
            loop {
                let len = part.len();
                hasher.update(&part);
                size += len as u64;
                tasks.spawn(self.part_task(key, upload_id, number, part, permit));
                if len < PART_SIZE {
                    break;
                }
                // Wait for a free buffer, collecting finished parts meanwhile so that a failed
                // part stops the upload at once instead of after the whole input is read.
                permit = loop {
                    tokio::select! {
                        biased;
                        Some(joined) = tasks.join_next() => take(joined)?,
                        p = slots.clone().acquire_owned() => break p.map_err(internal)?,
                    }
                };
                part = read_part(data, size).await?;
                if part.is_empty() {
                    break;
                }
                number += 1;
                if number > MAX_PARTS {
                    return Err(S3Error::TooLarge { limit: MAX_PARTS as u64 * PART_SIZE as u64 });
                }
            }
            while let Some(joined) = tasks.join_next().await {
                take(joined)?;
            }
            Ok(())
        }
        .await;

        match result {
            Ok(()) => Ok((done, size)),
            Err(e) => {
                tasks.shutdown().await;
                Err(e)
            }
        }
    }

    /// A task that sends one part; it holds `permit` until the part's buffer is freed.
    fn part_task(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = Result<PartDone, S3Error>> + Send + 'static {
        let client = self.client.clone();
        let errors: Classifier = self.errors.clone();
        let bucket = self.bucket.clone();
        let key = key.to_string();
        let upload_id = upload_id.to_string();
        let crc32 = self.crc32;
        async move {
            let _permit = permit;
            let len = data.len() as u64;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .set_checksum_algorithm(crc32.then_some(ChecksumAlgorithm::Crc32))
                .content_length(len as i64)
                // From a `Vec`: no copy, and the SDK can resend it on a retry.
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| errors.sdk("upload", Some(&key), e))?;
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .build();
            Ok((part, len))
        }
    }

    /// Removes the manifest of an earlier object of the same name, so that a manifest never
    /// describes an object other than the one beside it.
    async fn retire_manifest(&self, name: &SnapshotName) -> Result<(), S3Error> {
        self.delete_key(&self.manifest_key(name)).await.map(|_| ())
    }
}

/// Reads up to one part from `data`; fewer bytes only at the end of the input.
async fn read_part(data: &mut (dyn AsyncRead + Send + Unpin), offset: u64) -> Result<Vec<u8>, S3Error> {
    let mut buf = Vec::with_capacity(PART_SIZE);
    // `read_buf` fills spare capacity only; stopping at PART_SIZE keeps the Vec from growing.
    while buf.len() < PART_SIZE {
        match data.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(S3Error::Read { offset: offset + buf.len() as u64, source });
            }
        }
    }
    Ok(buf)
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::Internal(e.to_string())
}

/// Aborts a multipart upload, and again while parts remain (a part in flight when the
/// abort arrives may still be stored). Failures are logged: the caller is already failing,
/// and a bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.
async fn abort_upload(client: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    for attempt in 1..=ABORT_ATTEMPTS {
        if let Err(e) = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send().await
            && e.code() != Some("NoSuchUpload")
        {
            tracing::warn!(key, upload_id, error = %e.code().unwrap_or("connection error"),
                "could not abort the multipart upload; a bucket lifecycle rule must remove its parts");
            return;
        }
        match client.list_parts().bucket(bucket).key(key).upload_id(upload_id).send().await {
            Ok(out) if !out.parts().is_empty() && attempt < ABORT_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(out) if !out.parts().is_empty() => {
                tracing::warn!(key, upload_id, "parts of an aborted multipart upload remain");
            }
            _ => return,
        }
    }
}

/// Aborts the multipart upload if the upload future is dropped before it finished.
struct AbortGuard {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (client, bucket, key, id) =
                (self.client.clone(), self.bucket.clone(), self.key.clone(), self.upload_id.clone());
            rt.spawn(async move { abort_upload(&client, &bucket, &key, &id).await });
        }
    }
}
