//! Snapshot steps: verify a copy, give a host a copy, take a snapshot, delete one.

use super::Executor;
use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::etcd::{containers, paths};
use crate::exec::{StepCtx, StepError};
use crate::host::{ByteStream, Host};
use crate::plan::step::{Checksum, DeleteFrom, SnapshotFacts, SnapshotName, SnapshotSource};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Path of a snapshot on a node.
pub fn snapshot_path(name: &SnapshotName) -> String {
    format!("{}/{name}", paths::SNAPSHOT_DIR)
}

/// Path of rkectl's record of a snapshot on a node.
pub fn record_path(name: &SnapshotName) -> String {
    format!("{}/{name}.json", paths::SNAPSHOT_META_DIR)
}

/// Reads rkectl's record of a snapshot on a host, if there is one.
pub async fn read_record(host: &dyn Host, name: &SnapshotName) -> Result<Option<SnapshotReport>, StepError> {
    Ok(host.read_file(&record_path(name)).await?.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// A reader that hashes and counts what passes through it.
struct Hashing {
    inner: ByteStream,
    hasher: Arc<Mutex<blake3::Hasher>>,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Hashing {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
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

fn mismatch(host: &HostAddr, name: &SnapshotName, what: &str, found: &str, want: &str) -> StepError {
    StepError::fatal(format!(
        "the copy of snapshot {name} on host {host} has {what} {found}, but the plan expects {want}: it changed since the plan was made; plan again"
    ))
}

impl Executor {
    /// Runs the checksum checker on a host's copy.
    async fn check_copy(&self, host: &dyn Host, name: &SnapshotName) -> Result<SnapshotReport, StepError> {
        let spec = containers::checksum_checker(&self.cluster, &[name]);
        self.helper_report(host, &spec).await
    }

    pub(super) async fn verify_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        expect: Option<&SnapshotFacts>,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let Some(expect) = expect else {
            return Err(StepError::fatal(
                "this plan was made offline and does not pin the snapshot's checksum; plan again without --offline",
            ));
        };
        let host = self.host(addr).await?;
        // The plan was made from a full check of this copy (etcd's SHA-256 trailer and
        // `snapshot status`), and the restore checks the trailer again: here it is enough to
        // prove the bytes are still those, which BLAKE3 does several times faster.
        let spec = containers::checksum_only(&self.cluster, &[name]);
        let report: SnapshotReport = self.helper_report(host.as_ref(), &spec).await?;
        if report.size != expect.size {
            return Err(mismatch(addr, name, "size", &report.size.to_string(), &expect.size.to_string()));
        }
        if report.checksum != expect.checksum {
            return Err(mismatch(addr, name, "checksum", &report.checksum.0, &expect.checksum.0));
        }
        ctx.log("etcd", format!("Verified snapshot [{name}] on host [{addr}] ({})", expect.checksum.short()));
        Ok(())
    }

    pub(super) async fn fetch_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        expect: Option<&SnapshotFacts>,
        source: &SnapshotSource,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let dst = self.host(addr).await?;
        match source {
            SnapshotSource::Host { host: from } => {
                let src = self.host(from).await?;
                let want = match expect {
                    Some(e) => e.clone(),
                    None => {
                        let r = read_record(src.as_ref(), name).await?.ok_or_else(|| {
                            StepError::fatal(format!(
                                "host {from} has no record of snapshot {name}; it was not saved by this apply"
                            ))
                        })?;
                        SnapshotFacts { size: r.size, checksum: r.checksum }
                    }
                };
                // Already there and right (a resumed apply): nothing to copy.
                if let Some(r) = read_record(dst.as_ref(), name).await?
                    && r.checksum == want.checksum
                {
                    let check = self.check_copy(dst.as_ref(), name).await?;
                    if check.checksum == want.checksum && check.etcd_ok {
                        ctx.log("etcd", format!("Host [{addr}] already has snapshot [{name}]"));
                        return Ok(());
                    }
                }
                ctx.log("etcd", format!("Copying snapshot [{name}] from host [{from}] to host [{addr}]"));
                let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
                let count = Arc::new(AtomicU64::new(0));
                let reader = Hashing {
                    inner: src.open_read(&snapshot_path(name)).await?,
                    hasher: hasher.clone(),
                    count: count.clone(),
                };
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
                let target = snapshot_path(name);
                let copied = tokio::select! {
                    r = dst.write_stream(&target, Box::new(reader), 0o600) => r?,
                    _ = progress => unreachable!("progress never ends"),
                };
                ctx.bytes(copied, Some(want.size));
                let got = Checksum::from_hasher(&hasher.lock().expect("hasher lock"));
                if copied != want.size || got != want.checksum {
                    dst.remove_file(&snapshot_path(name)).await?;
                    return Err(StepError::transient(format!(
                        "copy of snapshot {name} from {from} to {addr} arrived damaged ({copied} bytes, {}); removed it",
                        got.short()
                    )));
                }
                let check = self.check_copy(dst.as_ref(), name).await?;
                if check.checksum != want.checksum || !check.etcd_ok {
                    dst.remove_file(&snapshot_path(name)).await?;
                    return Err(StepError::fatal(format!(
                        "copy of snapshot {name} on {addr} fails verification after the copy: {}",
                        check.problem.unwrap_or_else(|| check.checksum.0.clone())
                    )));
                }
                let record = serde_json::to_vec(&check).expect("report serialises");
                dst.write_file(&record_path(name), &record, 0o600).await?;
                ctx.log(
                    "etcd",
                    format!("Snapshot [{name}] copied to host [{addr}] and verified ({})", want.checksum.short()),
                );
                Ok(())
            }
            SnapshotSource::S3 { target } => {
                let s3 = self.s3.as_ref().ok_or_else(|| {
                    StepError::fatal("S3 credentials are needed to download the snapshot; pass --access-key/--secret-key or set them in cluster.yml")
                })?;
                ctx.log("etcd", format!("Downloading snapshot [{name}] from {target} to host [{addr}]"));
                let spec = containers::s3_download(&self.cluster, name, s3);
                let report: SnapshotReport = self.helper_report(dst.as_ref(), &spec).await?;
                if let Some(e) = expect
                    && report.checksum != e.checksum
                {
                    return Err(mismatch(addr, name, "checksum", &report.checksum.0, &e.checksum.0));
                }
                if !report.etcd_ok {
                    return Err(StepError::fatal(format!(
                        "snapshot {name} downloaded from S3 fails etcd's hash check: {}",
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

    pub(super) async fn save_snapshot(
        &self,
        addr: &HostAddr,
        name: &SnapshotName,
        upload: bool,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
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
        let spec = containers::snapshot_once(&self.cluster, node, name, s3);
        let report: SnapshotReport = self.helper_watched(host.as_ref(), &spec, ctx).await?;
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
            self.attach_pki(s3, name).await?;
            ctx.log("etcd", format!("Uploaded snapshot [{name}] to {} ({})", s3.target(), report.checksum.short()));
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
                client.delete(name).await.map_err(s3_error)?;
                ctx.log("etcd", format!("Deleted snapshot [{name}] from {target}"));
                Ok(())
            }
            (DeleteFrom::Host, None) => Err(StepError::fatal("delete-snapshot on a host needs a host")),
        }
    }

    /// Stores the PKI, encrypted, with a snapshot in S3, so a restore from a new workstation
    /// has what it needs.
    async fn attach_pki(&self, s3: &crate::config::S3Settings, name: &SnapshotName) -> Result<(), StepError> {
        let Some(pki) = &self.pki else { return Ok(()) };
        let client = crate::s3::S3Client::new(s3).await.map_err(s3_error)?;
        let Some(mut manifest) = client.get_manifest(name).await.map_err(s3_error)? else {
            return Err(StepError::fatal(format!("snapshot {name} was uploaded but its manifest is missing in S3")));
        };
        let json = crate::state::cluster_state::pki_to_json(pki);
        manifest.pki = Some(crate::state::seal::seal(s3.secret_key.expose(), json.expose()));
        client.put_manifest(name, &manifest).await.map_err(s3_error)?;
        Ok(())
    }
}

/// An S3 failure as a step error.
pub fn s3_error(e: crate::s3::S3Error) -> StepError {
    StepError { transient: e.is_transient(), message: e.to_string(), logs: None }
}
