//! A person at a terminal (or a script reading `--json`): how a [`crate::session`] is shown
//! and confirmed there.
//!
//! Plans go to stdout (rendered, or one JSON line); everything about the run goes to stderr
//! in the reference's shape (`INFO[0004] [etcd] …`), with progress bars on a terminal
//! ([`reporter`]); `--json` turns events into JSON lines on stdout. Ctrl-C and SIGTERM
//! during an apply stop scheduling ([`interrupts`]); the library's own diagnostics go
//! through `tracing` ([`logging`]).

pub mod interrupts;
pub mod logging;
pub mod reporter;

use crate::config::LoadedConfig;
use crate::exec::events::{Level, Reporter};
use crate::plan::Plan;
use crate::plan::render::{RenderOptions, render};
use crate::secret::Redacted;
use crate::session::Console;
use interrupts::Interrupts;
use miette::Report;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

/// The terminal this process runs in.
pub struct Terminal {
    /// `--json`: one stream of JSON lines on stdout.
    json: bool,
    /// `--yes`: a destructive plan needs no answer.
    yes: bool,
    reporter: Box<dyn Reporter>,
    /// Listening for signals, from [`Terminal::listen`] on.
    interrupts: OnceLock<Interrupts>,
}

impl Terminal {
    /// A terminal for `--json` (or not) and `--yes` (or not).
    pub fn new(json: bool, yes: bool) -> Terminal {
        let reporter: Box<dyn Reporter> = if json {
            Box::new(reporter::JsonLines)
        } else {
            Box::new(reporter::Human::new(std::io::stderr().is_terminal(), logging::quiet()))
        };
        Terminal { json, yes, reporter, interrupts: OnceLock::new() }
    }

    /// Listens for Ctrl-C and SIGTERM from now on (inside the runtime, before the command).
    pub fn listen(&self) {
        self.interrupts.get_or_init(Interrupts::listen);
    }

    /// Resolves when a signal came before any step ran: the command may end at once.
    pub async fn interrupted_before_steps(&self) {
        match self.interrupts.get() {
            Some(i) => i.before_steps().await,
            None => std::future::pending().await,
        }
    }

    /// Whether a signal came before any step ran.
    pub fn came_before_steps(&self) -> bool {
        self.interrupts.get().is_some_and(Interrupts::came_before_steps)
    }

    /// The exit code of the signal that came, if one did.
    pub fn signal(&self) -> Option<u8> {
        self.interrupts.get().and_then(Interrupts::signal)
    }
}

impl Console for Terminal {
    fn show(&self, plan: &Plan) {
        if self.json {
            json_line("plan", plan);
        } else {
            let color = logging::colours(std::io::stdout().is_terminal());
            let _ = write!(
                std::io::stdout().lock(),
                "{}",
                render(plan, RenderOptions { color, verbose: logging::verbose() })
            );
        }
    }

    fn reviewed(&self, plan: &Plan, file: &std::path::Path) {
        if self.json {
            json_line("plan", plan);
        } else {
            let n = plan.step_count();
            eprintln!(
                "The plan in {} is unchanged since it was made: applying its {n} step{}.",
                file.display(),
                if n == 1 { "" } else { "s" }
            );
        }
    }

    fn confirm(&self, what: &str) -> Result<(), Redacted> {
        let refuse = |message: String, help: &str| Redacted::new(message, help);
        if self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            return Err(refuse(
                format!("this plan needs confirmation ({what}) and there is no terminal to confirm it"),
                "review the plan above, then re-run with --yes",
            ));
        }
        eprint!("{what}. Type `yes` to continue: ");
        let _ = std::io::stderr().flush();
        // The answer is read on a thread of its own: Ctrl-C at the prompt ends the command
        // (the runtime's handler took the signal's default action away).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut answer = String::new();
            let _ = tx.send(std::io::stdin().read_line(&mut answer).map(|_| answer));
        });
        let answer = loop {
            if self.came_before_steps() {
                eprintln!();
                return Err(refuse("interrupted at the prompt; nothing was changed".into(), "run the command again"));
            }
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(answer) => break answer,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(std::io::Error::other("the terminal closed"));
                }
            }
        };
        match answer {
            Ok(answer) if answer.trim() == "yes" => Ok(()),
            Ok(_) => Err(refuse("not confirmed; nothing was changed".into(), "type `yes` to apply, or use --yes")),
            Err(e) => Err(refuse(format!("no answer could be read: {e}"), "answer yes or no, or use --yes")),
        }
    }

    fn log(&self, level: Level, secs: u64, line: &str) {
        match level {
            Level::Info => logging::info(secs, line),
            Level::Warn => eprintln!("WARN[{secs:04}] {line}"),
        }
    }

    fn say(&self, text: &str) {
        eprint!("{text}");
    }

    fn config_warnings(&self, cfg: &LoadedConfig) {
        for w in cfg.warning_reports() {
            eprintln!("{:?}", Report::new(w));
        }
    }

    fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    fn applying(&self) -> Option<tokio_util::sync::CancellationToken> {
        Some(self.interrupts.get_or_init(Interrupts::listen).applying())
    }

    fn needs_yes(&self) -> bool {
        self.yes || !std::io::stdin().is_terminal()
    }
}

/// Writes `{"<key>": value}` as one line on stdout: with `--json`, stdout is one stream of
/// JSON lines, each an object with one key saying what it is (`plan`, `event`,
/// `snapshots`, then `result` or `error`), so a script reads it line by line.
pub fn json_line(key: &str, value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let mut line = serde_json::Map::new();
    line.insert(key.to_string(), serde_json::to_value(value).expect("output serialises"));
    let _ = serde_json::to_writer(&mut out, &line);
    let _ = out.write_all(b"\n");
}
