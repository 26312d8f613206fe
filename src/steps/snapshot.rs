//! Snapshot steps: verify a copy, give a host a copy, unpack an archive, take a snapshot,
//! delete one, tidy up after a restore.

use super::Executor;
use super::direct_copy::{Direct, DirectCopy};
use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::exec::events::DataPath;
use crate::exec::{StepCtx, StepError};
use crate::host::{ByteStream, Host};
use crate::layout;
use crate::plan::step::{
    Checksum, DeleteFrom, Pin, SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName, SnapshotSource,
};
use crate::secret::Secret;
use std::pin::Pin as StdPin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// rkectl's record of a snapshot on a host, if there is one, whether or not its file is
/// still there: callers match it to the file themselves.
pub(super) async fn read_record_file(
    host: &dyn Host,
    name: &SnapshotName,
) -> Result<Option<SnapshotReport>, StepError> {
    Ok(host.read_file(&layout::record(name)).await?.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Whether a record describes a file of the snapshot folder's listing: the record's
/// format, under the snapshot's name, of the record's size.
fn record_describes(record: &SnapshotReport, name: &SnapshotName, listing: &[crate::host::DirEntry]) -> bool {
    let file = record.format.file_name(name);
    listing.iter().any(|e| e.name == file && e.size == record.size)
}

/// rkectl's record of a snapshot on a host, when the file it describes is there. A record
/// outlives its file when the file is deleted by hand, by RKE's retention or by `rke etcd
/// snapshot-remove`: what is on disk decides, and a record never stands in for a file.
pub async fn read_record(host: &dyn Host, name: &SnapshotName) -> Result<Option<SnapshotReport>, StepError> {
    let Some(r) = read_record_file(host, name).await? else { return Ok(None) };
    let listing = host.list_dir(layout::SNAPSHOT_DIR).await?;
    Ok(record_describes(&r, name, &listing).then_some(r))
}

/// A host's file, read in ranges.
struct HostFile {
    host: Arc<dyn Host>,
    path: String,
    size: u64,
}

#[async_trait::async_trait]
impl crate::rke::archive::RangeSource for HostFile {
    fn size(&self) -> u64 {
        self.size
    }
    async fn read_range(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        self.host.read_range(&self.path, offset, len).await.map_err(std::io::Error::other)
    }
}

/// The cluster state inside snapshot `name`'s archive on a host, if it has one; only the
/// archive's directory and that entry cross the network.
pub async fn archive_state(host: Arc<dyn Host>, name: &SnapshotName) -> Result<Option<Secret>, StepError> {
    let file = SnapshotFormat::Zip.file_name(name);
    let Some(entry) = host.list_dir(layout::SNAPSHOT_DIR).await?.into_iter().find(|e| e.name == file) else {
        return Ok(None);
    };
    let path = layout::snapshot_file(name, SnapshotFormat::Zip, SnapshotLocation::Listed);
    let source = Arc::new(HostFile { host, path, size: entry.size });
    let state = crate::rke::archive::remote_state(source, name.as_str())
        .await
        .map_err(|e| StepError::fatal(format!("cannot read the archive of {name}: {e}")))?;
    Ok(state.map(|b| Secret::new(String::from_utf8_lossy(&b).into_owned())))
}

/// A reader that hashes and counts what passes through it.
struct Hashing {
    inner: ByteStream,
    hasher: Arc<Mutex<blake3::Hasher>>,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Hashing {
    fn poll_read(
        mut self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = StdPin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.hasher.lock().expect("hasher lock").update(new);
                self.count.fetch_add(new.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }
}

/// What a fetch-snapshot step gives a host.
pub(super) struct Fetch<'a> {
    pub name: &'a SnapshotName,
    pub format: SnapshotFormat,
    pub expect: Option<&'a Pin>,
    pub source: &'a SnapshotSource,
    pub into: SnapshotLocation,
}

fn mismatch(host: &HostAddr, name: &str, what: &str, found: &str, want: &str) -> StepError {
    StepError::fatal(format!(
        "the copy of snapshot {name} on host {host} has {what} {found}, but the plan expects {want}: it changed since the plan was made; plan again"
    ))
}

impl Executor {
    /// Runs the full checksum checker on a file of a host.
    async fn check_file(&self, host: &dyn Host, path: &str) -> Result<SnapshotReport, StepError> {
        let spec = containers::checksum_checker(&self.cluster, &[path.to_string()]);
        self.helper_report(host, &spec).await
    }

    pub(super) async fn verify_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        format: SnapshotFormat,
        expect: Option<&SnapshotFacts>,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let Some(expect) = expect else {
            return Err(StepError::fatal(
                "this plan was made offline and does not pin the snapshot's checksum; plan again without --offline",
            ));
        };
        let host = self.host(addr).await?;
        let file = format.file_name(name);
        // The plan was made from a full check of this copy, and the restore checks etcd's
        // trailer again: here it is enough to prove the bytes are still those, which BLAKE3
        // does several times faster.
        let spec = containers::checksum_only(&self.cluster, std::slice::from_ref(&file));
        let report: SnapshotReport = self.helper_report(host.as_ref(), &spec).await?;
        if report.size != expect.size {
            return Err(mismatch(addr, &file, "size", &report.size.to_string(), &expect.size.to_string()));
        }
        if report.checksum != expect.checksum {
            return Err(mismatch(addr, &file, "checksum", &report.checksum.0, &expect.checksum.0));
        }
        ctx.log("etcd", format!("Verified snapshot [{file}] on host [{addr}] ({})", expect.checksum.short()));
        Ok(())
    }

    pub(super) async fn fetch_snapshot(
        &self,
        addr: &HostAddr,
        f: Fetch<'_>,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let Fetch { name, format, expect, source, into } = f;
        match source {
            SnapshotSource::Host { host: from } => {
                let want = match expect {
                    Some(Pin::Checksum { facts }) => facts.clone(),
                    Some(Pin::S3Object { .. }) => {
                        return Err(StepError::fatal("a copy between hosts is pinned by checksum; plan again"));
                    }
                    None => {
                        let src = self.host(from).await?;
                        let r = read_record(src.as_ref(), name).await?.ok_or_else(|| {
                            StepError::fatal(format!(
                                "host {from} has no snapshot {name} with rkectl's record beside it; it was not saved by this apply"
                            ))
                        })?;
                        SnapshotFacts { size: r.size, checksum: r.checksum }
                    }
                };
                let copy = Fetch { name, format, expect: None, source, into };
                self.copy_between_hosts(addr, from, copy, &want, ctx).await
            }
            SnapshotSource::S3 { target } => {
                let s3 = self.s3.as_ref().ok_or_else(|| {
                    StepError::fatal("S3 credentials are needed to download the snapshot; pass --access-key/--secret-key or set them in cluster.yml")
                })?;
                let dst = self.host(addr).await?;
                let file = format.file_name(name);
                ctx.log("etcd", format!("Downloading snapshot [{file}] from {target} to host [{addr}]"));
                let etag = match expect {
                    Some(Pin::S3Object { etag, .. }) => Some(etag.as_str()),
                    _ => None,
                };
                let dir = match into {
                    SnapshotLocation::Listed => layout::SNAPSHOT_DIR,
                    SnapshotLocation::Staged => layout::STAGING_DIR,
                };
                let spec = containers::s3_download(&self.cluster, name, format, dir, etag, s3);
                let report: SnapshotReport = self.helper_report(dst.as_ref(), &spec).await?;
                if let Some(sum) = expect.and_then(Pin::checksum)
                    && &report.checksum != sum
                {
                    return Err(mismatch(addr, &file, "checksum", &report.checksum.0, &sum.0));
                }
                if !report.etcd_ok {
                    return Err(StepError::fatal(format!(
                        "snapshot {file} downloaded from S3 fails etcd's check: {}",
                        report.problem.unwrap_or_default()
                    )));
                }
                ctx.log(
                    "etcd",
                    format!("Successfully started [{}] container on host [{addr}]", crate::etcd::names::S3_DOWNLOAD),
                );
                Ok(())
            }
        }
    }

    /// Copies a snapshot file from one host to another, hashing it on the way, then checks
    /// the copy fully where it landed.
    async fn copy_between_hosts(
        &self,
        addr: &HostAddr,
        from: &HostAddr,
        f: Fetch<'_>,
        want: &SnapshotFacts,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let Fetch { name, format, into, .. } = f;
        let dst = self.host(addr).await?;
        let src = self.host(from).await?;
        let file = format.file_name(name);
        let target = layout::snapshot_file(name, format, into);
        // Already there and right (a resumed apply): nothing to copy.
        if dst.list_dir(parent(&target)).await?.iter().any(|e| e.name == file && e.size == want.size) {
            let check = self.check_file(dst.as_ref(), &target).await?;
            if check.checksum == want.checksum && check.etcd_ok {
                ctx.log("etcd", format!("Host [{addr}] already has snapshot [{file}]"));
                return Ok(());
            }
        }
        let source_file = layout::snapshot_file(name, format, SnapshotLocation::Listed);
        let direct = DirectCopy { from, to: addr, source_file: &source_file, target: &target, size: want.size };
        let (copied, got) = match self.copy_direct(src.as_ref(), dst.as_ref(), direct, ctx).await? {
            Direct::Copied(r) => {
                ctx.log("etcd", format!("Copied snapshot [{file}] from host [{from}] to host [{addr}] directly"));
                ctx.moved(DataPath::HostToHost, r.size);
                (r.size, r.checksum)
            }
            Direct::Unavailable(why) => {
                ctx.warn(
                    "etcd",
                    format!("Host [{addr}] cannot fetch snapshot [{file}] from host [{from}] directly ({why}); copying it through this workstation"),
                );
                let copied =
                    self.copy_through_workstation(src.as_ref(), dst.as_ref(), &source_file, &target, want, ctx).await?;
                ctx.moved(DataPath::Workstation, 2 * copied.0);
                copied
            }
        };
        if copied != want.size || got != want.checksum {
            dst.remove_file(&target).await?;
            return Err(StepError::transient(format!(
                "copy of snapshot {file} from {from} to {addr} arrived damaged ({copied} bytes, {}); removed it",
                got.short()
            )));
        }
        let mut check = self.check_file(dst.as_ref(), &target).await?;
        if check.checksum != want.checksum || !check.etcd_ok {
            dst.remove_file(&target).await?;
            return Err(StepError::fatal(format!(
                "copy of snapshot {file} on {addr} fails verification after the copy: {}",
                check.problem.unwrap_or_else(|| check.checksum.0.clone())
            )));
        }
        if into == SnapshotLocation::Listed {
            if let Some(r) = read_record(src.as_ref(), name).await? {
                check.identical_everywhere = r.identical_everywhere && r.checksum == check.checksum;
            }
            let record = serde_json::to_vec(&check).expect("report serialises");
            dst.write_file(&layout::record(name), &record, 0o600).await?;
        }
        ctx.log("etcd", format!("Snapshot [{file}] copied to host [{addr}] and verified ({})", want.checksum.short()));
        Ok(())
    }

    /// Reads the file from `src` and writes it to `dst` over the two SSH links, hashing it
    /// on the way: every byte crosses this workstation twice.
    async fn copy_through_workstation(
        &self,
        src: &dyn Host,
        dst: &dyn Host,
        source_file: &str,
        target: &str,
        want: &SnapshotFacts,
        ctx: &StepCtx<'_>,
    ) -> Result<(u64, Checksum), StepError> {
        let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
        let count = Arc::new(AtomicU64::new(0));
        let reader = Hashing { inner: src.open_read(source_file).await?, hasher: hasher.clone(), count: count.clone() };
        let progress = {
            let count = count.clone();
            let total = want.size;
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    ctx.bytes(count.load(Ordering::Relaxed), Some(total));
                }
            }
        };
        let copied = tokio::select! {
            r = dst.write_stream(target, Box::new(reader), 0o600) => r?,
            _ = progress => unreachable!("progress never ends"),
        };
        ctx.bytes(copied, Some(want.size));
        let got = Checksum::from_hasher(&hasher.lock().expect("hasher lock"));
        Ok((copied, got))
    }

    pub(super) async fn unpack_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        from: SnapshotLocation,
        expect: Option<&SnapshotFacts>,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let archive = layout::snapshot_file(name, SnapshotFormat::Zip, from);
        let out = layout::unpacked_db(name);
        let spec = containers::unpack(&self.cluster, &archive, &out);
        let report: SnapshotReport = self.helper_report(host.as_ref(), &spec).await?;
        if let Some(e) = expect
            && (report.checksum != e.checksum || report.size != e.size)
        {
            host.remove_file(&out).await?;
            return Err(mismatch(addr, &format!("{name}.zip"), "a database", &report.checksum.0, &e.checksum.0));
        }
        ctx.log(
            "etcd",
            format!("Unpacked the database of snapshot [{name}.zip] on host [{addr}] ({})", report.checksum.short()),
        );
        Ok(())
    }

    pub(super) async fn discard_staged(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let mut removed = Vec::new();
        let staged = [
            layout::snapshot_file(name, SnapshotFormat::Raw, SnapshotLocation::Staged),
            layout::snapshot_file(name, SnapshotFormat::Zip, SnapshotLocation::Staged),
            layout::unpacked_db(name),
        ];
        for path in staged {
            if host.remove_file(&path).await? {
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            ctx.log("etcd", format!("Removed what the restore staged on host [{addr}]: {}", removed.join(", ")));
        }
        Ok(())
    }

    pub(super) async fn save_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        what: super::SaveWhat,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let super::SaveWhat { upload, include_state, seal_state } = what;
        let host = self.host(addr).await?;
        let node = self.node(addr)?;
        if let Some(r) = read_record(host.as_ref(), name).await? {
            // Saved by an earlier attempt of this apply: the name is this apply's own.
            if !upload || r.uploaded {
                ctx.log("etcd", format!("Snapshot [{name}] is already saved on host [{addr}]"));
                return Ok(());
            }
        }
        ctx.log("etcd", format!("Saving snapshot [{name}] on host [{addr}]"));
        let s3 = if upload {
            Some(self.s3.as_ref().ok_or_else(|| StepError::fatal("S3 credentials are needed to upload the snapshot"))?)
        } else {
            None
        };
        let state_file = if include_state {
            let state = self.state_text.as_ref().ok_or_else(|| {
                StepError::fatal("--include-state needs RKE's cluster.rkestate beside cluster.yml, and there is none")
            })?;
            let path = format!("{}/{name}.rkestate", layout::RECORDS_DIR);
            host.write_file(&path, state.expose().as_bytes(), 0o600).await?;
            Some(path)
        } else {
            None
        };
        let spec = containers::snapshot_once(&self.cluster, node, name, s3, state_file.as_deref());
        let result: Result<SnapshotReport, StepError> = self.helper_watched(host.as_ref(), &spec, ctx).await;
        if let Some(p) = &state_file {
            // The agent removes it once it is in the archive; a failed save must not leave it.
            host.remove_file(p).await?;
        }
        let report = result?;
        if !report.etcd_ok {
            return Err(StepError::fatal(format!(
                "the snapshot taken on {addr} fails etcd's hash check: {}",
                report.problem.unwrap_or_default()
            )));
        }
        ctx.log(
            "etcd",
            format!("Successfully started [{}] container on host [{addr}]", crate::etcd::names::SNAPSHOT_ONCE),
        );
        if let Some(s3) = s3 {
            if seal_state {
                self.attach_state(s3, name).await?;
            }
            ctx.log("etcd", format!("Uploaded snapshot [{name}.zip] to {} ({})", s3.target(), report.checksum.short()));
        }
        Ok(())
    }

    pub(super) async fn delete_snapshot(
        &self,
        addr: Option<&HostAddr>,
        name: &SnapshotName,
        from: &DeleteFrom,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        match (from, addr) {
            (DeleteFrom::Host, Some(addr)) => {
                let host = self.host(addr).await?;
                let spec = containers::snapshot_delete(&self.cluster, std::slice::from_ref(name));
                self.helper(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Deleted snapshot [{name}] on host [{addr}]"));
                Ok(())
            }
            (DeleteFrom::S3 { target }, _) => {
                let s3 =
                    self.s3.as_ref().ok_or_else(|| StepError::fatal("S3 credentials are needed to delete from S3"))?;
                let client = crate::s3::S3Client::new(s3).await.map_err(s3_error)?;
                for format in [SnapshotFormat::Zip, SnapshotFormat::Raw] {
                    let object =
                        SnapshotName::new(format.file_name(name)).map_err(|e| StepError::fatal(e.to_string()))?;
                    client.delete(&object).await.map_err(s3_error)?;
                }
                ctx.log("etcd", format!("Deleted snapshot [{name}] from {target}"));
                Ok(())
            }
            (DeleteFrom::Host, None) => Err(StepError::fatal("delete-snapshot on a host needs a host")),
        }
    }

    /// Stores RKE's state beside a snapshot in S3, sealed with the user's passphrase, so a
    /// restore from a new workstation has the PKI it needs.
    async fn attach_state(&self, s3: &crate::config::S3Settings, name: &SnapshotName) -> Result<(), StepError> {
        let state = self
            .state_text
            .as_ref()
            .ok_or_else(|| StepError::fatal("there is no cluster.rkestate beside cluster.yml to seal"))?;
        let passphrase =
            self.state_passphrase.as_ref().ok_or_else(|| StepError::fatal("sealing the state needs its passphrase"))?;
        let sealed = crate::state::seal::seal(passphrase, name, state).map_err(|e| StepError::fatal(e.to_string()))?;
        let object =
            SnapshotName::new(SnapshotFormat::Zip.file_name(name)).map_err(|e| StepError::fatal(e.to_string()))?;
        let client = crate::s3::S3Client::new(s3).await.map_err(s3_error)?;
        let Some(mut manifest) = client.get_manifest(&object).await.map_err(s3_error)? else {
            return Err(StepError::fatal(format!("snapshot {name} was uploaded but its manifest is missing in S3")));
        };
        manifest.sealed_state = Some(sealed);
        client.put_manifest(&object, &manifest).await.map_err(s3_error)?;
        Ok(())
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(d, _)| d)
}

/// An S3 failure as a step error.
pub fn s3_error(e: crate::s3::S3Error) -> StepError {
    StepError { transient: e.is_transient(), message: e.to_string(), logs: None }
}
