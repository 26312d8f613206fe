//! Snapshot files on a node: take one as rke-tools' archive (streaming it to S3 as it is
//! written), download one from S3, delete some.
//!
//! Taking a snapshot runs `etcdctl snapshot save`, which writes `<name>.part` and renames
//! it when done. While it writes, a reader follows the growing file: every chunk goes to
//! etcd's trailer check and into the archive `<name>.zip.part`, whose bytes are hashed
//! (BLAKE3, the checksum of the file kept) and, with S3, fed to the multipart upload. When
//! etcdctl is done the archive gets the cluster state (if asked), is synced and renamed to
//! `<name>.zip`, and the plain file is removed, as rke-tools removes it.

use super::follow::{Followed, Tee, follow};
use super::hashes::status;
use super::report::{EtcdStatus, SnapshotReport};
use super::stall::{self, StallLimit, Stalled};
use super::verify::{private_file, verify_as, with_checks};
use super::{AgentError, Tls, etcdctl};
use crate::config::S3Settings;
use crate::model::{SnapshotFormat, SnapshotName};
use crate::s3::{Manifest, NoProgress, S3Client, S3Error, TransferProgress, Uploaded};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

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

fn write_record(dir: &Path, r: &SnapshotReport) -> Result<(), AgentError> {
    let records = records_dir(dir);
    std::fs::create_dir_all(&records)?;
    crate::local::write_private_atomic(
        &records.join(format!("{}.json", r.name)),
        &serde_json::to_vec(r).expect("report serialises"),
    )?;
    Ok(())
}

/// The S3 object name of a snapshot file: its file name (`<name>.zip`).
pub fn object_name(name: &SnapshotName, format: SnapshotFormat) -> Result<SnapshotName, AgentError> {
    SnapshotName::new(format.file_name(name)).map_err(|e| AgentError::new(e.to_string()))
}

/// What a save is asked to do.
pub struct SaveRequest<'a> {
    pub endpoint: &'a str,
    pub tls: &'a Tls,
    pub dir: &'a Path,
    pub name: &'a str,
    pub s3: Option<&'a S3Settings>,
    /// RKE's state file to put inside the archive (it is removed once it is in).
    pub state_file: Option<&'a Path>,
    /// Every etcd host gets a copy of this one (a one-time save), rather than taking its own.
    pub copied_to_every_host: bool,
    /// How long etcdctl may write nothing before the save is given up.
    pub stall_limit: StallLimit,
    /// Where the count of database bytes taken so far goes: printed for the workstation
    /// (one-time saves), or nowhere (the recurring service, whose log is rke-tools').
    pub progress: Arc<dyn TransferProgress>,
}

/// How etcdctl's run ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stalled(Stalled),
}

/// Takes a snapshot from `endpoint` into `<dir>/<name>.zip`, streaming it to S3 when given.
pub async fn save(req: SaveRequest<'_>) -> Result<SnapshotReport, AgentError> {
    let SaveRequest { endpoint, tls, dir, name, s3, state_file, copied_to_every_host, stall_limit, progress } = req;
    let snapshot = SnapshotName::new(name).map_err(|e| AgentError::new(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    let paths = SavePaths::new(dir, name, &snapshot);
    for p in [&paths.plain_part, &paths.zip_part] {
        let _ = std::fs::remove_file(p);
    }
    let state = match state_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| AgentError::new(format!("{}: {e}", p.display())))?),
        None => None,
    };
    let client = match s3 {
        Some(s) => Some(S3Client::new(s).await.map_err(|e| AgentError::new(e.to_string()))?),
        None => None,
    };
    let has_state = state.is_some();
    let started = start(endpoint, tls, &paths, client.is_some(), snapshot, state, progress.clone())?;
    let object = object_name(&SnapshotName::new(name).expect("checked"), SnapshotFormat::Zip)?;
    let Taken { ended, uploaded, followed, said } =
        take(started, client.as_ref(), &object, &paths.plain_part, stall_limit, progress.as_ref()).await;
    let followed = match followed_or_failure(ended, followed, endpoint, stall_limit, &said) {
        Ok(f) => f,
        Err(e) => {
            paths.cleanup();
            return Err(e);
        }
    };
    let st = place_archive(&paths, dir, state_file).await?;
    let mut r = saved_report(name, followed, has_state, copied_to_every_host, st);
    if let (Some(c), Some(up)) = (&client, uploaded) {
        confirm_upload(c, &object, up, &r).await?;
        r.uploaded = true;
    }
    if r.etcd_ok {
        write_record(dir, &r)?;
    }
    Ok(r)
}

