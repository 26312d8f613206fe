//! The command line's actions as the library's requests ([`crate::invocation`] decides what
//! they mean and refuses bad ones before anything is dialed).

use super::args::{Action, EtcdAction, S3Flags};
use crate::config::BadInput;
use crate::invocation::Request;

/// The library's request for an action of the command line.
pub fn request(action: &Action) -> Result<Request, BadInput> {
    let etcd = match action {
        Action::Up { pki } => return Ok(Request::Up { new_pki: pki.new_pki }),
        Action::Cleanup => return Ok(Request::Cleanup),
        Action::Etcd { command } => &**command,
    };
    Ok(match etcd {
        EtcdAction::SnapshotSave { name, include_state, .. } => {
            Request::Save { name: name.clone(), include_state: *include_state }
        }
        EtcdAction::SnapshotRestore { name, use_local_state, pki, .. } => {
            Request::Restore { name: name.clone(), use_local_state: *use_local_state, new_pki: pki.new_pki }
        }
        EtcdAction::SnapshotDrill { name, host, compare_live, .. } => {
            Request::Drill { name: name.clone(), host: host.clone(), compare_live: *compare_live }
        }
        EtcdAction::SnapshotDelete { name, .. } => Request::Delete { name: name.clone() },
        EtcdAction::SnapshotPrune { retention, keep, .. } => {
            Request::Prune { retention: retention.clone(), keep: *keep }
        }
        EtcdAction::SnapshotList { .. } => {
            return Err(BadInput {
                message: "snapshot-list only reads; it has no plan".into(),
                help: "run `rkectl etcd snapshot-list`".into(),
            });
        }
    })
}

impl Action {
    /// The S3 flags of an action, when it has them.
    pub fn s3(&self) -> Option<&S3Flags> {
        match self {
            Action::Etcd { command } => Some(command.s3()),
            Action::Up { .. } | Action::Cleanup => None,
        }
    }
}

impl EtcdAction {
    /// The S3 flags of an etcd action.
    pub fn s3(&self) -> &S3Flags {
        match self {
            EtcdAction::SnapshotSave { s3, .. }
            | EtcdAction::SnapshotRestore { s3, .. }
            | EtcdAction::SnapshotDrill { s3, .. }
            | EtcdAction::SnapshotDelete { s3, .. }
            | EtcdAction::SnapshotPrune { s3, .. }
            | EtcdAction::SnapshotList { s3, .. } => s3,
        }
    }
}
