//! Streaming download, hashed on the way, resumed with ranged GETs when the body breaks.

use super::error::S3Error;
use super::{Downloaded, S3Client, TransferProgress};
use crate::model::{Checksum, SnapshotName};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

/// Times a broken body is resumed before the download fails.
const MAX_RESUMES: u32 = 3;
/// Write buffer: servers send small chunks (s3s-fs: 4 KiB); the caller's file wants big writes.
const WRITE_BUFFER: usize = 1024 * 1024;

impl S3Client {
    /// Streams snapshot `name` into `out`, returning the size and BLAKE3 of what was written.
    ///
    /// `out` may hold a partial copy on error: the caller writes to a temporary file and
    /// keeps it only when the checksum matches the manifest.
    pub async fn download(
        &self,
        name: &SnapshotName,
        out: impl AsyncWrite + Send + Unpin,
        progress: &dyn TransferProgress,
    ) -> Result<Downloaded, S3Error> {
        self.download_pinned(name, None, out, progress).await
    }

    /// [`S3Client::download`] of the object only if its ETag is still `etag` (`If-Match`):
    /// the object the plan was made for, not one replaced since.
    pub async fn download_pinned(
        &self,
        name: &SnapshotName,
        etag: Option<&str>,
        out: impl AsyncWrite + Send + Unpin,
        progress: &dyn TransferProgress,
    ) -> Result<Downloaded, S3Error> {
        let key = self.key(name);
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .set_if_match(etag.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.errors.sdk("download", Some(&key), e))?;
        let total = resp.content_length().map(|l| l.max(0) as u64);
        let etag = resp.e_tag().map(str::to_string);
        progress.started(total);
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
        let result = self.stream(&key, resp.body, total, etag, &mut out, progress).await;
        progress.finished();
        result
    }

    async fn stream(
        &self,
        key: &str,
        mut body: ByteStream,
        total: Option<u64>,
        etag: Option<String>,
        out: &mut (dyn AsyncWrite + Send + Unpin),
        progress: &dyn TransferProgress,
    ) -> Result<Downloaded, S3Error> {
        let mut hasher = blake3::Hasher::new();
        let mut size: u64 = 0;
        let mut resumes = 0;
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    hasher.update(&chunk);
                    out.write_all(&chunk).await.map_err(|source| S3Error::Write { offset: size, source })?;
                    size += chunk.len() as u64;
                    progress.advanced(chunk.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = self.errors.chain(&e);
                    // Resuming needs the ETag, so that bytes of a newer object are never appended.
                    let Some(etag) = etag.as_deref().filter(|_| resumes < MAX_RESUMES) else {
                        return Err(S3Error::Transfer {
                            action: "download",
                            endpoint: self.errors.endpoint.clone(),
                            reason,
                        });
                    };
                    resumes += 1;
                    tracing::warn!(key, offset = size, %reason, "download broke; resuming");
                    body = self.resume(key, size, etag).await?;
                }
            }
        }
        if let Some(expected) = total
            && size != expected
        {
            return Err(S3Error::Truncated { key: key.to_string(), received: size, expected });
        }
        out.flush().await.map_err(|source| S3Error::Write { offset: size, source })?;
        Ok(Downloaded { size, checksum: Checksum::from_hasher(&hasher) })
    }

    /// The rest of `key` from `offset`, only if the object is still the one with `etag`.
    async fn resume(&self, key: &str, offset: u64, etag: &str) -> Result<ByteStream, S3Error> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-"))
            .if_match(etag)
            .send()
            .await
            .map_err(|e| match self.errors.sdk("download", Some(key), e) {
                S3Error::Server { code, .. } if code == "PreconditionFailed" => S3Error::Transfer {
                    action: "download",
                    endpoint: self.errors.endpoint.clone(),
                    reason: "the object was replaced while it was being downloaded".into(),
                },
                other => other,
            })?;
        // A server that ignores Range would send the whole object again.
        let expected = format!("bytes {offset}-");
        if !resp.content_range().is_some_and(|r| r.starts_with(&expected)) {
            return Err(S3Error::Transfer {
                action: "download",
                endpoint: self.errors.endpoint.clone(),
                reason: "the connection broke and the server cannot resume (no Range support)".into(),
            });
        }
        Ok(resp.body)
    }
}
