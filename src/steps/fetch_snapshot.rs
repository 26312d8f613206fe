//! `fetch-snapshot`: gives a host a verified copy of a snapshot, from another etcd host
//! (straight over the cluster network, through this workstation only when the two cannot
//! reach each other) or from S3 (downloaded by a helper on the host).

use super::direct_copy::{Direct, DirectCopy};
use super::records::{mismatch, parent, read_record};
use super::{Executor, Kind};
use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::steps::context::DataPath;
use crate::steps::context::{StepCtx, StepError};
use crate::host::{ByteStream, Host};
use crate::layout;
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{Checksum, SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName};
use crate::model::step::{Pin, SnapshotSource};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};
use std::pin::Pin as StdPin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Gives the host a verified copy of a snapshot, `into` the snapshot folder when the host
/// has no file of that name, else staged beside it (a host's copy is never overwritten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchSnapshot {
    pub snapshot: SnapshotName,
    pub format: SnapshotFormat,
    /// `None` when the snapshot is made by this plan: the source's record is used.
    pub expect: Option<Pin>,
    pub source: SnapshotSource,
    pub into: SnapshotLocation,
}

impl Kind for FetchSnapshot {
    const CHANGES_CLUSTER: bool = false;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let action = b.input.action;
        Ok(match action {
            ActionSpec::EtcdSnapshotRestore { name, .. } | ActionSpec::EtcdSnapshotDrill { name, .. } => {
                // Offline, no copy is chosen, so none is planned.
                let Some(r) = b.chosen() else { return Ok(Vec::new()) };
                if r.good_set.contains(host) {
                    return Ok(Vec::new());
                }
                let (format, expect) = (r.format, Some(r.pin.clone()));
                let source = match &r.from_s3 {
                    Some(target) => SnapshotSource::S3 { target: target.clone() },
                    None => {
                        // Spread copies over the hosts that have the reference.
                        let source = r.good[b.fetches % r.good.len()].clone();
                        b.fetches += 1;
                        SnapshotSource::Host { host: source }
                    }
                };
                // A drill adds nothing to the host's snapshot folder: its copy is staged.
                let into = match action {
                    ActionSpec::EtcdSnapshotDrill { .. } => SnapshotLocation::Staged,
                    _ => b.fetch_location(host, name),
                };
                vec![FetchSnapshot { snapshot: name.clone(), format, expect, source, into }]
            }
            ActionSpec::EtcdSnapshotSave { name, .. } => {
                let source = b.snapshot_source()?;
                if &source == host {
                    return Ok(Vec::new());
                }
                vec![FetchSnapshot {
                    snapshot: name.clone(),
                    format: SnapshotFormat::Zip,
                    expect: None,
                    source: SnapshotSource::Host { host: source },
                    into: SnapshotLocation::Listed,
                }]
            }
            _ => Vec::new(),
        })
    }

    fn describe(&self) -> String {
        let file = self.format.file_name(&self.snapshot);
        let source = &self.source;
        let way = match source {
            SnapshotSource::Host { .. } => {
                " directly over the cluster network (through this workstation only if the hosts cannot reach each other)"
            }
            SnapshotSource::S3 { .. } => "",
        };
        match self.into {
            SnapshotLocation::Listed => format!("copy snapshot {file} from {source}{way}"),
            SnapshotLocation::Staged => {
                format!("copy snapshot {file} from {source}{way}, staged apart from the host's snapshot folder")
            }
        }
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        let Some(r) = fx.host() else { return };
        let what = match &self.expect {
            Some(e) => e.to_string(),
            None => "copy".to_string(),
        };
        let what = match self.format {
            SnapshotFormat::Raw => what,
            SnapshotFormat::Zip => format!("{}, {what}", self.format.file_name(&self.snapshot)),
        };
        let source = &self.source;
        match self.into {
            SnapshotLocation::Listed => {
                r.insert(Resource::Snapshot(self.snapshot.clone()), format!("{what} (from {source})"));
            }
            SnapshotLocation::Staged => {
                r.insert(Resource::Staged(self.snapshot.clone()), format!("{what} (from {source}), for the restore"));
            }
        }
    }

    fn other_host(&self) -> Option<&HostAddr> {
        match &self.source {
            SnapshotSource::Host { host } => Some(host),
            SnapshotSource::S3 { .. } => None,
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let (name, source) = (&self.snapshot, &self.source);
        let expect = self.expect.as_ref();
        match source {
            SnapshotSource::Host { host: from } => {
                let want = match expect {
                    Some(Pin::Checksum { facts }) => facts.clone(),
                    Some(Pin::S3Object { .. }) => {
                        return Err(StepError::fatal("a copy between hosts is pinned by checksum; plan again"));
                    }
                    None => {
                        let src = ex.host(from).await?;
                        let r = read_record(src.as_ref(), name).await?.ok_or_else(|| {
                            StepError::fatal(format!(
                                "host {from} has no snapshot {name} with rkectl's record beside it; it was not saved by this apply"
                            ))
                        })?;
                        SnapshotFacts { size: r.size, checksum: r.checksum }
                    }
                };
                copy_between_hosts(ex, addr, from, self, &want, ctx).await
            }
            SnapshotSource::S3 { target } => download(ex, addr, self, target, ctx).await,
        }
    }
}

