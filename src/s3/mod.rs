//! S3: where snapshots go off the cluster, and where a restore can fetch them from.
//!
//! This module owns everything that talks to an S3-compatible store: turning
//! [`S3Settings`](crate::config::S3Settings) into a client ([`S3Client::new`]), telling
//! configuration faults apart ([`S3Client::check`]), and moving snapshots and their
//! manifests. It knows nothing of etcd, hosts or plans; callers hand it readers and writers.
//!
//! Data flow:
//! - **upload**: the caller's `AsyncRead` (a snapshot file, or etcd's stream) is cut into
//!   16 MiB parts; each part is hashed (BLAKE3, in order) and sent as one `UploadPart`, at
//!   most 4 parts buffered and in flight at once, so memory holds about 64 MiB of data
//!   whatever the size. Data smaller than a part goes in one `PutObject`. Any failure aborts the
//!   multipart upload, so no partial object or stray parts remain; S3 only makes an object
//!   visible once it is complete, so the final key never holds half a snapshot.
//! - **manifest**: after the object is complete the caller writes `<key>.rkectl.json`
//!   ([`Manifest`]: size, checksum, cluster, an opaque PKI blob). A manifest's presence
//!   therefore means the object beside it is whole. An upload removes a stale manifest of
//!   the same name before it publishes the new object.
//! - **download**: a streaming `GetObject` into the caller's `AsyncWrite`, hashed on the
//!   way; a connection that breaks mid-body is resumed with a ranged GET pinned to the
//!   object's ETag. The caller compares the result with the manifest.
//!
//! Keys: `<folder>/<name>` (or `<name>` without a folder) and `<folder>/<name>.rkectl.json`.

mod connect;
mod credentials_file;
mod download;
pub mod environment;
mod error;
pub mod roots;
mod upload;

pub use connect::{CA_BUNDLE_ENV, CA_ENV, DEFAULT_REGION, default_region};
pub use credentials_file::{
    CREDENTIALS_FILE_ENV, CREDENTIALS_FILE_IN_CONTAINER, FileCredentials, credentials_file, read_credentials_file,
};
pub use error::{CredentialsFault, S3Error};
pub use upload::{PART_SIZE, PARTS_IN_FLIGHT};

use crate::config::{S3Settings, S3Target};
use crate::model::{Checksum, SnapshotName};
use error::Classifier;
use serde::{Deserialize, Serialize};

/// Suffix of the manifest written beside each snapshot object.
pub const MANIFEST_SUFFIX: &str = ".rkectl.json";
/// The manifest format this version writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// Manifests larger than this are refused rather than read into memory.
const MANIFEST_MAX: u64 = 16 * 1024 * 1024;

/// Receives the progress of one transfer.
pub trait TransferProgress: Send + Sync {
    /// The transfer begins; `total` is the size when known (downloads).
    fn started(&self, total: Option<u64>);
    /// `bytes` more were transferred (uploads: acknowledged parts; downloads: written bytes).
    fn advanced(&self, bytes: u64);
    /// The transfer ended, successfully or not.
    fn finished(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl TransferProgress for NoProgress {
    fn started(&self, _total: Option<u64>) {}
    fn advanced(&self, _bytes: u64) {}
    fn finished(&self) {}
}

/// The result of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes stored.
    pub size: u64,
    /// BLAKE3 of the bytes stored.
    pub checksum: Checksum,
}

/// The result of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// BLAKE3 of the bytes written.
    pub checksum: Checksum,
}

/// What rkectl records beside a snapshot object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The snapshot's name.
    pub name: SnapshotName,
    /// The object's size in bytes.
    pub size: u64,
    /// The object's BLAKE3 checksum.
    pub checksum: Checksum,
    /// When the snapshot was taken (unix seconds).
    pub created: i64,
    /// The cluster it belongs to.
    pub cluster: String,
    /// RKE's state, sealed with the user's passphrase (never with the S3 keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_state: Option<crate::rke::seal::SealedState>,
}

impl Manifest {
    /// A manifest for an upload that just completed, created now.
    pub fn new(
        name: SnapshotName,
        uploaded: &Uploaded,
        cluster: impl Into<String>,
        sealed_state: Option<crate::rke::seal::SealedState>,
    ) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            name,
            size: uploaded.size,
            checksum: uploaded.checksum.clone(),
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            cluster: cluster.into(),
            sealed_state,
        }
    }
}

/// A snapshot object found in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Snapshot {
    /// The snapshot's name (the key without the folder).
    pub name: SnapshotName,
    /// The object's size in bytes.
    pub size: u64,
    /// Last modification (unix seconds).
    pub modified: i64,
    /// Whether its manifest exists, i.e. the upload was completed by rkectl.
    pub has_manifest: bool,
    /// The object's ETag (it changes when the object is replaced).
    pub etag: String,
}

