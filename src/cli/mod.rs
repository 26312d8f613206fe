//! The command line: thin glue over the library.
//!
//! Every action command follows one path: read cluster.yml and the flags (refusing bad
//! input with exit code 2 before any host is dialed), observe the hosts (read-only),
//! compile the plan, show it, confirm when it is destructive, then apply it under the
//! apply lock with a journal. `rkectl apply` alone resumes an unfinished journal.
//! Exit codes: 0 done; 1 the apply failed (the journal says where); 2 refused, nothing
//! was changed.

pub mod args;
pub mod inputs;
mod interrupts;
pub mod list;
pub mod logging;
mod manual;
pub mod reporter;
mod run;

use crate::config::{self, Cluster, ConfigError, LoadedConfig};
use crate::exec::events::{Reporter, Traffic};
use crate::invocation::Resolved;

use crate::host::Connector;
use crate::host::ssh::{KnownHostsPolicy, SshConnector, SshOptions};
use crate::model::action::ActionSpec;
use crate::plan::render::{RenderOptions, render};
use crate::plan::{self, Plan};
use crate::prepare::Prepared;
use crate::secret::{Secret, redact};
use crate::state::StatePaths;
use crate::state::journal::JournalState;
use crate::state::lock::ApplyLock;
use args::{Action, Cli, Command, Common, EtcdAction, S3Flags};
use clap::Parser;
use miette::{Diagnostic, Report};
use run::{act, apply_file, resume, show};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// Why a command ended without doing what was asked.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CliError {
    /// cluster.yml is not valid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    /// A flag or argument is not valid.
    #[error("{message}")]
    #[diagnostic(code(rkectl::input))]
    Input {
        message: String,
        #[help]
        help: String,
    },
    /// Refused before anything changed (unreachable host, stale plan, missing snapshot…).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refused(Box<dyn Diagnostic + Send + Sync>),
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
    /// Bad input.
    pub fn input(message: impl Into<String>, help: impl Into<String>) -> Self {
        CliError::Input { message: message.into(), help: help.into() }
    }

    /// A refusal from a library error.
    pub fn refused(e: impl Diagnostic + Send + Sync + 'static) -> Self {
        CliError::Refused(Box::new(e))
    }

    fn exit_code(&self) -> u8 {
        match self {
            CliError::ApplyFailed(_) => 1,
            CliError::Interrupted { exit, .. } => *exit,
            _ => 2,
        }
    }
}

impl From<crate::config::BadInput> for CliError {
    fn from(e: crate::config::BadInput) -> Self {
        CliError::Input { message: e.message, help: e.help }
    }
}

/// A plain refusal with help, for conditions found by the CLI itself.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(rkectl::refused))]
pub struct Refusal {
    pub message: String,
    #[help]
    pub help: Option<String>,
}

