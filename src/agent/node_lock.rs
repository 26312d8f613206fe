//! rkectl's claims on a node: the invocation's own claim, and the node lock of an apply.
//!
//! `rkectl agent hold-lock --owner ID [--holder RECORD]` runs on the node itself (not in a
//! container). It takes an OS lock (`flock`) on `OWNERS_DIR/ID`, the claim that says the
//! invocation `ID` is alive (every invocation, read-only looks included, holds one while it
//! is connected: see [`crate::host::owner`]); with `--holder` (an apply) it also takes the
//! node lock on [`LOCK_FILE`] and writes who holds it. It says `locked` and then holds both
//! while its standard input, the workstation's SSH session, keeps talking.
//!
//! The workstation writes a byte every [`BEAT`]. The claims end when the input closes (the
//! apply ended, was killed, or its connection broke in a way sshd saw) and also when
//! nothing arrived for the lease (`--lease-secs`, [`LEASE_SECS`] by default): a workstation
//! cut off by a partition, whose session sshd may keep for hours (TCP keepalive), loses the
//! node after the lease and no later. Once the process exits the kernel releases the locks.
//!
//! [`live_owners_at`] tells a sweep which claims are still held: a claim whose file is
//! free, or absent, belongs to an invocation that is gone.

pub use crate::model::node_lock::{BEAT, HELD, LEASE_SECS, LOCKED, NodeLockRecord};

use super::AgentError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file on every node, beside rkectl's binaries.
pub const LOCK_FILE: &str = "/opt/rke/rkectl/node.lock";
/// The folder of the invocations' claims (hidden: it is not a folder of binaries).
pub const OWNERS_DIR: &str = "/opt/rke/rkectl/.owners";
/// Where the claims live (a test's own folder, or the node's).
#[derive(Debug, Clone)]
pub struct Places {
    pub lock_file: PathBuf,
    pub owners: PathBuf,
}

impl Places {
    /// The node's.
    pub fn node() -> Places {
        Places { lock_file: LOCK_FILE.into(), owners: OWNERS_DIR.into() }
    }

    /// Beside each other in `dir` (tests).
    pub fn in_dir(dir: &Path) -> Places {
        Places { lock_file: dir.join("node.lock"), owners: dir.join(".owners") }
    }
}

/// What an invocation's claim says of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The helper binary it runs from (a folder `rkectl cleanup` must leave while it lives).
    pub agent: String,
    /// Its `hold-lock` process on the node.
    pub pid: u32,
}

/// The invocations whose claim is held, by id (`rkectl agent owners`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveOwners {
    pub owners: BTreeMap<String, OwnerRecord>,
}

/// Takes the claims and holds them while standard input keeps talking (see the module).
pub fn hold(owner: &str, holder: Option<&str>, lease: Duration) -> Result<(), AgentError> {
    let mut out = std::io::stdout().lock();
    hold_at(&Places::node(), owner, holder, lease, std::io::stdin(), &mut out)
}

/// [`hold`] at `places`, listening to `input` and answering on `out`.
pub fn hold_at(
    places: &Places,
    owner: &str,
    holder: Option<&str>,
    lease: Duration,
    input: impl Read + Send + 'static,
    out: &mut impl Write,
) -> Result<(), AgentError> {
    let claim = Claim::take(places, owner)?;
    let node = match holder {
        None => None,
        Some(h) => match take_node_lock(places, owner, h, lease)? {
            Ok(file) => Some(file),
            Err(record) => {
                writeln!(out, "{HELD}{}", record.lines().next().unwrap_or("").trim())?;
                out.flush()?;
                claim.release();
                return Ok(());
            }
        },
    };
    writeln!(out, "{LOCKED}")?;
    out.flush()?;
    let why = listen(input, lease);
    if let Some(why) = why {
        eprintln!("rkectl agent hold-lock: {why}; letting the node go");
    }
    if let Some(file) = node {
        // A clean release leaves no record behind.
        let _ = file.set_len(0);
    }
    claim.release();
    Ok(())
}

/// Waits while `input` keeps talking; why it stopped when that was the lease running out.
fn listen(mut input: impl Read + Send + 'static, lease: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        // What arrives is not read for anything: that it arrives is the news.
        while input.read(&mut sink).map(|n| n > 0).unwrap_or(false) {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    loop {
        match rx.recv_timeout(lease) {
            Ok(()) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Some(format!("no word from the workstation for {} s", lease.as_secs()));
            }
        }
    }
}

/// An invocation's claim, held.
struct Claim {
    _file: File,
    path: PathBuf,
}

impl Claim {
    /// Takes the claim of `owner`: locked under a temporary name, then renamed into place,
    /// so that a sweep never finds it unlocked while its owner lives.
    fn take(places: &Places, owner: &str) -> Result<Claim, AgentError> {
        if crate::host::owner::OwnerId::parse(owner).is_none() {
            return Err(AgentError::new(format!("`{owner}` is not an invocation id")));
        }
        std::fs::create_dir_all(&places.owners)?;
        let path = places.owners.join(owner);
        let tmp = places.owners.join(format!(".{owner}.new"));
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        if file.try_lock().is_err() {
            return Err(AgentError::new(format!("invocation {owner} already holds a claim on this node")));
        }
        let agent = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
        let record = OwnerRecord { agent, pid: std::process::id() };
        file.write_all(serde_json::to_string(&record).expect("record serialises").as_bytes())?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        Ok(Claim { _file: file, path })
    }

