//! The apply journal: the plan being applied, then a record per step start and finish.
//!
//! One JSON object per line, appended and fsynced. The first line holds the whole plan, so
//! a later `rkectl apply` can resume from the journal file alone. A step's `finished`
//! record is durable before any step that waits for it starts (the scheduler only releases
//! dependents after the flush that carries the record returns); `started` records ride
//! along in the same flushes. Flushes are group commits: every record that arrives while
//! one fsync is in flight goes out in the next, so the cost per step stays constant when a
//! thousand hosts finish at once.
//!
//! A torn last line (the process died mid-write) is ignored on reading; any other line that
//! does not parse makes the journal corrupt, which is refused rather than guessed at.

use crate::model::step::StepId;
use crate::plan::{FORMAT, Plan};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// First line: what is being applied.
    Header { format: u32, rkectl: String, started_at: String, config: String, plan: Box<Plan> },
    /// A step began (attempt counts from 1).
    Started { step: StepId, attempt: u32 },
    /// A step finished; on resume it is skipped.
    Finished { step: StepId },
    /// A step failed for good; the message is already redacted.
    Failed { step: StepId, error: String },
    /// An apply (first run or resume) began.
    RunStarted { at: String, resumed: bool },
    /// An apply ended, with or without success.
    RunEnded { at: String, ok: bool },
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum JournalError {
    #[error("cannot write the journal {}: {source}", path.display())]
    #[diagnostic(code(rkectl::journal::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal {} is corrupt at line {line}: {reason}", path.display())]
    #[diagnostic(
        code(rkectl::journal::corrupt),
        help(
            "rkectl will not guess what a damaged journal meant; inspect it, then move it away to start over (`rkectl apply --abandon`)"
        )
    )]
    Corrupt { path: PathBuf, line: usize, reason: String },
    #[error("the journal {} was written by another rkectl (format {found}, this one reads {FORMAT})", path.display())]
    #[diagnostic(
        code(rkectl::journal::format),
        help(
            "finish the apply with the rkectl version that started it, or move the journal away (`rkectl apply --abandon`)"
        )
    )]
    OtherFormat { path: PathBuf, found: u32 },
}

/// What a journal file says.
#[derive(Debug)]
pub struct JournalState {
    pub plan: Plan,
    pub config: String,
    pub started_at: String,
    /// Steps whose `finished` record is in the file.
    pub finished: HashSet<StepId>,
    /// Steps started but not finished (interrupted, or failed).
    pub interrupted: Vec<StepId>,
    /// The last failure recorded, if any.
    pub last_failure: Option<(StepId, String)>,
    /// Runs recorded so far.
    pub runs: usize,
}

/// Reads a journal file.
pub fn read(path: &Path) -> Result<JournalState, JournalError> {
    let bytes = std::fs::read(path).map_err(|source| JournalError::Io { path: path.to_path_buf(), source })?;
    let corrupt = |line: usize, reason: String| JournalError::Corrupt { path: path.to_path_buf(), line, reason };
    // A crash can tear the last line anywhere, even inside a multibyte character: what
    // follows the last line break is not a record, and is cut before decoding.
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &[][..],
    };
    let complete = std::str::from_utf8(complete).map_err(|e| corrupt(0, format!("it is not UTF-8 text: {e}")))?;
    let mut lines = complete.lines().enumerate();
    let (plan, config, started_at) = match lines.next() {
        None => return Err(corrupt(1, "no header line".into())),
        Some((_, l)) => {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| corrupt(1, e.to_string()))?;
            let format = v.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
            if format != FORMAT {
                return Err(JournalError::OtherFormat { path: path.to_path_buf(), found: format });
            }
            match serde_json::from_value::<Record>(v).map_err(|e| corrupt(1, e.to_string()))? {
                Record::Header { plan, config, started_at, .. } => (*plan, config, started_at),
                _ => return Err(corrupt(1, "first line is not a header".into())),
            }
        }
    };
    plan.graph().map_err(|e| corrupt(1, format!("the plan in it is not valid: {e}")))?;
    let ids: HashSet<&StepId> = plan.steps.iter().map(|s| &s.id).collect();
    let mut finished = HashSet::new();
    let mut started: Vec<StepId> = Vec::new();
    let mut last_failure = None;
    let mut runs = 0;
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(l).map_err(|e| corrupt(i + 1, e.to_string()))?;
        let known = |s: &StepId| -> Result<(), JournalError> {
            if ids.contains(s) { Ok(()) } else { Err(corrupt(i + 1, format!("step {s} is not in the plan"))) }
        };
        match r {
            Record::Header { .. } => return Err(corrupt(i + 1, "a second header".into())),
            Record::Started { step, .. } => {
                known(&step)?;
                started.push(step);
            }
            Record::Finished { step } => {
                known(&step)?;
                finished.insert(step);
            }
            Record::Failed { step, error } => {
                known(&step)?;
                last_failure = Some((step, error));
            }
            Record::RunStarted { .. } => runs += 1,
            Record::RunEnded { .. } => {}
        }
    }
    let mut seen = HashSet::new();
    let interrupted = started.into_iter().filter(|s| !finished.contains(s) && seen.insert(s.clone())).collect();
    Ok(JournalState { plan, config, started_at, finished, interrupted, last_failure, runs })
}