fn refuse(message: impl Into<String>, help: impl Into<String>) -> CliError {
    CliError::refused(Refusal { message: message.into(), help: Some(help.into()) })
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
    if let Command::Agent { command } = cli.command {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        return match rt.block_on(crate::agent::run(command)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rkectl agent: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let json = json_output(&cli.command);
    if let Some(w) = command_s3_flags(&cli.command).into_iter().find_map(|f| f.library().command_line_secret_warning())
    {
        eprintln!("WARN[0000] {w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(dispatch(cli.command)) {
        Ok(traffic) => {
            if json {
                let mut result = serde_json::json!({ "exit": 0 });
                if let Some(t) = traffic {
                    result["traffic"] = serde_json::to_value(t).expect("traffic serialises");
                }
                json_line("result", &result);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            if json {
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

/// Whether the command was asked for `--json`: then stdout is one stream of JSON lines, each
/// an object with one key saying what it is (`plan`, `event`, `snapshots`, then `result` or
/// `error`), so a script reads it line by line without telling documents apart.
fn json_output(cmd: &Command) -> bool {
    match cmd {
        Command::Up { common, .. }
        | Command::Etcd { common, .. }
        | Command::Cleanup { common }
        | Command::Plan { common, .. }
        | Command::Apply { common, .. } => common.json,
        Command::Completions { .. } | Command::Man { .. } | Command::Agent { .. } => false,
    }
}

/// Writes `{"<key>": value}` as one line on stdout.
pub(crate) fn json_line(key: &str, value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let mut line = serde_json::Map::new();
    line.insert(key.to_string(), serde_json::to_value(value).expect("output serialises"));
    let _ = serde_json::to_writer(&mut out, &line);
    let _ = out.write_all(b"\n");
}

/// What a command that applied a plan moved, for the `--json` result.
type Moved = Option<Traffic>;

async fn dispatch(cmd: Command) -> Result<Moved, CliError> {
    match cmd {
        Command::Up { pki, common } => act(&common, &Action::Up { pki }).await,
        Command::Cleanup { common } => act(&common, &Action::Cleanup).await,
        Command::Etcd { command: EtcdAction::SnapshotList { verify, s3 }, common } => {
            list::run(&common, verify, &s3).await.map(|()| None)
        }
        Command::Etcd { command, common } => act(&common, &Action::Etcd { command: Box::new(command) }).await,
        Command::Plan { action, out, offline, common } => {
            let cfg = if offline { read_config(&common)? } else { load_config(&common)? };
            let resolved = inputs::resolve(&action, &cfg.cluster)?;
            let prepared = prepare(cfg, &common, resolved, offline, None).await?;
            show(&prepared.plan, &common);
            if let Some(path) = out {
                plan::file::write(&path, &common.config, &prepared.plan, prepared.pki.as_ref())
                    .map_err(CliError::refused)?;
                eprintln!("Plan saved to {}; apply it with `rkectl apply {}`", path.display(), path.display());
            }
            Ok(None)
        }
        Command::Apply { file: Some(file), abandon: false, s3, common, .. } => apply_file(&common, &file, &s3).await,
        Command::Apply { action: Some(action), abandon: false, common, .. } => act(&common, &action).await,
        Command::Apply { abandon, s3, common, .. } => resume(&common, &s3, abandon).await,
        Command::Agent { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the runtime")
        }
    }
}

/// cluster.yml read and validated (`--strict` refuses unknown keys), its warnings shown, and
/// the SSH keys it names checked: everything before a host is dialed.
fn load_config(common: &Common) -> Result<LoadedConfig, CliError> {
    let cfg = read_config(common)?;
    config::check_ssh_keys(&cfg)?;
    Ok(cfg)
}

/// cluster.yml read and validated, its warnings shown (an offline plan needs no SSH key).
fn read_config(common: &Common) -> Result<LoadedConfig, CliError> {
    let cfg = config::load_with(&common.config, config::Options { strict: common.strict })?;
    for w in &cfg.warnings {
        let warning = ConfigWarning {
            message: w.message.clone(),
            src: miette::NamedSource::new(cfg.path.display().to_string(), config::redact::for_display(&cfg.source)),
            span: w.span,
            label: w.label.clone(),
            help: w.help.clone(),
        };
        eprintln!("{:?}", Report::new(warning));
    }
    Ok(cfg)
}

/// A valid but doubtful setting in cluster.yml, shown as a warning with its line.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(severity(Warning), code(rkectl::config::warning))]
struct ConfigWarning {
    message: String,
    #[source_code]
    src: miette::NamedSource<String>,
    #[label("{label}")]
    span: Option<miette::SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
}

fn connector(common: &Common, cluster: &Cluster) -> Arc<dyn Connector> {
    let known_hosts = if common.accept_new_host_keys {
        KnownHostsPolicy::AcceptNew { file: common.known_hosts.clone() }
    } else {
        KnownHostsPolicy::Strict { file: common.known_hosts.clone() }
    };
    Arc::new(SshConnector::new(SshOptions {
        known_hosts,
        ssh_agent_auth: common.ssh_agent_auth,
        ignore_docker_version: common.ignore_docker_version,
        bastion: cluster.bastion.clone(),
        ..SshOptions::default()
    }))
}

/// The S3 flags of an action, when it has them.
fn s3_flags(action: &Action) -> Option<&S3Flags> {
    let Action::Etcd { command } = action else { return None };
    Some(etcd_s3_flags(command))
}

fn etcd_s3_flags(command: &EtcdAction) -> &S3Flags {
    match command {
        EtcdAction::SnapshotSave { s3, .. }
        | EtcdAction::SnapshotRestore { s3, .. }
        | EtcdAction::SnapshotDrill { s3, .. }
        | EtcdAction::SnapshotDelete { s3, .. }
        | EtcdAction::SnapshotPrune { s3, .. }
        | EtcdAction::SnapshotList { s3, .. } => s3,
    }
}

/// Every set of S3 flags on the command line.
fn command_s3_flags(cmd: &Command) -> Vec<&S3Flags> {
    match cmd {
        Command::Etcd { command, .. } => vec![etcd_s3_flags(command)],
        Command::Plan { action, .. } => s3_flags(action).into_iter().collect(),
        Command::Apply { action, s3, .. } => action.iter().filter_map(s3_flags).chain([s3]).collect(),
        Command::Up { .. }
        | Command::Cleanup { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Agent { .. } => Vec::new(),
    }
}

/// For a refusal of the S3 keys: where they came from, so that the help says what to fix.
fn keys_hint(refused: Option<&crate::s3::S3Error>, help: String) -> Option<String> {
    matches!(refused, Some(crate::s3::S3Error::Credentials { .. })).then_some(help)
}

/// What an apply locks: this cluster.yml's lock file, then each host as it is dialed.
struct Locks {
    /// Held until the apply ends.
    _local: ApplyLock,
    /// The record each node's lock shows to another apply.
    holder: String,
}

/// Takes the lock of this cluster.yml before anything is read or dialed, so that the
/// journal checked next and the hosts observed after cannot change under this apply.
fn lock_cluster(paths: &StatePaths, what: &str) -> Result<Locks, CliError> {
    // What is recorded is the action, never the command line: it may hold an S3 key.
    let command = format!("rkectl {what}");
    let local = ApplyLock::acquire(&paths.lock, &command).map_err(CliError::refused)?;
    if let Some(prev) = &local.previous {
        eprintln!(
            "WARN[0000] A previous apply (pid {} on {}, since {}) ended without releasing the lock; taking it over",
            prev.pid, prev.host, prev.since
        );
    }
    Ok(Locks { _local: local, holder: crate::state::lock::Holder::me(&command).to_line() })
}

/// Prepares a resolved action (see [`crate::prepare`]), its refusals redacted of the secrets
/// it was given.
async fn prepare(
    cfg: LoadedConfig,
    common: &Common,
    resolved: Resolved,
    offline: bool,
    lock_nodes: Option<String>,
) -> Result<Prepared, CliError> {
    let connector = connector(common, &cfg.cluster);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (secrets, keys_from) = (resolved.secrets(), resolved.keys_from.clone());
    let input = crate::prepare::PrepareInput {
        cfg,
        spec: resolved.spec,
        s3: resolved.s3,
        state_passphrase: resolved.state_passphrase,
        pki_flags: resolved.pki_flags,
        offline,
        lock_nodes,
        connector,
        now,
    };
    prepare_input(input, &secrets, keys_from).await
}

/// Prepares `input`; a refusal is redacted of `secrets`, and one of the S3 keys says where
/// they came from (`keys_from`).
async fn prepare_input(
    input: crate::prepare::PrepareInput,
    secrets: &[Secret],
    keys_from: String,
) -> Result<Prepared, CliError> {
    crate::prepare::prepare(input).await.map_err(|e| {
        let hint = keys_hint(e.s3(), keys_from);
        redact_refusal(e, secrets, hint)
    })
}

/// A refusal whose text may quote an S3 key back (a server's error message): redacted;
/// `hint` is added to its help.
fn redact_refusal(e: impl Diagnostic + Send + Sync + 'static, secrets: &[Secret], hint: Option<String>) -> CliError {
    if secrets.is_empty() && hint.is_none() {
        return CliError::refused(e);
    }
    let text = redact(&e.to_string(), &secrets.iter().collect::<Vec<_>>());
    let help = match (e.help().map(|h| h.to_string()), hint) {
        (Some(help), Some(hint)) => Some(format!("{help}; {hint}")),
        (help, hint) => help.or(hint),
    };
    CliError::refused(Refusal { message: text, help })
}