    /// Ends the claim: the file goes while it is still locked, then the lock with it.
    fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the node lock for `owner`, or returns the record of the apply that holds it. The
/// same invocation finding its own record (its earlier session cut off by a partition, its
/// lease not yet over) waits for that lease to end.
fn take_node_lock(
    places: &Places,
    owner: &str,
    holder: &str,
    lease: Duration,
) -> Result<Result<File, String>, AgentError> {
    if let Some(dir) = places.lock_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&places.lock_file)?;
    let deadline = Instant::now() + lease + Duration::from_secs(5);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut record = String::new();
                file.seek(SeekFrom::Start(0))?;
                let _ = file.read_to_string(&mut record);
                let ours = serde_json::from_str::<NodeLockRecord>(record.trim()).is_ok_and(|r| r.owner == owner);
                if !ours || Instant::now() >= deadline {
                    return Ok(Err(record));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
    let record = NodeLockRecord { holder: holder.replace('\n', " "), owner: owner.into(), pid: std::process::id() };
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(serde_json::to_string(&record).expect("record serialises").as_bytes())?;
    file.sync_data()?;
    Ok(Ok(file))
}

/// Prints which invocations' claims are held (`rkectl agent owners`); the claims of gone
/// invocations are removed on the way.
pub fn print_live_owners() -> Result<(), AgentError> {
    let live = live_owners_at(Path::new(OWNERS_DIR))?;
    println!("{}", super::report::line(&live));
    Ok(())
}

/// The claims in `dir` that are held; a free one is removed (its owner is gone).
pub fn live_owners_at(dir: &Path) -> Result<LiveOwners, AgentError> {
    let mut live = LiveOwners::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::host::owner::OwnerId::parse(&name).is_none() {
            continue;
        }
        let Ok(mut file) = File::open(entry.path()) else { continue };
        match file.try_lock() {
            // Free: nobody holds it, so its owner is gone; removed while this holds it.
            Ok(()) => {
                let _ = std::fs::remove_file(entry.path());
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let record = serde_json::from_str(&text).unwrap_or(OwnerRecord { agent: String::new(), pid: 0 });
                live.owners.insert(name, record);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const A: &str = "00000000000000aa";
    const B: &str = "00000000000000bb";

    /// Runs `hold_at` in a thread; returns what it printed first and a receiver of its end.
    fn start(
        places: &Places,
        owner: &'static str,
        holder: Option<&'static str>,
        lease: Duration,
        input: impl Read + Send + 'static,
    ) -> (String, mpsc::Receiver<()>) {
        let (first_tx, first_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let places = places.clone();
        std::thread::spawn(move || {
            /// Hands on whole lines, as the workstation reads them.
            struct Out(mpsc::Sender<String>, String);
            impl Write for Out {
                fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                    self.1.push_str(&String::from_utf8_lossy(b));
                    while let Some(i) = self.1.find('\n') {
                        let line: String = self.1.drain(..=i).collect();
                        let _ = self.0.send(line);
                    }
                    Ok(b.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            hold_at(&places, owner, holder, lease, input, &mut Out(first_tx, String::new())).unwrap();
            let _ = done_tx.send(());
        });
        let first = first_rx.recv_timeout(Duration::from_secs(10)).expect("hold-lock answers");
        (first, done_rx)
    }

    #[test]
    fn a_silent_workstation_loses_the_node_after_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places::in_dir(dir.path());
        // The input stays open and says nothing: a session cut off by a partition.
        let (reader, writer) = std::io::pipe().unwrap();
        let (first, done) = start(&places, A, Some("apply A"), Duration::from_secs(1), reader);
        assert_eq!(first.trim(), LOCKED);
        let (held, _) = start(&places, B, Some("apply B"), Duration::from_secs(1), std::io::empty());
        assert!(held.starts_with(HELD) && held.contains("apply A"), "{held}");
        done.recv_timeout(Duration::from_secs(5)).expect("the lease ends the hold");
        let (again, _) = start(&places, B, Some("apply B"), Duration::from_secs(30), std::io::empty());
        assert_eq!(again.trim(), LOCKED, "the node is free once the silent holder's lease is over");
        drop(writer);
    }

    #[test]
    fn a_talking_workstation_keeps_the_node_past_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places::in_dir(dir.path());
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (first, done) = start(&places, A, Some("apply A"), Duration::from_millis(600), reader);
        assert_eq!(first.trim(), LOCKED);
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(200));
            writer.write_all(b"\n").unwrap();
        }
        assert!(done.try_recv().is_err(), "released while the workstation was talking");
        assert!(live_owners_at(&places.owners).unwrap().owners.contains_key(A));
        drop(writer);
        done.recv_timeout(Duration::from_secs(5)).expect("a closed input ends the hold");
        assert!(live_owners_at(&places.owners).unwrap().owners.is_empty());
        assert!(std::fs::read_to_string(&places.lock_file).unwrap().is_empty(), "no record left");
    }

    #[test]
    fn a_claim_is_live_while_held_and_a_free_one_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places::in_dir(dir.path());
        let (reader, writer) = std::io::pipe().unwrap();
        let (first, done) = start(&places, A, None, Duration::from_secs(30), reader);
        assert_eq!(first.trim(), LOCKED);
        // A read-only look takes no node lock: an apply gets it meanwhile.
        let (apply_in, _apply_talks) = std::io::pipe().unwrap();
        let (apply, _) = start(&places, B, Some("apply B"), Duration::from_secs(30), apply_in);
        assert_eq!(apply.trim(), LOCKED);
        // The claim of an invocation killed where nothing released it: its file, unlocked.
        let dead = "00000000000000dd";
        std::fs::write(places.owners.join(dead), "{}").unwrap();
        let live = live_owners_at(&places.owners).unwrap();
        assert!(live.owners.contains_key(A) && live.owners.contains_key(B), "{live:?}");
        assert!(!live.owners.contains_key(dead) && !places.owners.join(dead).exists());
        drop(writer);
        done.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(!live_owners_at(&places.owners).unwrap().owners.contains_key(A));
    }
}