/// Appends records to a journal with group-committed fsyncs.
pub struct JournalWriter {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    buffer: Vec<u8>,
    inflight: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// A write failed: the file may end in a torn line, which a reader skips, and anything
    /// appended behind it would make the whole journal unreadable, so nothing more is.
    broken: bool,
}

impl JournalWriter {
    /// Creates a new journal holding `plan` (fails if one exists: finish or abandon it first).
    pub fn create(path: &Path, config: &str, plan: &Plan) -> Result<JournalWriter, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let file = open_private(path, true).map_err(io)?;
        let mut w = JournalWriter {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            buffer: Vec::new(),
            inflight: None,
            broken: false,
        };
        w.push(&Record::Header {
            format: FORMAT,
            rkectl: env!("CARGO_PKG_VERSION").to_string(),
            started_at: crate::local::now_rfc3339(),
            config: config.to_string(),
            plan: Box::new(plan.clone()),
        });
        w.flush_now().map_err(io)?;
        if let Some(dir) = path.parent() {
            // The journal's name must survive a crash too.
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                let _ = d.sync_all();
            }
        }
        Ok(w)
    }

    /// Opens an existing journal to append to it (resume).
    pub fn append(path: &Path) -> Result<JournalWriter, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        // Cut a torn last line so the next record starts on a line of its own.
        let text = std::fs::read(path).map_err(io)?;
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let file = open_private(path, false).map_err(io)?;
        file.set_len(keep as u64).map_err(io)?;
        Ok(JournalWriter {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            buffer: Vec::new(),
            inflight: None,
            broken: false,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a record for the next flush (none after a failed write).
    pub fn push(&mut self, r: &Record) {
        if self.broken {
            return;
        }
        serde_json::to_writer(&mut self.buffer, r).expect("records serialise");
        self.buffer.push(b'\n');
    }

    /// Whether records wait for a flush.
    pub fn has_pending(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Whether a flush is under way.
    pub fn is_flushing(&self) -> bool {
        self.inflight.is_some()
    }

    /// Starts writing and fsyncing what is queued, in the background.
    pub fn start_flush(&mut self) {
        debug_assert!(self.inflight.is_none());
        let data = std::mem::take(&mut self.buffer);
        let file = self.file.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let mut f = file.lock().expect("journal file lock");
            f.write_all(&data)?;
            f.sync_data()
        }));
    }

    /// Waits for the flush under way; after it, the records it carried are durable.
    pub async fn finish_flush(&mut self) -> Result<(), JournalError> {
        let Some(h) = self.inflight.as_mut() else { return Ok(()) };
        let r = h.await;
        self.inflight = None;
        let source = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(source)) => source,
            Err(e) => std::io::Error::other(e.to_string()),
        };
        self.broken = true;
        self.buffer.clear();
        Err(JournalError::Io { path: self.path.clone(), source })
    }

    /// Writes everything queued and waits until it is durable.
    pub async fn sync(&mut self) -> Result<(), JournalError> {
        self.finish_flush().await?;
        if self.has_pending() {
            self.start_flush();
            self.finish_flush().await?;
        }
        Ok(())
    }

    fn flush_now(&mut self) -> std::io::Result<()> {
        let data = std::mem::take(&mut self.buffer);
        let mut f = self.file.lock().expect("journal file lock");
        f.write_all(&data)?;
        f.sync_data()
    }
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.append(true).mode(0o600);
    if create_new {
        o.create_new(true);
    }
    o.open(path)
}

/// Moves a finished journal aside (kept as `.last` for the record).
pub fn retire(path: &Path) -> std::io::Result<()> {
    let mut last = path.as_os_str().to_owned();
    last.push(".last");
    std::fs::rename(path, PathBuf::from(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_line_torn_inside_a_multibyte_character_is_dropped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let plan = crate::plan::Plan {
            format: crate::plan::FORMAT,
            action: crate::model::action::ActionSpec::Up,
            title: "t".into(),
            cluster_name: "c".into(),
            cluster_hash: "h".into(),
            made_at: 0,
            observed: crate::model::observed::Observed::Offline,
            observed_fingerprint: String::new(),
            notes: Vec::new(),
            steps: Vec::new(),
            changes: Vec::new(),
        };
        drop(JournalWriter::create(&path, "cluster.yml", &plan).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        // "é" is two bytes; keep only the first of them.
        let torn = "{\"type\":\"failed\",\"error\":\"é".as_bytes();
        bytes.extend_from_slice(&torn[..torn.len() - 1]);
        std::fs::write(&path, &bytes).unwrap();
        let j = read(&path).expect("the torn line is dropped");
        assert_eq!(j.plan.title, "t");
    }
}
