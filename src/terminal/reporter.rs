//! Reporters: events turned into what a person or a program reads.
//!
//! - [`Human`]: on a terminal, a progress line per host (indicatif) with log lines above
//!   it; elsewhere (CI logs, pipes), plain lines in the reference's shape,
//!   `INFO[0004] [etcd] Saving snapshot [x] on host [y]`, with no escape codes.
//! - [`JsonLines`]: one JSON object per event, for `--json`.

use crate::config::HostAddr;
use crate::exec::events::{ApplyEvent, ApplyEventKind, Level, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// One progress line per host (`None`: cluster-wide steps).
type Bars = Mutex<HashMap<Option<HostAddr>, ProgressBar>>;

/// Human output, with progress bars when `tty`.
pub struct Human {
    bars: Option<(MultiProgress, Bars)>,
    /// `-q`: warnings and errors only, no bars.
    quiet: bool,
}

impl Human {
    /// A reporter writing to stderr; bars only when `tty` and not `quiet`.
    pub fn new(tty: bool, quiet: bool) -> Human {
        let bars = (tty && !quiet)
            .then(|| (MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), Mutex::new(HashMap::new())));
        Human { bars, quiet }
    }

    fn line(&self, text: String) {
        if self.quiet && text.starts_with("INFO") {
            return;
        }
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    fn bar(&self, host: &Option<HostAddr>) -> Option<ProgressBar> {
        let (mp, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().expect("bars lock");
        Some(
            bars.entry(host.clone())
                .or_insert_with(|| {
                    let pb = mp.add(ProgressBar::new_spinner());
                    pb.set_style(ProgressStyle::with_template(STEP).expect("valid template"));
                    pb.set_prefix(host.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "cluster".into()));
                    pb.enable_steady_tick(std::time::Duration::from_millis(120));
                    pb
                })
                .clone(),
        )
    }
}

fn stamp(level: &str, e: &ApplyEvent) -> String {
    format!("{level}[{:04}]", e.elapsed.as_secs())
}

impl Reporter for Human {
    fn event(&self, e: &ApplyEvent) {
        if let Some(text) = line(e) {
            self.line(text);
        }
        self.progress(e);
    }
}

impl Human {
    /// Moves the progress line of the event's host, on a terminal.
    fn progress(&self, e: &ApplyEvent) {
        match &e.kind {
            ApplyEventKind::StepStarted { kind, host, attempt, .. } => {
                if let Some(pb) = self.bar(host) {
                    pb.set_style(ProgressStyle::with_template(STEP).expect("valid template"));
                    let retry = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    pb.set_message(format!("{kind}{retry}"));
                }
            }
            ApplyEventKind::BytesTransferred { host, bytes, total, .. } => {
                if let Some(pb) = self.bar(host) {
                    match total {
                        Some(t) if pb.length() != Some(*t) => {
                            pb.set_length(*t);
                            pb.set_style(ProgressStyle::with_template(SIZED).expect("valid template"));
                        }
                        // Size not known in advance (a snapshot streamed while it is taken).
                        None if pb.length().is_some() || *bytes == 0 => {}
                        None => pb.set_style(ProgressStyle::with_template(UNSIZED).expect("valid template")),
                        _ => {}
                    }
                    pb.set_position(*bytes);
                }
            }
            ApplyEventKind::StepFinished { host, kind, .. } => {
                if let Some(pb) = self.bar(host) {
                    pb.set_message(format!("{kind} done"));
                }
            }
            ApplyEventKind::StepFailed { kind, host, .. } => {
                if let Some(pb) = self.bar(host) {
                    pb.set_message(format!("{kind} FAILED"));
                }
            }
            ApplyEventKind::RunFinished { .. } => {
                if let Some((mp, bars)) = &self.bars {
                    for pb in bars.lock().expect("bars lock").values() {
                        pb.finish();
                    }
                    let _ = mp.clear();
                }
            }
            _ => {}
        }
    }
}

/// A host's progress line while a step runs; while bytes of known size move; of unknown size.
const STEP: &str = "{spinner} {prefix:<16} {wide_msg}";
const SIZED: &str = "{spinner} {prefix:<16} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}";
const UNSIZED: &str = "{spinner} {prefix:<16} {bytes} {bytes_per_sec} {msg}";

/// The log line an event is shown as, in the reference's shape, if it is one.
fn line(e: &ApplyEvent) -> Option<String> {
    let level = |l: &Level| match l {
        Level::Info => "INFO",
        Level::Warn => "WARN",
    };
    Some(match &e.kind {
        ApplyEventKind::RunStarted { steps, already_done, .. } if *already_done > 0 => {
            format!("{} Resuming: {already_done} of {steps} steps were done by an earlier run", stamp("INFO", e))
        }
        ApplyEventKind::RunStarted { steps, hosts, .. } => {
            let (s, h) = (if *steps == 1 { "" } else { "s" }, if *hosts == 1 { "" } else { "s" });
            format!("{} Applying {steps} step{s} on {hosts} host{h}", stamp("INFO", e))
        }
        ApplyEventKind::RunNote { level: l, message } => format!("{} {message}", stamp(level(l), e)),
        ApplyEventKind::StepLog { level: l, topic, message, .. } => {
            format!("{} [{topic}] {message}", stamp(level(l), e))
        }
        ApplyEventKind::StepRetrying { id, attempt, error, delay_ms, .. } => format!(
            "{} {id}: attempt {attempt} failed ({error}); retrying in {:.1}s",
            stamp("WARN", e),
            *delay_ms as f64 / 1000.0
        ),
        // The result of the command: shown even with -q.
        ApplyEventKind::DrillReport { host, report, origin, .. } => {
            let on = host.as_ref().map(|h| h.to_string()).unwrap_or_default();
            drill_text(&on, origin, report).trim_end().to_string()
        }
        ApplyEventKind::StepFailed { kind, host, error, .. } => {
            let on = host.as_ref().map(|h| format!(" on host [{h}]")).unwrap_or_default();
            format!("{} [{kind}] failed{on}: {error}", stamp("ERRO", e))
        }
        ApplyEventKind::RunCancelling { reason } => format!("{} Stopping: {reason}", stamp("WARN", e)),
        _ => return None,
    })
}

/// A drill's report as a person reads it.
pub fn drill_text(host: &str, origin: &str, r: &crate::agent::drill::DrillReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    // The agent reports a name it read from a valid file name; the name itself otherwise.
    let file = crate::model::SnapshotName::new(&r.snapshot.name)
        .map(|n| r.snapshot.format.file_name(&n))
        .unwrap_or_else(|_| r.snapshot.name.clone());
    let _ = writeln!(t, "Drill of snapshot {file} on host {host}:");
    let _ = writeln!(t, "  snapshot    {} bytes, {}, {origin}", r.snapshot.size, r.snapshot.checksum.0);
    let live_at = r.live.as_ref().map(|l| format!(" (the live cluster is at revision {})", l.revision));
    let _ =
        writeln!(t, "  etcd        revision {}, hash {}{}", r.restored.revision, r.hash, live_at.unwrap_or_default());
    if let Some(n) = &r.newest {
        let _ = writeln!(t, "  newest      {} (revision {})", n.key, n.mod_revision);
    }
    use crate::model::step::human_millis;
    let _ =
        writeln!(t, "  wall time   restore {}, drill {}", human_millis(r.restore_millis), human_millis(r.total_millis));
    let live = r.live.as_ref();
    match live {
        Some(l) => {
            let _ = writeln!(t, "  {:<40} {:>10} {:>10}", "keys, by resource", "snapshot", "live");
            let _ = writeln!(t, "  {:<40} {:>10} {:>10}", "all keys", r.restored.keys, l.keys);
        }
        None => {
            let _ = writeln!(t, "  {:<40} {:>10}", "keys, by resource", "snapshot");
            let _ = writeln!(t, "  {:<40} {:>10}", "all keys", r.restored.keys);
        }
    }
    let resources: std::collections::BTreeSet<&String> =
        r.restored.by_resource.keys().chain(live.iter().flat_map(|l| l.by_resource.keys())).collect();
    for res in resources {
        let here = r.restored.by_resource.get(res).copied().unwrap_or(0);
        match live {
            Some(l) => {
                let there = l.by_resource.get(res).copied().unwrap_or(0);
                let _ = writeln!(t, "  {res:<40} {here:>10} {there:>10}");
            }
            None => {
                let _ = writeln!(t, "  {res:<40} {here:>10}");
            }
        }
    }
    t
}

/// One JSON object per event on stdout.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&self, e: &ApplyEvent) {
        // One line `{"event": …}`, as every line of the `--json` stream names what it is.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"{\"event\":");
        let _ = serde_json::to_writer(&mut out, e);
        let _ = out.write_all(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::drill_text;

    #[test]
    fn a_drill_report_says_its_revisions_in_words_not_as_a_row_of_keys() {
        let report = serde_json::json!({
            "snapshot": {"name": "s", "format": "zip", "size": 10, "checksum": "blake3:ab", "etcd_ok": true,
                         "problem": null, "etcd": null, "uploaded": false},
            "hash": 7,
            "restored": {"revision": 10, "keys": 3, "by_resource": {"secrets": 2}},
            "newest": null, "restore_millis": 100, "total_millis": 900,
            "live": {"revision": 12, "keys": 4, "by_resource": {"secrets": 3}}
        });
        let text = drill_text("10.0.0.1", "host 10.0.0.1's own copy", &serde_json::from_value(report).unwrap());
        assert!(text.contains("revision 10, hash 7 (the live cluster is at revision 12)"), "{text}");
        assert!(!text.contains("(revision)") && !text.contains("(all)"), "{text}");
        assert!(text.lines().any(|l| l.trim_start().starts_with("all keys") && l.ends_with(" 3          4")), "{text}");
        assert!(text.contains("restore 100 ms, drill 900 ms"), "{text}");
    }
}
