//! The apply lock: one apply per cluster.yml at a time.
//!
//! An OS file lock (`flock`) on `<stem>.rkectl-lock` next to cluster.yml; the kernel
//! releases it when the holder dies, so a lock can never be left held by a dead process.
//! The file also records who took it and when, so a refused apply can say who holds it,
//! and an apply that finds a record without a live holder knows the previous one was
//! killed (its journal will say where it stopped).

pub use crate::model::node_lock::Holder;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

// The holder's record is a shared word (the node lock carries it too); who this process is,
// is read here.
impl Holder {
    /// This process, doing `command`.
    pub fn me(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            since: crate::local::now_rfc3339(),
            command: command.to_string(),
        }
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("another rkectl apply holds the lock on this cluster: pid {} on {}, since {} ({})", holder.pid, holder.host, holder.since, holder.command)]
    #[diagnostic(
        code(rkectl::lock::held),
        help(
            "wait for it to finish; if that process is gone, the lock is released by the system and the next apply resumes its journal"
        )
    )]
    Held { holder: Holder, path: PathBuf },
    #[error("another rkectl apply holds the lock {} (its record is unreadable)", path.display())]
    #[diagnostic(code(rkectl::lock::held))]
    HeldUnknown { path: PathBuf },
    #[error("cannot open the lock file {}: {source}", path.display())]
    #[diagnostic(code(rkectl::lock::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
    /// The record left by a holder that died without releasing it cleanly.
    pub previous: Option<Holder>,
}

impl ApplyLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(path: &Path, command: &str) -> Result<ApplyLock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| LockError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(match serde_json::from_str::<Holder>(&s) {
                    Ok(holder) => LockError::Held { holder, path: path.to_path_buf() },
                    Err(_) => LockError::HeldUnknown { path: path.to_path_buf() },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut s = String::new();
        file.read_to_string(&mut s).map_err(io)?;
        let previous = serde_json::from_str::<Holder>(&s).ok();
        let me = Holder::me(command);
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(serde_json::to_string(&me).expect("holder serialises").as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(ApplyLock { file, previous })
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // A clean release leaves no record, so the next holder knows nobody died holding it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
