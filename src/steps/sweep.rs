//! The sweep: what earlier invocations left on a node and nobody will come back for,
//! removed by an apply that holds the node's lock (its `dial` step, first on each host, so
//! a resumed apply sweeps too).
//!
//! Nothing here removes what a living invocation uses. Holding the lock proves that no
//! other apply is at work on the node, so what only applies make (the reference-named
//! helpers, the secrets handed to them, the clear state file of `--include-state`, the
//! partial files of certificates and secrets) is an earlier apply's, gone. What read-only
//! looks make (their own helpers, named after their id) is removed only once their claim
//! on the node is free ([`crate::agent::node_lock`]): they take no lock and may be at work
//! right now. Partial files in folders that other writers share (the recurring snapshot
//! service, RKE's own tools, a read-only look uploading rkectl's binary) are removed only
//! when nothing has written them for [`STALE_PARTIAL`], longer than any writer of rkectl's
//! stays silent ([`crate::host::Silence::HELPER`]).

use crate::etcd::{names, paths};
use crate::host::{Host, HostResult, Owner, owner::owner_of};
use crate::model::{TEMP_MARK, is_partial_file};
use std::time::Duration;

/// How long a partial file in a shared folder must have been left alone to count as left.
pub const STALE_PARTIAL: Duration = Duration::from_secs(30 * 60);

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub containers: Vec<String>,
    pub files: Vec<String>,
}

/// What the sweeper is: the invocation, its helper binary on the node (to ask which
/// claims are held), and the time on the workstation.
pub struct Sweeper<'a> {
    pub owner: &'a Owner,
    pub agent: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

impl Sweeper<'_> {
    /// Sweeps `host`; `temporaries` are the reference names of the helpers only applies run.
    pub async fn sweep(&self, host: &dyn Host, temporaries: &[String]) -> HostResult<Swept> {
        let mut swept = Swept::default();
        for name in temporaries {
            if host.remove_container(name).await? {
                swept.containers.push(name.clone());
            }
        }
        swept.containers.extend(self.dead_owners_helpers(host).await?);
        swept.files.extend(secrets_left(host).await?);
        swept.files.extend(self.partial_files(host).await?);
        Ok(swept)
    }

    /// Helpers of other invocations whose claim on the node is free (they are gone).
    async fn dead_owners_helpers(&self, host: &dyn Host) -> HostResult<Vec<String>> {
        let Some(agent) = self.agent else { return Ok(Vec::new()) };
        // Listed before the claims are read: a helper listed belongs to an invocation whose
        // claim was taken before it was made, so a claim free afterwards means it is gone.
        let theirs: Vec<_> = host
            .list_containers(crate::host::OWNER_LABEL)
            .await?
            .into_iter()
            .filter(|c| c.name != names::ETCD && c.name != names::ROLLING_SNAPSHOTS)
            .filter_map(|c| owner_of(&c.labels).filter(|o| *o != self.owner.id).map(|o| (c.name, o)))
            .collect();
        if theirs.is_empty() {
            return Ok(Vec::new());
        }
        let live = host.live_owners(agent).await?;
        let mut removed = Vec::new();
        for (name, owner) in theirs {
            if !live.owners.contains_key(owner.as_str()) && host.remove_container(&name).await? {
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Partial files: in the folders only applies write, all of them; elsewhere, the stale.
    async fn partial_files(&self, host: &dyn Host) -> HostResult<Vec<String>> {
        let stale_before = self.now - STALE_PARTIAL.as_secs() as i64;
        let mut folders: Vec<(String, bool)> = vec![
            (crate::layout::SNAPSHOT_DIR.into(), false),
            (crate::layout::RECORDS_DIR.into(), false),
            (crate::layout::STAGING_DIR.into(), true),
        ];
        for dir in host.list_dirs(crate::agent_binary::REMOTE_ROOT).await? {
            if !dir.starts_with('.') {
                folders.push((format!("{}/{dir}", crate::agent_binary::REMOTE_ROOT), false));
            }
        }
        let mut removed = Vec::new();
        for (dir, applies_only) in folders {
            for e in host.list_dir(&dir).await? {
                if is_partial_file(&e.name) && (applies_only || e.modified < stale_before) {
                    removed.extend(remove(host, &format!("{dir}/{}", e.name)).await?);
                }
            }
        }
        // RKE's certificate folder: only rkectl's own temporary files, which hold keys.
        for e in host.list_dir(paths::CERT_DIR).await? {
            if e.name.contains(TEMP_MARK) {
                removed.extend(remove(host, &format!("{}/{}", paths::CERT_DIR, e.name)).await?);
            }
        }
        Ok(removed)
    }
}

/// Secrets handed to helpers that are gone: every file of rkectl's secrets folder but the
/// S3 keys the recurring snapshot service now running binds, and the clear state files of
/// `--include-state` saves that did not finish.
async fn secrets_left(host: &dyn Host) -> HostResult<Vec<String>> {
    let service_keys = paths::s3_credentials(names::ROLLING_SNAPSHOTS);
    let in_use = host
        .inspect_container(names::ROLLING_SNAPSHOTS)
        .await?
        .is_some_and(|c| c.binds.iter().any(|b| b.split(':').next() == Some(service_keys.as_str())));
    let mut removed = Vec::new();
    for e in host.list_dir(paths::SECRETS_DIR).await? {
        let path = format!("{}/{}", paths::SECRETS_DIR, e.name);
        if !(in_use && path == service_keys) {
            removed.extend(remove(host, &path).await?);
        }
    }
    for e in host.list_dir(crate::layout::RECORDS_DIR).await? {
        if e.name.ends_with(".rkestate") {
            removed.extend(remove(host, &format!("{}/{}", crate::layout::RECORDS_DIR, e.name)).await?);
        }
    }
    Ok(removed)
}

async fn remove(host: &dyn Host, path: &str) -> HostResult<Option<String>> {
    Ok(host.remove_file(path).await?.then(|| path.to_string()))
}