/// The files of one save in its folder.
struct SavePaths {
    /// The plain file, once etcdctl has renamed it into place.
    plain: PathBuf,
    /// The plain file while etcdctl writes it.
    plain_part: PathBuf,
    zip_path: PathBuf,
    zip_part: PathBuf,
}

impl SavePaths {
    /// Where the save of `name` (checked as `snapshot`) writes in `dir`.
    fn new(dir: &Path, name: &str, snapshot: &SnapshotName) -> Self {
        SavePaths {
            plain: dir.join(name),
            plain_part: dir.join(format!("{name}.part")),
            zip_path: dir.join(SnapshotFormat::Zip.file_name(snapshot)),
            zip_part: dir.join(format!("{}.part", SnapshotFormat::Zip.file_name(snapshot))),
        }
    }

    /// Removes what a failed save leaves behind.
    fn cleanup(&self) {
        for p in [&self.plain_part, &self.zip_part, &self.plain] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// etcdctl running, the follower archiving what it writes, and what joins them.
struct Started {
    child: tokio::process::Child,
    /// etcdctl's stderr, read to its end.
    said: tokio::task::JoinHandle<Vec<u8>>,
    /// Tells the follower whether etcdctl succeeded, once it has ended.
    done_tx: tokio::sync::watch::Sender<Option<bool>>,
    /// The archive's bytes, as the follower hands them to the upload.
    up_rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    /// Fails the upload when the save fails (only with S3).
    abort_upload: Option<tokio::sync::mpsc::Sender<std::io::Result<Bytes>>>,
    follower: tokio::task::JoinHandle<Result<Followed, String>>,
}

/// Starts `etcdctl snapshot save` into `paths.plain`, and the follower that archives the
/// file as it grows (handing the archive on when `uploading`).
fn start(
    endpoint: &str,
    tls: &Tls,
    paths: &SavePaths,
    uploading: bool,
    snapshot: SnapshotName,
    state: Option<Vec<u8>>,
    progress: Arc<dyn TransferProgress>,
) -> Result<Started, AgentError> {
    let mut save = etcdctl::snapshot_save(endpoint, tls, &paths.plain);
    // Our stdout carries the report line; etcdctl's complaints are quoted in our error.
    save.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = save.spawn().map_err(|e| AgentError::new(format!("cannot run {}: {e}", etcdctl::etcdctl_bin())))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let said = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        v
    });
    let (done_tx, done_rx) = tokio::sync::watch::channel::<Option<bool>>(None);
    let (up_tx, up_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    // A failed save must fail the upload too: the end of the stream alone would complete
    // the object with what was read so far.
    let abort_upload = uploading.then(|| up_tx.clone());
    let tee = Tee {
        file: private_file(&paths.zip_part)?,
        hasher: blake3::Hasher::new(),
        size: 0,
        upload: uploading.then_some(up_tx),
    };
    let (follow_part, follow_final) = (paths.plain_part.clone(), paths.plain.clone());
    let follower = tokio::task::spawn_blocking(move || {
        follow(&follow_part, &follow_final, done_rx, tee, &snapshot, state, progress.as_ref())
    });
    Ok(Started { child, said, done_tx, up_rx, abort_upload, follower })
}

/// How the parts of a save ended.
struct Taken {
    ended: Ended,
    /// The upload's result, when there was one.
    uploaded: Option<Result<Uploaded, S3Error>>,
    followed: Result<Result<Followed, String>, tokio::task::JoinError>,
    /// What etcdctl said on stderr, trimmed.
    said: String,
}

/// Runs etcdctl, the upload to `object` (with a client) and the follower to their ends.
async fn take(
    started: Started,
    client: Option<&S3Client>,
    object: &SnapshotName,
    plain_part: &Path,
    stall_limit: StallLimit,
    progress: &dyn TransferProgress,
) -> Taken {
    let Started { mut child, said, done_tx, up_rx, abort_upload, follower } = started;
    let upload = async {
        match client {
            Some(c) => {
                let reader = tokio_util::io::StreamReader::new(Box::pin(tokio_stream_from(up_rx)));
                // Progress is the follower's: the bytes it hands on are the ones the upload takes.
                Some(c.upload(object, reader, &NoProgress).await)
            }
            None => {
                drop(up_rx);
                None
            }
        }
    };
    let wait = wait_for_etcdctl(&mut child, plain_part, stall_limit, abort_upload, &done_tx);
    let (ended, uploaded, followed) = tokio::join!(wait, upload, follower);
    progress.finished();
    let said = String::from_utf8_lossy(&said.await.unwrap_or_default()).trim().to_string();
    Taken { ended, uploaded, followed, said }
}

/// Waits for etcdctl to exit, or stops it when it stalls; then fails the upload if the
/// save failed, and tells the follower how it ended.
async fn wait_for_etcdctl(
    child: &mut tokio::process::Child,
    plain_part: &Path,
    stall_limit: StallLimit,
    abort_upload: Option<tokio::sync::mpsc::Sender<std::io::Result<Bytes>>>,
    done_tx: &tokio::sync::watch::Sender<Option<bool>>,
) -> Ended {
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        stalled = stall::watch(plain_part, stall_limit) => Ended::Stalled(stalled),
    };
    if matches!(ended, Ended::Stalled(_)) {
        let _ = child.kill().await;
    }
    let ok = matches!(&ended, Ended::Exited(Ok(s)) if s.success());
    if !ok && let Some(tx) = &abort_upload {
        let _ = tx.send(Err(std::io::Error::other("the snapshot save failed"))).await;
    }
    drop(abort_upload);
    let _ = done_tx.send(Some(ok));
    ended
}