/// Downloads the snapshot from S3 on the host itself (a helper in the etcd image), then
/// checks what arrived against the pin and etcd's hash check.
async fn download(
    ex: &Executor,
    addr: &HostAddr,
    f: &FetchSnapshot,
    target: &crate::config::S3Target,
    ctx: &StepCtx<'_>,
) -> Result<(), StepError> {
    let (name, format, into, expect) = (&f.snapshot, f.format, f.into, f.expect.as_ref());
    let s3 = ex.s3.as_ref().ok_or_else(|| {
        StepError::fatal("S3 credentials are needed to download the snapshot; pass --access-key/--secret-key or set them in cluster.yml")
    })?;
    let dst = ex.host(addr).await?;
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
    let spec = containers::s3_download(&ex.cluster, name, format, dir, etag, expect.and_then(Pin::checksum), s3);
    let report: SnapshotReport = ex.helper_report(dst.as_ref(), &spec).await?;
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

/// Copies a snapshot file from one host to another, hashing it on the way, then checks
/// the copy fully where it landed.
async fn copy_between_hosts(
    ex: &Executor,
    addr: &HostAddr,
    from: &HostAddr,
    f: &FetchSnapshot,
    want: &SnapshotFacts,
    ctx: &StepCtx<'_>,
) -> Result<(), StepError> {
    let (name, format, into) = (&f.snapshot, f.format, f.into);
    let dst = ex.host(addr).await?;
    let src = ex.host(from).await?;
    let file = format.file_name(name);
    let target = layout::snapshot_file(name, format, into);
    // Already there and right (a resumed apply): nothing to copy.
    if dst.list_dir(parent(&target)).await?.iter().any(|e| e.name == file && e.size == want.size) {
        let check = ex.check_file(dst.as_ref(), &target).await?;
        if check.checksum == want.checksum && check.etcd_ok {
            ctx.log("etcd", format!("Host [{addr}] already has snapshot [{file}]"));
            return Ok(());
        }
    }
    let source_file = layout::snapshot_file(name, format, SnapshotLocation::Listed);
    let direct = DirectCopy { from, to: addr, source_file: &source_file, target: &target, want };
    let (copied, got) = match ex.copy_direct(src.as_ref(), dst.as_ref(), direct, ctx).await? {
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
                copy_through_workstation(src.as_ref(), dst.as_ref(), &source_file, &target, want, ctx).await?;
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
    let mut check = ex.check_file(dst.as_ref(), &target).await?;
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
///
/// The stream ends in an error, not at its end, when its bytes are not `want`'s: the host
/// writes to a temporary file and renames it only at a clean end, so other bytes are never
/// put in place, even should this process die right after.
async fn copy_through_workstation(
    src: &dyn Host,
    dst: &dyn Host,
    source_file: &str,
    target: &str,
    want: &SnapshotFacts,
    ctx: &StepCtx<'_>,
) -> Result<(u64, Checksum), StepError> {
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    let count = Arc::new(AtomicU64::new(0));
    let damaged = Arc::new(Mutex::new(None));
    let reader = Hashing {
        inner: src.open_read(source_file).await?,
        hasher: hasher.clone(),
        count: count.clone(),
        want: want.clone(),
        damaged: damaged.clone(),
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
    let written = tokio::select! {
        r = dst.write_stream(target, Box::new(reader), 0o600) => r,
        _ = progress => unreachable!("progress never ends"),
    };
    let copied = match written {
        Ok(n) => n,
        Err(e) => {
            if let Some(why) = damaged.lock().expect("damage lock").take() {
                return Err(StepError::transient(format!(
                    "copy of {source_file} from {} to {} arrived damaged ({why}); it was not kept",
                    src.addr(),
                    dst.addr()
                )));
            }
            return Err(e.into());
        }
    };
    ctx.bytes(copied, Some(want.size));
    let got = Checksum::from_hasher(&hasher.lock().expect("hasher lock"));
    Ok((copied, got))
}

/// A reader that hashes and counts what passes through it, and fails at the end of a
/// stream that is not the bytes of `want` (saying why in `damaged`).
struct Hashing {
    inner: ByteStream,
    hasher: Arc<Mutex<blake3::Hasher>>,
    count: Arc<AtomicU64>,
    want: SnapshotFacts,
    damaged: Arc<Mutex<Option<String>>>,
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
            } else if buf.remaining() > 0 {
                // The end: the last moment to refuse the bytes before the host keeps them.
                let size = self.count.load(Ordering::Relaxed);
                let got = Checksum::from_hasher(&self.hasher.lock().expect("hasher lock"));
                if size != self.want.size || got != self.want.checksum {
                    let why = format!(
                        "{size} bytes, {}; the plan expects {} bytes, {}",
                        got.short(),
                        self.want.size,
                        self.want.checksum.short()
                    );
                    *self.damaged.lock().expect("damage lock") = Some(why.clone());
                    return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why)));
                }
            }
        }
        r
    }
}
