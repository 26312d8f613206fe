//! `save-snapshot`: takes a snapshot on a host (`etcd-snapshot-once`) as rke-tools'
//! archive, optionally with RKE's state inside, optionally streamed to S3 with the state
//! sealed beside it.

use super::records::{read_record, s3_error};
use super::{Executor, Kind};
use crate::agent::report::SnapshotReport;
use crate::config::{HostAddr, S3Target};
use crate::etcd::containers;
use crate::steps::context::{StepCtx, StepError};
use crate::layout;
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{SnapshotFormat, SnapshotName};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Takes a snapshot on this host (`etcd-snapshot-once`) as rke-tools' archive,
/// optionally with the cluster state inside, optionally streaming it to S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveSnapshot {
    pub snapshot: SnapshotName,
    pub upload: Option<S3Target>,
    pub include_state: bool,
    /// RKE's state goes beside the S3 copy, sealed with the user's passphrase.
    #[serde(default)]
    pub seal_state: bool,
}

impl Kind for SaveSnapshot {
    fn plan_host(b: &mut Builder<'_>, _: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let ActionSpec::EtcdSnapshotSave { name, s3, include_state, seal_state, .. } = b.input.action else {
            return Ok(Vec::new());
        };
        Ok(vec![SaveSnapshot {
            snapshot: name.clone(),
            upload: s3.clone(),
            include_state: *include_state,
            seal_state: *seal_state && s3.is_some(),
        }])
    }

    fn describe(&self) -> String {
        let snapshot = &self.snapshot;
        let state = if self.include_state { " with the cluster state inside" } else { "" };
        let sealed = if self.seal_state { ", the cluster state sealed beside it" } else { "" };
        match &self.upload {
            Some(t) => format!("save snapshot {snapshot}.zip{state} (etcd-snapshot-once), stream to {t}{sealed}"),
            None => format!("save snapshot {snapshot}.zip{state} (etcd-snapshot-once)"),
        }
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.insert(Resource::Snapshot(self.snapshot.clone()), "new snapshot".into());
        }
        if self.upload.is_some() {
            fx.s3().insert(Resource::Snapshot(self.snapshot.clone()), "new snapshot".into());
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let name = &self.snapshot;
        let (upload, include_state, seal_state) = (self.upload.is_some(), self.include_state, self.seal_state);
        let host = ex.host(addr).await?;
        let node = ex.node(addr)?;
        if let Some(r) = read_record(host.as_ref(), name).await? {
            // Saved by an earlier attempt of this apply: the name is this apply's own.
            if !upload || r.uploaded {
                ctx.log("etcd", format!("Snapshot [{name}] is already saved on host [{addr}]"));
                if let (true, Some(s3)) = (seal_state, ex.s3.as_ref()) {
                    // That attempt may have stopped after the upload and before the state
                    // was sealed beside it: the restore from a new workstation needs it.
                    attach_state(ex, s3, name, &r.checksum, ctx).await?;
                }
                return Ok(());
            }
        }
        ctx.log("etcd", format!("Saving snapshot [{name}] on host [{addr}]"));
        let s3 = if upload {
            Some(ex.s3.as_ref().ok_or_else(|| StepError::fatal("S3 credentials are needed to upload the snapshot"))?)
        } else {
            None
        };
        let state_file = if include_state {
            let state = ex.state_text.as_ref().ok_or_else(|| {
                StepError::fatal("--include-state needs RKE's cluster.rkestate beside cluster.yml, and there is none")
            })?;
            let path = format!("{}/{name}.rkestate", layout::RECORDS_DIR);
            host.write_file(&path, state.expose().as_bytes(), 0o600).await?;
            Some(path)
        } else {
            None
        };
        let spec = containers::snapshot_once(&ex.cluster, node, name, s3, state_file.as_deref());
        let result: Result<SnapshotReport, StepError> = ex.helper_watched(host.as_ref(), &spec, ctx).await;
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
                attach_state(ex, s3, name, &report.checksum, ctx).await?;
            }
            ctx.log("etcd", format!("Uploaded snapshot [{name}.zip] to {} ({})", s3.target(), report.checksum.short()));
        }
        Ok(())
    }
}

/// Stores RKE's state beside a snapshot in S3, sealed with the user's passphrase and bound
/// to the archive's checksum `archive`, so a restore from a new workstation has the PKI it
/// needs, and only beside these bytes. A manifest that already carries it (sealed by an
/// earlier attempt of this apply, whose name this is) is left as it is.
async fn attach_state(
    ex: &Executor,
    s3: &crate::config::S3Settings,
    name: &SnapshotName,
    archive: &crate::model::Checksum,
    ctx: &StepCtx<'_>,
) -> Result<(), StepError> {
    let state = ex
        .state_text
        .as_ref()
        .ok_or_else(|| StepError::fatal("there is no cluster.rkestate beside cluster.yml to seal"))?;
    let passphrase =
        ex.state_passphrase.as_ref().ok_or_else(|| StepError::fatal("sealing the state needs its passphrase"))?;
    let object =
        SnapshotName::new(SnapshotFormat::Zip.file_name(name)).map_err(|e| StepError::fatal(e.to_string()))?;
    let client = crate::s3::S3Client::new(s3).await.map_err(s3_error)?;
    let Some(mut manifest) = client.get_manifest(&object).await.map_err(s3_error)? else {
        return Err(StepError::fatal(format!("snapshot {name} was uploaded but its manifest is missing in S3")));
    };
    if &manifest.checksum != archive {
        return Err(StepError::fatal(format!(
            "the manifest of snapshot {name} in S3 describes other bytes ({}) than the archive this apply uploaded ({}): the object was replaced in the bucket; the cluster state is not sealed beside it",
            manifest.checksum.short(),
            archive.short()
        )));
    }
    if manifest.sealed_state.is_some() {
        return Ok(());
    }
    let sealed =
        crate::rke::seal::seal(passphrase, name, archive, state).map_err(|e| StepError::fatal(e.to_string()))?;
    manifest.sealed_state = Some(sealed);
    client.put_manifest(&object, &manifest).await.map_err(s3_error)?;
    ctx.log("etcd", format!("Sealed the cluster state beside snapshot [{name}.zip] in {}", s3.target()));
    Ok(())
}
