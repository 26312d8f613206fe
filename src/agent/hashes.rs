//! What is computed of every snapshot byte: BLAKE3 (rkectl's checksum) and the SHA-256
//! trailer `etcdctl snapshot save` appends (etcd's own integrity check), and
//! `etcdctl snapshot status` of a plain file.

use super::etcdctl;
use super::report::EtcdStatus;
use crate::model::Checksum;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::mpsc;

/// Hashes a stream of chunks: BLAKE3 here, SHA-256 of all but the last 32 bytes on a
/// thread of its own (it is the slow one), so etcd's trailer can be checked at the end.
pub struct Hashes {
    blake: blake3::Hasher,
    size: u64,
    tail: Vec<u8>,
    sha_tx: Option<mpsc::SyncSender<Bytes>>,
    sha: Option<std::thread::JoinHandle<[u8; 32]>>,
}

impl Hashes {
    pub fn new() -> Hashes {
        let (tx, rx) = mpsc::sync_channel::<Bytes>(16);
        let sha = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                h.update(&chunk);
            }
            h.finalize().into()
        });
        Hashes { blake: blake3::Hasher::new(), size: 0, tail: Vec::with_capacity(64), sha_tx: Some(tx), sha: Some(sha) }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.blake.update(chunk);
        self.size += chunk.len() as u64;
        // Keep the last 32 bytes back from SHA-256: they may be etcd's trailer.
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 32 {
            let cut = self.tail.len() - 32;
            let head: Vec<u8> = self.tail.drain(..cut).collect();
            if let Some(tx) = &self.sha_tx {
                let _ = tx.send(Bytes::from(head));
            }
        }
    }

    /// (size, checksum, problem with etcd's trailer if any).
    pub fn finish(mut self) -> (u64, Checksum, Option<String>) {
        drop(self.sha_tx.take());
        let sha = self.sha.take().and_then(|h| h.join().ok()).unwrap_or([0; 32]);
        let problem = if self.size % 512 == 32 {
            (sha[..] != self.tail[..])
                .then(|| "its SHA-256 trailer does not match its contents (the file is damaged)".to_string())
        } else {
            Some(
                "it has no SHA-256 trailer: it was not written by `etcdctl snapshot save` (or it was cut short)"
                    .to_string(),
            )
        };
        (self.size, Checksum::from_hasher(&self.blake), problem)
    }
}

impl Default for Hashes {
    fn default() -> Self {
        Hashes::new()
    }
}

/// `etcdctl snapshot status` of a plain snapshot file.
pub async fn status(path: &Path) -> Result<EtcdStatus, String> {
    let mut c = tokio::process::Command::new(etcdctl::etcdctl_bin());
    c.env("ETCDCTL_API", "3").args(["snapshot", "status", "-w", "json"]).arg(path);
    let out = etcdctl::output(c).await.map_err(|e| e.message)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| e.to_string())?;
    Ok(EtcdStatus {
        hash: v.get("hash").and_then(|x| x.as_u64()).unwrap_or(0),
        revision: v.get("revision").and_then(|x| x.as_i64()).unwrap_or(0),
        total_keys: v.get("totalKey").and_then(|x| x.as_u64()).unwrap_or(0),
    })
}
