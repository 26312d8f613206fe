//! The command line: thin glue over the library.
//!
//! Every action command follows one path: read cluster.yml and the flags (refusing bad
//! input with exit code 2 before any host is dialed), observe the hosts (read-only),
//! compile the plan, show it, confirm when it is destructive, then apply it under the
//! apply lock with a journal. `rkectl apply` alone resumes an unfinished journal.
//! Exit codes: 0 done; 1 the apply failed (the journal says where); 2 refused, nothing
//! was changed.

pub mod args;
mod inputs;
mod manual;

use crate::apply::ApplyError;
use crate::config::Cluster;
use crate::host::Connector;
use crate::host::ssh::{KnownHostsPolicy, SshConnector, SshOptions};
use crate::session::{Session, SessionError};
use crate::terminal::{Terminal, json_line, logging};
use args::{Action, Cli, Command, Common, EtcdAction, S3Flags};
use clap::Parser;
use miette::{Diagnostic, Report};
use std::process::ExitCode;
use std::sync::Arc;

/// Why a command ended without doing what was asked.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CliError {
    /// Refused before anything changed (bad input, unreachable host, stale plan…).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refused(SessionError),
    /// The apply started and failed.
    #[error("{0}")]
    #[diagnostic(code(rkectl::apply::failed))]
    ApplyFailed(String),
    /// The apply was stopped by SIGINT or SIGTERM after its running steps finished.
    #[error("{message}")]
    #[diagnostic(code(rkectl::apply::interrupted))]
    Interrupted { message: String, exit: u8 },
}

impl CliError {
    /// What a session's error means for the exit code, with the signal that stopped it.
    fn of(e: SessionError, signal: Option<u8>) -> CliError {
        let SessionError::Apply(e) = e else { return CliError::Refused(e) };
        match (signal, &e) {
            (Some(exit), ApplyError::Interrupted { .. } | ApplyError::InterruptedBeforeChanges) => {
                CliError::Interrupted { message: e.to_string(), exit }
            }
            _ if e.changed_cluster() => CliError::ApplyFailed(e.to_string()),
            _ => CliError::Refused(SessionError::Apply(e)),
        }
    }

    /// A signal that came before any step ran.
    fn interrupted_before_steps(signal: Option<u8>) -> CliError {
        CliError::Interrupted {
            message: "interrupted before any step ran: nothing was changed on any host".into(),
            exit: signal.unwrap_or(130),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            CliError::ApplyFailed(_) => 1,
            CliError::Interrupted { exit, .. } => *exit,
            CliError::Refused(_) => 2,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => return manual::completions(*shell),
        Command::Man { out, command } => return manual::man(out.as_deref(), command),
        _ => {}
    }
    logging::init(cli.verbose, cli.quiet);
    // miette wraps at hyphens by default, which breaks snapshot names, addresses and flags
    // (`2026-12-07T03:00:00Z_etcd`, `--state-passphrase-file`) across lines.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .word_splitter(textwrap::WordSplitter::NoHyphenation)
                .break_words(false)
                .build(),
        )
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (common, s3) = match cli.command {
        Command::Agent { command } => {
            return match rt.block_on(crate::agent::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rkectl agent: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        Command::Up { .. } | Command::Cleanup => (cli.common.clone(), S3Flags::default()),
        Command::Etcd { ref command } => (cli.common.clone(), command.s3().clone()),
        Command::Plan { ref action, .. } => (cli.common.clone(), action.s3().cloned().unwrap_or_default()),
        Command::Apply { action: Some(ref action), .. } => {
            (cli.common.clone(), action.s3().cloned().unwrap_or_default())
        }
        Command::Apply { ref s3, .. } => (cli.common.clone(), s3.clone()),
        Command::Completions { .. } | Command::Man { .. } => unreachable!("handled above"),
    };
    if let Some(w) = s3.library().command_line_secret_warning() {
        eprintln!("WARN[0000] {w}");
    }
    let terminal = Terminal::new(common.json, common.yes);
    let session = Session {
        console: &terminal,
        config: common.config(),
        strict: common.strict,
        connect: Box::new(|cluster: &Cluster| connector(&common, cluster)),
        s3: s3.library(),
        passphrase_file: s3.state_passphrase_file(),
        parallelism: common.parallelism.map(|n| n as usize),
    };
    let result = rt.block_on(async {
        terminal.listen();
        // A signal before any step runs ends the command here: what it holds (the lock,
        // the SSH sessions) is released as the command is dropped, and nothing has changed.
        let result = tokio::select! {
            r = dispatch(&session, cli.command, common.json) => r.map_err(|e| CliError::of(e, terminal.signal())),
            () = terminal.interrupted_before_steps() => Err(CliError::interrupted_before_steps(terminal.signal())),
        };
        match result {
            Err(CliError::Refused(_)) if terminal.came_before_steps() => {
                Err(CliError::interrupted_before_steps(terminal.signal()))
            }
            r => r,
        }
    });
    match result {
        Ok(applied) => {
            if common.json {
                let mut result = serde_json::json!({ "exit": 0 });
                if let Some(a) = applied {
                    result["traffic"] = serde_json::to_value(a.traffic).expect("traffic serialises");
                }
                json_line("result", &result);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            if common.json {
                let error = serde_json::json!({
                    "exit": code,
                    "code": e.code().map(|c| c.to_string()),
                    "message": e.to_string(),
                    "help": e.help().map(|h| h.to_string()),
                });
                json_line("error", &error);
            }
            eprintln!("{:?}", Report::new(e));
            ExitCode::from(code)
        }
    }
}

/// Runs a command of the cluster; what it applied, if it did.
async fn dispatch(
    session: &Session<'_>,
    cmd: Command,
    json: bool,
) -> Result<Option<crate::apply::Applied>, SessionError> {
    match cmd {
        Command::Up { pki, .. } => session.act(&inputs::request(&Action::Up { pki })?).await,
        Command::Cleanup => session.act(&inputs::request(&Action::Cleanup)?).await,
        Command::Etcd { command: EtcdAction::SnapshotList { verify, .. }, .. } => {
            let (cfg, rows) = session.list(verify).await?;
            if json {
                json_line("snapshots", &rows);
            } else {
                let hosts: Vec<String> = cfg.cluster.etcd_nodes().map(|n| n.address.to_string()).collect();
                print!("{}", crate::inventory::table(&rows, &hosts));
            }
            Ok(None)
        }
        Command::Etcd { command, .. } => {
            session.act(&inputs::request(&Action::Etcd { command: Box::new(command) })?).await
        }
        Command::Plan { action, out, offline, .. } => {
            session.plan(&inputs::request(&action)?, offline, out.as_deref()).await.map(|()| None)
        }
        Command::Apply { file: Some(file), abandon: false, .. } => session.apply_saved(&file).await,
        Command::Apply { action: Some(action), abandon: false, .. } => session.act(&inputs::request(&action)?).await,
        Command::Apply { abandon, .. } => session.resume(abandon).await,
        Command::Agent { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the runtime")
        }
    }
}

/// Dials over SSH with the flags given.
fn connector(common: &Common, cluster: &Cluster) -> Arc<dyn Connector> {
    let known_hosts = if common.accept_new_host_keys {
        KnownHostsPolicy::AcceptNew { file: common.known_hosts() }
    } else {
        KnownHostsPolicy::Strict { file: common.known_hosts() }
    };
    Arc::new(SshConnector::new(SshOptions {
        known_hosts,
        ssh_agent_auth: common.ssh_agent_auth,
        ignore_docker_version: common.ignore_docker_version,
        bastion: cluster.bastion.clone(),
        ..SshOptions::default()
    }))
}
