//! Turning the command line into the library's inputs ([`crate::invocation`]), which
//! decides what they mean and refuses bad ones before anything is dialed.

use super::CliError;
use super::args::{Action, EtcdAction, S3Flags};
use crate::config::{Cluster, S3Settings, S3Use};
use crate::invocation::{self, Request, Resolved};
use crate::model::action::ActionSpec;

/// The library's request for an action of the command line, and the S3 flags it has.
fn request(action: &Action) -> Result<(Request, Option<&S3Flags>), CliError> {
    let etcd = match action {
        Action::Up { pki } => return Ok((Request::Up { new_pki: pki.new_pki }, None)),
        Action::Cleanup => return Ok((Request::Cleanup, None)),
        Action::Etcd { command } => &**command,
    };
    Ok(match etcd {
        EtcdAction::SnapshotSave { name, include_state, s3 } => {
            (Request::Save { name: name.clone(), include_state: *include_state }, Some(s3))
        }
        EtcdAction::SnapshotRestore { name, use_local_state, pki, s3 } => {
            let restore =
                Request::Restore { name: name.clone(), use_local_state: *use_local_state, new_pki: pki.new_pki };
            (restore, Some(s3))
        }
        EtcdAction::SnapshotDrill { name, host, compare_live, s3 } => {
            (Request::Drill { name: name.clone(), host: host.clone(), compare_live: *compare_live }, Some(s3))
        }
        EtcdAction::SnapshotDelete { name, s3 } => (Request::Delete { name: name.clone() }, Some(s3)),
        EtcdAction::SnapshotPrune { retention, keep, s3 } => {
            (Request::Prune { retention: retention.clone(), keep: *keep }, Some(s3))
        }
        EtcdAction::SnapshotList { .. } => {
            return Err(CliError::input("snapshot-list only reads; it has no plan", "run `rkectl etcd snapshot-list`"));
        }
    })
}

/// An action of the command line, decided by the library (once per run).
pub fn resolve(action: &Action, cluster: &Cluster) -> Result<Resolved, CliError> {
    let (request, flags) = request(action)?;
    let flags = flags.cloned().unwrap_or_default();
    Ok(invocation::resolve(&request, &flags.library(), flags.state_passphrase_file.as_deref(), cluster)?)
}

/// What a plan made earlier is applied with (its S3 keys, the state passphrase).
pub fn for_plan(spec: &ActionSpec, flags: &S3Flags, cluster: &Cluster) -> Result<Resolved, CliError> {
    Ok(invocation::for_plan(spec, &flags.library(), flags.state_passphrase_file.as_deref(), cluster)?)
}

/// S3 settings for `wanted`: the flags over cluster.yml over this workstation's environment.
pub fn s3(wanted: S3Use<'_>, flags: &S3Flags, cluster: &Cluster) -> Result<Option<S3Settings>, CliError> {
    Ok(S3Settings::resolve(wanted, &flags.library(), cluster.configured_s3(), &crate::s3::environment::Workstation)?)
}