/// A client for one bucket (and folder) of one S3 endpoint.
#[derive(Debug, Clone)]
pub struct S3Client {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Normalised folder: no leading or trailing `/`, `None` when empty.
    folder: Option<String>,
    errors: Classifier,
    target: S3Target,
    list_page_size: i32,
    /// Declare CRC32 checksums on multipart uploads (AWS); S3-compatible servers get none.
    crc32: bool,
}

/// `settings` with the keys the helpers on the nodes will use: its own, or those the AWS
/// credentials chain resolves to on this workstation.
pub async fn resolve_keys(settings: &S3Settings) -> Result<S3Settings, S3Error> {
    connect::resolve_keys(settings).await
}

impl S3Client {
    /// A client for `settings`. Makes no request; use [`S3Client::check`] to test the settings.
    /// (Async so that callers need not change if building it ever has to wait.)
    pub async fn new(settings: &S3Settings) -> Result<S3Client, S3Error> {
        let env = connect::Environment::of_process(settings).await?;
        let (client, errors, endpoint) = connect::build(settings, env)?;
        let folder =
            settings.folder.as_deref().map(|f| f.trim().trim_matches('/').to_string()).filter(|f| !f.is_empty());
        Ok(S3Client {
            client,
            bucket: settings.bucket.trim().to_string(),
            folder,
            errors,
            target: settings.target(),
            list_page_size: 1000,
            crc32: !endpoint.checksums_when_required(),
        })
    }

    /// Sets how many keys one list request asks for (tests use it to exercise pagination).
    #[doc(hidden)]
    pub fn with_list_page_size(mut self, n: i32) -> Self {
        self.list_page_size = n.max(1);
        self
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.errors.region
    }

    /// The public description of where this client stores snapshots.
    pub fn target(&self) -> &S3Target {
        &self.target
    }

    /// The object key of snapshot `name`.
    pub fn key(&self, name: &SnapshotName) -> String {
        match &self.folder {
            Some(f) => format!("{f}/{}", name.as_str()),
            None => name.as_str().to_string(),
        }
    }

