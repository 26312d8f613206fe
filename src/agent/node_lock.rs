//! rkectl's lock of a node, held by the SSH session of an apply.
//!
//! `rkectl agent hold-lock` runs on the node itself (not in a container), takes an OS lock
//! (`flock`) on [`LOCK_FILE`], writes who holds it, says `locked`, and then waits for its
//! standard input to close. Its input is the workstation's SSH session: when the apply
//! ends, is killed, or loses its connection, the input closes, the process exits and the
//! kernel releases the lock. So two workstations (or two copies of cluster.yml) never act
//! on the same node at once, and no lock outlives its apply.

use super::AgentError;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

/// The lock file on every node, beside rkectl's binaries.
pub const LOCK_FILE: &str = "/opt/rke/rkectl/node.lock";
/// The first line printed when the lock is taken.
pub const LOCKED: &str = "locked";
/// The start of the first line printed when another apply holds it (its record follows).
pub const HELD: &str = "held ";

/// Takes the lock and holds it until standard input closes, or reports who holds it.
pub fn hold(holder: &str) -> Result<(), AgentError> {
    if let Some(dir) = std::path::Path::new(LOCK_FILE).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(LOCK_FILE)?;
    let mut out = std::io::stdout().lock();
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut record = String::new();
            let _ = file.read_to_string(&mut record);
            writeln!(out, "{HELD}{}", record.lines().next().unwrap_or("").trim())?;
            return Ok(());
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(holder.replace('\n', " ").as_bytes())?;
    file.sync_data()?;
    writeln!(out, "{LOCKED}")?;
    out.flush()?;
    drop(out);
    // Hold until the session ends; what arrives on the input is not read for anything.
    let mut sink = [0u8; 64];
    let mut input = std::io::stdin().lock();
    while input.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    // A clean release leaves no record behind.
    let _ = file.set_len(0);
    Ok(())
}