/// What the follower made, or why the save failed: etcdctl's end is judged first.
fn followed_or_failure(
    ended: Ended,
    followed: Result<Result<Followed, String>, tokio::task::JoinError>,
    endpoint: &str,
    stall_limit: StallLimit,
    said: &str,
) -> Result<Followed, AgentError> {
    match ended {
        Ended::Exited(Ok(status)) if status.success() => {}
        Ended::Exited(Ok(status)) => {
            return Err(AgentError::new(format!(
                "etcdctl snapshot save from {endpoint} failed ({status}): {}",
                last_lines(said, 3)
            )));
        }
        Ended::Exited(Err(e)) => {
            return Err(AgentError::new(format!("etcdctl snapshot save from {endpoint}: {e}")));
        }
        Ended::Stalled(stalled) => {
            return Err(AgentError::new(stalled_message(endpoint, stall_limit, stalled)));
        }
    }
    followed.map_err(|e| AgentError::new(e.to_string())).and_then(|f| f.map_err(AgentError::new))
}

/// Puts the archive in place and removes the plain file and the state file it now holds;
/// returns etcd's status of the plain file.
async fn place_archive(
    paths: &SavePaths,
    dir: &Path,
    state_file: Option<&Path>,
) -> Result<Result<EtcdStatus, String>, AgentError> {
    // `snapshot status` reads the plain file, which goes once the archive is in place.
    let st = status(&paths.plain).await;
    std::fs::rename(&paths.zip_part, &paths.zip_path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let _ = std::fs::remove_file(&paths.plain);
    if let Some(p) = state_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(st)
}

/// The report of a saved archive, with etcd's checks of its database.
fn saved_report(
    name: &str,
    followed: Followed,
    has_state: bool,
    copied_to_every_host: bool,
    st: Result<EtcdStatus, String>,
) -> SnapshotReport {
    with_checks(
        SnapshotReport {
            name: name.to_string(),
            format: SnapshotFormat::Zip,
            size: followed.archive.size,
            checksum: followed.archive.checksum.clone(),
            etcd_ok: true,
            problem: None,
            etcd: None,
            uploaded: false,
            db: Some(followed.db.clone()),
            has_state,
            identical_everywhere: copied_to_every_host,
        },
        followed.trailer,
        Some(st),
    )
}

/// Checks the uploaded object against the archive written and puts its manifest beside
/// it; an object that differs is deleted.
async fn confirm_upload(
    c: &S3Client,
    object: &SnapshotName,
    up: Result<Uploaded, S3Error>,
    r: &SnapshotReport,
) -> Result<(), AgentError> {
    let up = up.map_err(|e| AgentError::new(e.to_string()))?;
    if up.checksum != r.checksum || up.size != r.size {
        let _ = c.delete(object).await;
        return Err(AgentError::new("the uploaded bytes differ from the file written; the object was deleted"));
    }
    c.put_manifest(object, &Manifest::new(object.clone(), &up, "", None))
        .await
        .map_err(|e| AgentError::new(e.to_string()))?;
    Ok(())
}

/// Why a stalled save was given up.
fn stalled_message(endpoint: &str, limit: StallLimit, stalled: Stalled) -> String {
    format!(
        "etcdctl snapshot save made no progress for {} s (endpoint {endpoint}, {} bytes received); it was stopped",
        limit.0.as_secs_f64(),
        stalled.bytes
    )
}

/// The last lines of what etcdctl said, its info lines left out (its error comes last).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains(r#""level":"info""#)).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// What a download is asked to do.
pub struct DownloadRequest<'a> {
    pub s3: &'a S3Settings,
    pub name: &'a str,
    pub format: SnapshotFormat,
    /// Where the file goes (the snapshot folder, or the restore's staging folder).
    pub into: &'a Path,
    /// The object's ETag the plan pinned, for objects rkectl did not write.
    pub etag: Option<&'a str>,
    /// The checksum the plan pinned, for objects with rkectl's manifest: the manifest may
    /// have been replaced with the object since.
    pub checksum: Option<&'a crate::model::Checksum>,
}

