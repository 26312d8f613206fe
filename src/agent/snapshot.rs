//! Snapshot files on a node: take one (streaming it to S3 as it is written), check one,
//! download one from S3, delete some.
//!
//! Taking a snapshot runs `etcdctl snapshot save`, which writes `<name>.part` and renames
//! it when done. While it writes, a reader follows the growing file and feeds every chunk
//! to BLAKE3 (our checksum), to SHA-256 (etcd's own integrity trailer) on another thread,
//! and, with S3, to the multipart upload: hashing and uploading overlap the save instead
//! of following it.

use super::report::{EtcdStatus, SnapshotReport};
use super::{AgentError, Tls, etcdctl};
use crate::config::S3Settings;
use crate::plan::step::{Checksum, SnapshotName};
use crate::s3::{Manifest, NoProgress, S3Client};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const CHUNK: usize = 1 << 20;

/// Prefix of the progress lines the workstation follows (`RKECTL-PROGRESS <bytes>`).
pub const PROGRESS: &str = "RKECTL-PROGRESS ";

/// Prints the bytes moved so far, at most four times a second.
#[derive(Default)]
pub struct PrintProgress {
    bytes: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl PrintProgress {
    fn print(&self, force: bool) {
        let mut last = self.last.lock().expect("progress lock");
        if force || last.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
            *last = Some(std::time::Instant::now());
            println!("{PROGRESS}{}", self.bytes.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}

impl crate::s3::TransferProgress for PrintProgress {
    fn started(&self, _total: Option<u64>) {}
    fn advanced(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.print(false);
    }
    fn finished(&self) {
        self.print(true);
    }
}

/// Folder of rkectl's records beside the snapshots.
pub fn records_dir(dir: &Path) -> PathBuf {
    dir.join(".rkectl")
}

/// Hashes a stream of chunks: BLAKE3 here, SHA-256 of all but the last 32 bytes on a
/// thread of its own (it is the slow one), so etcd's trailer can be checked at the end.
struct Hashes {
    blake: blake3::Hasher,
    size: u64,
    tail: Vec<u8>,
    sha_tx: Option<mpsc::SyncSender<Bytes>>,
    sha: Option<std::thread::JoinHandle<[u8; 32]>>,
}

impl Hashes {
    fn new() -> Hashes {
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

    fn update(&mut self, chunk: &[u8]) {
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
    fn finish(mut self) -> (u64, Checksum, Option<String>) {
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

async fn status(path: &Path) -> Result<EtcdStatus, String> {
    let mut c = tokio::process::Command::new(etcdctl::etcdctl_bin());
    c.env("ETCDCTL_API", "3").args(["snapshot", "status", "-w", "json"]).arg(path);
    let out = etcdctl::output(c).await.map_err(|e| e.0)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| e.to_string())?;
    Ok(EtcdStatus {
        hash: v.get("hash").and_then(|x| x.as_u64()).unwrap_or(0),
        revision: v.get("revision").and_then(|x| x.as_i64()).unwrap_or(0),
        total_keys: v.get("totalKey").and_then(|x| x.as_u64()).unwrap_or(0),
    })
}

fn report(
    name: &str,
    size: u64,
    checksum: Checksum,
    trailer: Option<String>,
    status: Result<EtcdStatus, String>,
    uploaded: bool,
) -> SnapshotReport {
    let (etcd, status_problem) = match status {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("etcdctl snapshot status fails: {e}"))),
    };
    let problem = trailer.or(status_problem);
    SnapshotReport { name: name.to_string(), size, checksum, etcd_ok: problem.is_none(), problem, etcd, uploaded }
}

/// Size, BLAKE3, etcd's trailer and `etcdctl snapshot status` of a file.
pub async fn verify(path: &Path) -> Result<SnapshotReport, AgentError> {
    let p = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Hashes::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    });
    let (hashed, st) = tokio::join!(hashed, status(path));
    let (size, checksum, trailer) = hashed
        .map_err(|e| AgentError::new(e.to_string()))?
        .map_err(|e| AgentError::new(format!("{}: {e}", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(report(&name, size, checksum, trailer, st, false))
}

/// Size and BLAKE3 only; `etcd_ok` is left as the file's record says (or true).
pub async fn checksum(path: &Path) -> Result<SnapshotReport, AgentError> {
    let p = path.to_path_buf();
    let (size, sum) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut f = std::fs::File::open(&p)?;
        let mut h = blake3::Hasher::new();
        let size = std::io::copy(&mut f, &mut h)?;
        Ok((size, Checksum::from_hasher(&h)))
    })
    .await
    .map_err(|e| AgentError::new(e.to_string()))?
    .map_err(|e| AgentError::new(format!("{}: {e}", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SnapshotReport { name, size, checksum: sum, etcd_ok: true, problem: None, etcd: None, uploaded: false })
}

fn write_record(dir: &Path, r: &SnapshotReport) -> Result<(), AgentError> {
    let records = records_dir(dir);
    std::fs::create_dir_all(&records)?;
    crate::state::cluster_state::write_private_atomic(
        &records.join(format!("{}.json", r.name)),
        &serde_json::to_vec(r).expect("report serialises"),
    )?;
    Ok(())
}

/// Takes a snapshot from `endpoint` into `<dir>/<name>`, streaming it to S3 when given.
pub async fn save(
    endpoint: &str,
    tls: &Tls,
    dir: &Path,
    name: &str,
    s3: Option<&S3Settings>,
) -> Result<SnapshotReport, AgentError> {
    let snapshot = SnapshotName::new(name).map_err(|e| AgentError::new(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let part = dir.join(format!("{name}.part"));
    let _ = std::fs::remove_file(&part);
    let client = match s3 {
        Some(s) => Some(S3Client::new(s).await.map_err(|e| AgentError::new(e.to_string()))?),
        None => None,
    };

    let mut save = etcdctl::command(endpoint, tls);
    save.arg("snapshot").arg("save").arg(&path);
    let child = save.spawn().map_err(|e| AgentError::new(format!("cannot run etcdctl: {e}")))?;
    let (done_tx, done_rx) = tokio::sync::watch::channel::<Option<bool>>(None);
    let (up_tx, up_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let follow_part = part.clone();
    let follow_final = path.clone();
    let upload_wanted = client.is_some();
    // Follow the file while etcdctl writes it.
    let follower = tokio::task::spawn_blocking(move || -> Result<(u64, Checksum, Option<String>), String> {
        let mut f = loop {
            if let Ok(f) = std::fs::File::open(&follow_part) {
                break f;
            }
            match *done_rx.borrow() {
                // etcdctl may have finished and renamed before we looked.
                Some(true) => break std::fs::File::open(&follow_final).map_err(|e| e.to_string())?,
                Some(false) => return Err("etcdctl failed before writing the snapshot".into()),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut h = Hashes::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).map_err(|e| e.to_string())?;
            if n > 0 {
                h.update(&buf[..n]);
                if upload_wanted && up_tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                    return Err("the upload stopped".into());
                }
                continue;
            }
            match *done_rx.borrow() {
                None => std::thread::sleep(Duration::from_millis(10)),
                Some(true) => {
                    // Writing is over; read whatever landed after our last read.
                    let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    if upload_wanted && up_tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return Err("the upload stopped".into());
                    }
                }
                Some(false) => {
                    let _ = up_tx.blocking_send(Err(std::io::Error::other("etcdctl snapshot save failed")));
                    return Err("etcdctl snapshot save failed".into());
                }
            }
        }
        Ok(h.finish())
    });
    let upload = async {
        match &client {
            Some(c) => {
                let reader = tokio_util::io::StreamReader::new(Box::pin(tokio_stream_from(up_rx)));
                Some(c.upload(&snapshot, reader, &PrintProgress::default()).await)
            }
            None => {
                drop(up_rx);
                None
            }
        }
    };
    let wait = async {
        let out = child.wait_with_output().await;
        let ok = matches!(&out, Ok(o) if o.status.success());
        let _ = done_tx.send(Some(ok));
        out
    };
    let (saved, uploaded, followed) = tokio::join!(wait, upload, follower);
    let saved = saved.map_err(|e| AgentError::new(format!("etcdctl: {e}")))?;
    if !saved.status.success() {
        return Err(AgentError::new(format!(
            "etcdctl snapshot save from {endpoint} failed: {}",
            String::from_utf8_lossy(&saved.stderr).trim()
        )));
    }
    let (size, checksum, trailer) = followed.map_err(|e| AgentError::new(e.to_string()))?.map_err(AgentError::new)?;
    let st = status(&path).await;
    let mut r = report(name, size, checksum, trailer, st, false);
    if let (Some(c), Some(up)) = (&client, uploaded) {
        let up = up.map_err(|e| AgentError::new(e.to_string()))?;
        if up.checksum != r.checksum || up.size != r.size {
            let _ = c.delete(&snapshot).await;
            return Err(AgentError::new("the uploaded bytes differ from the file written; the object was deleted"));
        }
        c.put_manifest(&snapshot, &Manifest::new(snapshot.clone(), &up, "", None))
            .await
            .map_err(|e| AgentError::new(e.to_string()))?;
        r.uploaded = true;
    }
    if r.etcd_ok {
        write_record(dir, &r)?;
    }
    Ok(r)
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Downloads `<name>` from S3 into `<dir>`, verified against its manifest.
pub async fn download(s3: &S3Settings, dir: &Path, name: &str) -> Result<SnapshotReport, AgentError> {
    let snapshot = SnapshotName::new(name).map_err(|e| AgentError::new(e.to_string()))?;
    let client = S3Client::new(s3).await.map_err(|e| AgentError::new(e.to_string()))?;
    let manifest =
        client.get_manifest(&snapshot).await.map_err(|e| AgentError::new(e.to_string()))?.ok_or_else(|| {
            AgentError::new(format!(
                "snapshot {name} has no manifest in S3 (not uploaded by rkectl, or the upload did not finish)"
            ))
        })?;
    std::fs::create_dir_all(dir)?;
    let part = dir.join(format!("{name}.part"));
    let file = tokio::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&part).await?;
    let got = client.download(&snapshot, file, &NoProgress).await.map_err(|e| AgentError::new(e.to_string()))?;
    if got.checksum != manifest.checksum || got.size != manifest.size {
        let _ = std::fs::remove_file(&part);
        return Err(AgentError::new(format!(
            "snapshot {name} downloaded from S3 does not match its manifest ({} bytes {}, expected {} bytes {})",
            got.size, got.checksum, manifest.size, manifest.checksum
        )));
    }
    std::fs::File::open(&part)?.sync_all()?;
    let r = verify(&part).await?;
    let path = dir.join(name);
    std::fs::rename(&part, &path)?;
    let r = SnapshotReport { name: name.to_string(), ..r };
    write_record(dir, &r)?;
    Ok(r)
}

/// Deletes snapshots and their records from `dir`.
pub fn delete(dir: &Path, names: &[String]) -> Result<(), AgentError> {
    let mut deleted = Vec::new();
    for n in names {
        SnapshotName::new(n.as_str()).map_err(|e| AgentError::new(e.to_string()))?;
        for p in [dir.join(n), records_dir(dir).join(format!("{n}.json"))] {
            match std::fs::remove_file(&p) {
                Ok(()) => deleted.push(p.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::new(format!("{}: {e}", p.display()))),
            }
        }
    }
    println!(
        "{}",
        super::report::line(&super::report::Done { changed: !deleted.is_empty(), detail: deleted.join(", ") })
    );
    Ok(())
}