    /// The key of the manifest of snapshot `name`.
    pub fn manifest_key(&self, name: &SnapshotName) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.key(name))
    }

    /// The prefix every key of this client starts with (`folder/` or empty).
    fn prefix(&self) -> String {
        self.folder.as_ref().map(|f| format!("{f}/")).unwrap_or_default()
    }

    /// Checks endpoint, credentials and bucket with one small list request, which (unlike
    /// HeadBucket, whose errors have no body) says which of them is wrong.
    pub async fn check(&self) -> Result<(), S3Error> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.prefix())
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.errors.sdk("list", None, e))?;
        Ok(())
    }

    /// Every snapshot object directly under the folder (manifests excluded), by name.
    pub async fn list(&self) -> Result<Vec<S3Snapshot>, S3Error> {
        let prefix = self.prefix();
        let mut objects: Vec<(String, u64, i64, String)> = Vec::new();
        let mut manifests = std::collections::BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                // Snapshot names hold no `/`, so deeper keys are not ours.
                .delimiter("/")
                .max_keys(self.list_page_size)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.errors.sdk("list", None, e))?;
            for obj in page.contents() {
                let Some(rest) = obj.key().and_then(|k| k.strip_prefix(&prefix)) else {
                    continue;
                };
                if let Some(name) = rest.strip_suffix(MANIFEST_SUFFIX) {
                    manifests.insert(name.to_string());
                    continue;
                }
                let size = obj.size().unwrap_or(0).max(0) as u64;
                let modified = obj.last_modified().map(|t| t.secs()).unwrap_or(0);
                let etag = obj.e_tag().unwrap_or_default().to_string();
                objects.push((rest.to_string(), size, modified, etag));
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out: Vec<S3Snapshot> = objects
            .into_iter()
            // Keys that are not valid snapshot names (hidden files, odd characters) are not ours.
            .filter_map(|(name, size, modified, etag)| {
                let has_manifest = manifests.contains(&name);
                SnapshotName::new(name).ok().map(|name| S3Snapshot { name, size, modified, has_manifest, etag })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `len` bytes of object `name` from `offset` (fewer at its end).
    pub async fn read_range(&self, name: &SnapshotName, offset: u64, len: u64) -> Result<Vec<u8>, S3Error> {
        let key = self.key(name);
        if len == 0 {
            return Ok(Vec::new());
        }
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
            .map_err(|e| self.errors.sdk("download", Some(&key), e))?;
        let bytes = resp.body.collect().await.map_err(|e| S3Error::Internal(e.to_string()))?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Deletes snapshot `name` and its manifest; `false` when neither existed.
    pub async fn delete(&self, name: &SnapshotName) -> Result<bool, S3Error> {
        // The manifest goes first: a manifest must never describe a missing object.
        let had_manifest = self.delete_key(&self.manifest_key(name)).await?;
        let had_object = self.delete_key(&self.key(name)).await?;
        Ok(had_object || had_manifest)
    }

    /// Whether `key` exists. A one-key listing rather than HeadObject: HEAD errors have no
    /// body, so a wrong secret key, a missing bucket and a missing key would all look alike.
    async fn exists(&self, key: &str) -> Result<bool, S3Error> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.errors.sdk("list", None, e))?;
        // `key` sorts before every longer key it is a prefix of.
        Ok(page.contents().first().and_then(|o| o.key()) == Some(key))
    }

    /// Deletes `key` if it exists; whether it did. (DeleteObject succeeds either way.)
    async fn delete_key(&self, key: &str) -> Result<bool, S3Error> {
        if !self.exists(key).await? {
            return Ok(false);
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.errors.sdk("delete", Some(key), e))?;
        Ok(true)
    }

    /// Writes the manifest of snapshot `name` (after its object is complete).
    pub async fn put_manifest(&self, name: &SnapshotName, manifest: &Manifest) -> Result<(), S3Error> {
        let key = self.manifest_key(name);
        if &manifest.name != name {
            return Err(S3Error::BadManifest {
                key,
                reason: format!("it names snapshot `{}`, not `{name}`", manifest.name),
            });
        }
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| S3Error::Internal(e.to_string()))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| self.errors.sdk("upload", Some(&key), e))?;
        Ok(())
    }

    /// Reads the manifest of snapshot `name`; `None` when there is none.
    pub async fn get_manifest(&self, name: &SnapshotName) -> Result<Option<Manifest>, S3Error> {
        let key = self.manifest_key(name);
        let resp = match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(r) => r,
            Err(e) => {
                return match self.errors.sdk("download", Some(&key), e) {
                    S3Error::NotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        if resp.content_length().unwrap_or(0) as u64 > MANIFEST_MAX {
            return Err(S3Error::BadManifest { key, reason: format!("it is larger than {MANIFEST_MAX} bytes") });
        }
        let bytes = resp
            .body
            .collect()
            .await
            .map_err(|e| S3Error::Transfer {
                action: "download",
                endpoint: self.errors.endpoint.clone(),
                reason: self.errors.chain(&e),
            })?
            .into_bytes();
        let manifest = parse_manifest(&bytes).map_err(|reason| S3Error::BadManifest { key: key.clone(), reason })?;
        if &manifest.name != name {
            return Err(S3Error::BadManifest {
                key,
                reason: format!("it names snapshot `{}`, not `{name}`", manifest.name),
            });
        }
        Ok(Some(manifest))
    }
}

/// Parses a manifest, refusing formats this version does not know.
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let f: Format = serde_json::from_slice(bytes).map_err(|e| format!("not JSON with a `format` field: {e}"))?;
    if f.format != MANIFEST_FORMAT {
        return Err(format!(
            "format {} is not known to this rkectl (it reads format {MANIFEST_FORMAT}); use a newer rkectl",
            f.format
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn settings(folder: Option<&str>) -> S3Settings {
        S3Settings {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            region: None,
            folder: folder.map(str::to_string),
            custom_ca: None,
            access_key: Secret::new("AKID"),
            secret_key: Secret::new("secret"),
            session_token: None,
        }
    }

    #[test]
    fn keys_sit_in_the_folder() {
        let name = SnapshotName::new("snap1").unwrap();
        let c = block_on(S3Client::new(&settings(Some("/backups/etcd/")))).unwrap();
        assert_eq!(c.key(&name), "backups/etcd/snap1");
        assert_eq!(c.manifest_key(&name), "backups/etcd/snap1.rkectl.json");
        let c = block_on(S3Client::new(&settings(Some("  ")))).unwrap();
        assert_eq!(c.key(&name), "snap1");
        let c = block_on(S3Client::new(&settings(None))).unwrap();
        assert_eq!(c.manifest_key(&name), "snap1.rkectl.json");
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let mut s = settings(None);
        s.secret_key = Secret::default();
        let e = block_on(S3Client::new(&s)).unwrap_err();
        assert!(e.to_string().contains("secret_key is empty"), "{e}");
    }

    #[test]
    fn manifests_round_trip_and_refuse_unknown_formats() {
        let m = Manifest {
            format: 1,
            name: SnapshotName::new("s").unwrap(),
            size: 3,
            checksum: Checksum::of(b"abc"),
            created: 1_700_000_000,
            cluster: "c".into(),
            sealed_state: None,
        };
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse_manifest(&json).unwrap(), m);
        let v2 = String::from_utf8(json).unwrap().replace("\"format\":1", "\"format\":2");
        assert!(parse_manifest(v2.as_bytes()).unwrap_err().contains("format 2"));
        assert!(parse_manifest(b"{}").is_err());
    }
}