/// Downloads a snapshot from S3 into `into`, verified: against rkectl's manifest and the
/// pinned checksum, or the pinned ETag for an object without one; then etcd's checks of
/// the file (or of the database inside an archive). Every check is of the `.part` file: only
/// a verified download is renamed to the snapshot's name, so a crash never leaves a file
/// there that would count as the host's own copy.
pub async fn download(req: DownloadRequest<'_>) -> Result<SnapshotReport, AgentError> {
    let snapshot = SnapshotName::new(req.name).map_err(|e| AgentError::new(e.to_string()))?;
    let object = object_name(&snapshot, req.format)?;
    let client = S3Client::new(req.s3).await.map_err(|e| AgentError::new(e.to_string()))?;
    let manifest = client.get_manifest(&object).await.map_err(|e| AgentError::new(e.to_string()))?;
    if manifest.is_none() && req.etag.is_none() {
        return Err(AgentError::new(format!(
            "{object} has no rkectl manifest in S3 and the plan pinned no ETag for it; plan again"
        )));
    }
    std::fs::create_dir_all(req.into)?;
    let path = req.into.join(object.as_str());
    let part = req.into.join(format!("{object}.part"));
    let file = tokio::fs::File::from_std(private_file(&part)?);
    // Printed, so that the workstation sees a long download is alive.
    let got = client.download_pinned(&object, req.etag, file, &PrintProgress::default()).await;
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(AgentError::new(e.to_string()));
        }
    };
    if let Some(m) = &manifest
        && (got.checksum != m.checksum || got.size != m.size)
    {
        let _ = std::fs::remove_file(&part);
        return Err(AgentError::new(format!(
            "snapshot {object} downloaded from S3 does not match its manifest ({} bytes {}, expected {} bytes {})",
            got.size, got.checksum, m.size, m.checksum
        )));
    }
    if let Some(want) = req.checksum
        && &got.checksum != want
    {
        let _ = std::fs::remove_file(&part);
        return Err(AgentError::new(format!(
            "snapshot {object} downloaded from S3 is not the one the plan pinned ({}, expected {}): it changed since the plan was made; plan again",
            got.checksum.short(),
            want.short()
        )));
    }
    let r = verify_as(&part, &snapshot, req.format).await;
    if !matches!(&r, Ok(r) if r.etcd_ok) {
        let _ = std::fs::remove_file(&part);
    }
    let r = r?;
    if r.etcd_ok {
        std::fs::File::open(&part)?.sync_all()?;
        std::fs::rename(&part, &path)?;
        if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        if req.into == Path::new(crate::layout::SNAPSHOT_DIR) {
            write_record(req.into, &r)?;
        }
    }
    Ok(r)
}

/// Deletes snapshots in every format, and their records, from `dir`.
pub fn delete(dir: &Path, names: &[String]) -> Result<(), AgentError> {
    let mut deleted = Vec::new();
    for n in names {
        let name = SnapshotName::new(n.as_str()).map_err(|e| AgentError::new(e.to_string()))?;
        let files = [
            dir.join(SnapshotFormat::Raw.file_name(&name)),
            dir.join(SnapshotFormat::Zip.file_name(&name)),
            records_dir(dir).join(format!("{n}.json")),
        ];
        for p in files {
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
