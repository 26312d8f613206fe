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
pub mod list;
pub mod logging;
pub mod reporter;

use crate::cluster_pki::{ClusterPki, PkiFlags, PkiSource};
use crate::config::{self, Cluster, ConfigError, LoadedConfig, S3Settings};
use crate::exec::events::{Reporter, Traffic};

use crate::host::Connector;
use crate::host::ssh::{KnownHostsPolicy, SshConnector, SshOptions};
use crate::plan::render::{RenderOptions, render};
use crate::plan::{self, ActionSpec, Plan, StepKind};
use crate::prepare::Prepared;
use crate::secret::{Secret, redact};
use crate::state::StatePaths;
use crate::state::journal::{self, JournalState};
use crate::state::lock::ApplyLock;
use args::{Action, Cli, Command, Common, EtcdAction, S3Flags};
use clap::Parser;
use miette::{Diagnostic, Report};
use std::collections::HashSet;
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

/// Writes generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_generated(what: &str, text: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkectl {what}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "rkectl", &mut script);
            return print_generated("completions", &script);
        }
        Command::Man => {
            let mut page = Vec::new();
            if let Err(e) = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page) {
                eprintln!("rkectl man: {e}");
                return ExitCode::from(1);
            }
            return print_generated("man", &page);
        }
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
        Command::Completions { .. } | Command::Man | Command::Agent { .. } => false,
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
type Applied = Option<Traffic>;

async fn dispatch(cmd: Command) -> Result<Applied, CliError> {
    match cmd {
        Command::Up { pki, common } => act(&common, &Action::Up { pki }).await,
        Command::Cleanup { common } => act(&common, &Action::Cleanup).await,
        Command::Etcd { command: EtcdAction::SnapshotList { verify, s3 }, common } => {
            list::run(&common, verify, &s3).await.map(|()| None)
        }
        Command::Etcd { command, common } => act(&common, &Action::Etcd { command: Box::new(command) }).await,
        Command::Plan { action, out, offline, common } => {
            let cfg = if offline { read_config(&common)? } else { load_config(&common)? };
            let prepared = prepare(cfg, &common, &action, offline, None).await?;
            show(&prepared.plan, &common);
            if let Some(path) = out {
                if prepared.pki.as_ref().is_some_and(|p| p.source == PkiSource::New) {
                    return Err(CliError::input(
                        "a plan that makes a new PKI cannot be saved: its private keys cannot go into a plan file",
                        "run the action itself (`rkectl up --new-pki`), which shows the plan and asks before applying",
                    ));
                }
                let json = serde_json::to_vec_pretty(&PlanFile {
                    config: common.config.display().to_string(),
                    plan: prepared.plan.clone(),
                })
                .expect("plan serialises");
                crate::state::cluster_state::write_private_atomic(&path, &json).map_err(|e| {
                    CliError::input(format!("cannot write {}: {e}", path.display()), "choose a writable path")
                })?;
                eprintln!("Plan saved to {}; apply it with `rkectl apply {}`", path.display(), path.display());
            }
            Ok(None)
        }
        Command::Apply { file: Some(file), abandon: false, s3, common, .. } => apply_file(&common, &file, &s3).await,
        Command::Apply { action: Some(action), abandon: false, common, .. } => act(&common, &action).await,
        Command::Apply { abandon, s3, common, .. } => resume(&common, &s3, abandon).await,
        Command::Agent { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("handled before the runtime")
        }
    }
}

/// A saved plan.
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    config: String,
    plan: Plan,
}

/// cluster.yml read and validated (`--strict` refuses unknown keys), its warnings shown, and
/// the SSH keys it names checked: everything before a host is dialed.
fn load_config(common: &Common) -> Result<LoadedConfig, CliError> {
    let cfg = read_config(common)?;
    inputs::check_ssh_keys(&cfg)?;
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

fn action_spec(action: &Action, cluster: &Cluster) -> Result<(ActionSpec, Option<S3Settings>, PkiFlags), CliError> {
    match action {
        Action::Up { pki } => Ok((ActionSpec::Up, None, PkiFlags { new_pki: pki.new_pki, use_local_state: false })),
        Action::Cleanup => Ok((ActionSpec::Cleanup, None, PkiFlags::default())),
        Action::Etcd { command } if matches!(**command, EtcdAction::SnapshotList { .. }) => {
            Err(CliError::input("snapshot-list only reads; it has no plan", "run `rkectl etcd snapshot-list`"))
        }
        Action::Etcd { command } => {
            let flags = match &**command {
                EtcdAction::SnapshotRestore { use_local_state, pki, .. } => {
                    PkiFlags { new_pki: pki.new_pki, use_local_state: *use_local_state }
                }
                _ => PkiFlags::default(),
            };
            let (spec, s3) = inputs::etcd_action(command, cluster)?;
            Ok((spec, s3, flags))
        }
    }
}

/// The S3 flags of an action, when it has them.
fn s3_flags(action: &Action) -> Option<&S3Flags> {
    let Action::Etcd { command } = action else { return None };
    Some(match &**command {
        EtcdAction::SnapshotSave { s3, .. }
        | EtcdAction::SnapshotRestore { s3, .. }
        | EtcdAction::SnapshotDelete { s3, .. }
        | EtcdAction::SnapshotPrune { s3, .. }
        | EtcdAction::SnapshotList { s3, .. } => s3,
    })
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

async fn prepare(
    cfg: LoadedConfig,
    common: &Common,
    action: &Action,
    offline: bool,
    lock_nodes: Option<String>,
) -> Result<Prepared, CliError> {
    let (spec, s3, pki_flags) = action_spec(action, &cfg.cluster)?;
    let state_passphrase = s3_flags(action).map(inputs::state_passphrase).transpose()?.flatten();
    let secrets: Vec<Secret> =
        s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]).chain(state_passphrase.clone()).collect();
    let input = crate::prepare::PrepareInput {
        connector: connector(common, &cfg.cluster),
        cfg,
        spec,
        s3,
        state_passphrase,
        pki_flags,
        offline,
        lock_nodes,
    };
    crate::prepare::prepare(input).await.map_err(|e| redact_refusal(e, &secrets))
}

/// A refusal whose text may quote an S3 key back (a server's error message): redacted.
fn redact_refusal(e: impl Diagnostic + Send + Sync + 'static, secrets: &[Secret]) -> CliError {
    if secrets.is_empty() {
        return CliError::refused(e);
    }
    let text = redact(&e.to_string(), &secrets.iter().collect::<Vec<_>>());
    let help = e.help().map(|h| h.to_string());
    CliError::refused(Refusal { message: text, help })
}

fn show(plan: &Plan, common: &Common) {
    let mut out = std::io::stdout().lock();
    if common.json {
        drop(out);
        json_line("plan", plan);
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let _ = write!(out, "{}", render(plan, RenderOptions { color }));
    }
}

fn confirm(plan: &Plan, common: &Common, what: &str) -> Result<(), CliError> {
    if !plan.needs_confirmation() || common.yes {
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
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| CliError::input(e.to_string(), "answer yes or no"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(refuse("not confirmed; nothing was changed", "type `yes` to apply, or use --yes"))
    }
}

fn start_line(spec: &ActionSpec) -> &'static str {
    match spec {
        ActionSpec::Up => "Building up etcd plane..",
        ActionSpec::EtcdSnapshotSave { .. } => "Starting saving snapshot on etcd hosts",
        ActionSpec::EtcdSnapshotRestore { .. } => "Starting restore on etcd hosts",
        ActionSpec::EtcdSnapshotDelete { .. } => "Starting deleting snapshot on etcd hosts",
        ActionSpec::EtcdSnapshotPrune { .. } => "Starting pruning snapshots on etcd hosts",
        ActionSpec::Cleanup => "Removing rkectl's helper binaries from the etcd hosts",
    }
}

fn done_line(spec: &ActionSpec) -> String {
    match spec {
        ActionSpec::Up => "Finished building up the etcd plane".into(),
        ActionSpec::EtcdSnapshotSave { name, .. } => format!("Finished saving snapshot [{name}] on all etcd hosts"),
        ActionSpec::EtcdSnapshotRestore { .. } => "Finished restoring on all etcd hosts".into(),
        ActionSpec::EtcdSnapshotDelete { name, .. } => format!("Finished deleting snapshot [{name}]"),
        ActionSpec::EtcdSnapshotPrune { .. } => "Finished pruning snapshots".into(),
        ActionSpec::Cleanup => "Finished removing rkectl's helper binaries".into(),
    }
}

async fn act(common: &Common, action: &Action) -> Result<Applied, CliError> {
    let cfg = load_config(common)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let (spec, _, _) = action_spec(action, &cfg.cluster)?;
    let locks = lock_cluster(&paths, spec.template_name())?;
    if paths.journal.exists() {
        return Err(unfinished(&paths));
    }
    let prepared = prepare(cfg, common, action, false, Some(locks.holder.clone())).await?;
    show(&prepared.plan, common);
    if !prepared.plan.has_changes() {
        return Ok(None);
    }
    let what = describe_destruction(&prepared.plan);
    confirm(&prepared.plan, common, &what)?;
    apply(prepared, common, None, locks).await
}

fn describe_destruction(plan: &Plan) -> String {
    let hosts: HashSet<_> =
        plan.steps.iter().filter(|s| s.kind().is_destructive()).filter_map(|s| s.host.as_ref()).collect();
    let mut parts = Vec::new();
    match &plan.action {
        ActionSpec::EtcdSnapshotRestore { name, .. } => parts
            .push(format!("Restore snapshot {name}: the current etcd data on {} host(s) will be deleted", hosts.len())),
        _ if plan.is_destructive() => {
            parts.push(format!("{}: data on {} host(s) will be deleted", plan.title, hosts.len().max(1)))
        }
        _ => {}
    }
    let replaced = plan.replacements();
    if !replaced.is_empty() {
        let on: HashSet<_> = replaced.iter().filter_map(|(s, _)| s.host.as_ref()).collect();
        parts.push(format!(
            "{} thing(s) rkectl did not make will be replaced on {} host(s) (see `replaces` above)",
            replaced.len(),
            on.len()
        ));
    }
    parts.join("; ")
}

fn unfinished(paths: &StatePaths) -> CliError {
    let detail = match journal::read(&paths.journal) {
        Ok(j) => format!(
            "an unfinished {} (started {}) is recorded in {}: {} of {} steps done",
            j.plan.title,
            j.started_at,
            paths.journal.display(),
            j.finished.len(),
            j.plan.steps.iter().filter(|s| s.kind() != StepKind::Barrier).count()
        ),
        Err(e) => format!("an unfinished apply is recorded in {} ({e})", paths.journal.display()),
    };
    refuse(detail, "run `rkectl apply` to finish it, or `rkectl apply --abandon` to set it aside")
}

async fn apply(p: Prepared, common: &Common, resume: Option<JournalState>, locks: Locks) -> Result<Applied, CliError> {
    let human: Arc<dyn Reporter> = if common.json {
        Arc::new(reporter::JsonLines)
    } else {
        Arc::new(reporter::Human::new(std::io::stderr().is_terminal(), logging::quiet()))
    };
    if let ActionSpec::EtcdSnapshotSave { name, generated_name: true, .. } = &p.plan.action {
        eprintln!("WARN[0000] Name of the snapshot is not specified using [{name}]");
    }
    let action = p.plan.action.clone();
    logging::info(0, start_line(&action));
    let interrupts = Interrupts::listen();
    let request = crate::apply::ApplyRequest {
        connector: connector(common, &p.cfg.cluster),
        prepared: p,
        resume,
        lock_holder: locks.holder.clone(),
        reporter: human.as_ref(),
        parallelism: common.parallelism.map(|n| n as usize),
        stop: Some(interrupts.stop.clone()),
    };
    let result = crate::apply::apply(request).await;
    let signal = interrupts.finish();
    let applied = result.map_err(|e| match (signal, &e) {
        (
            Some(exit),
            crate::apply::ApplyError::Interrupted { .. } | crate::apply::ApplyError::InterruptedBeforeChanges,
        ) => CliError::Interrupted { message: e.to_string(), exit },
        _ if e.changed_cluster() => CliError::ApplyFailed(e.to_string()),
        _ => CliError::refused(e),
    })?;
    let secs = applied.elapsed.as_secs();
    let moved = applied.traffic;
    if moved != Traffic::default() {
        logging::info(
            secs,
            format!(
                "Snapshot bytes moved: {} host to host, {} through this workstation",
                moved.host_to_host_bytes, moved.workstation_bytes
            ),
        );
    }
    logging::info(secs, done_line(&action));
    drop(locks);
    Ok(Some(moved))
}

/// SIGINT and SIGTERM during a run: the first stops scheduling (running steps finish, the
/// journal stays consistent), a second one exits at once, which the journal survives as
/// it survives a crash.
struct Interrupts {
    stop: tokio_util::sync::CancellationToken,
    /// The exit code of the first signal (130, 143), 0 while none came.
    exit: Arc<std::sync::atomic::AtomicU8>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupts {
    fn listen() -> Interrupts {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{SignalKind, signal};
        let stop = tokio_util::sync::CancellationToken::new();
        let exit = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            // Without handlers the signals keep their default action: the journal still
            // lets the next apply resume.
            return Interrupts { stop, exit, listener: None };
        };
        let listener = tokio::spawn({
            let (stop, exit) = (stop.clone(), exit.clone());
            async move {
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                exit.store(code, Ordering::SeqCst);
                eprintln!(
                    "WARN[0000] Interrupted: no new step starts, the running ones finish; interrupt again to stop at once"
                );
                stop.cancel();
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                std::process::exit(code);
            }
        });
        Interrupts { stop, exit, listener: Some(listener) }
    }

    /// Stops listening; the exit code of the signal that came, if one did.
    fn finish(mut self) -> Option<u8> {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        match self.exit.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}

async fn apply_file(common: &Common, file: &std::path::Path, s3_flags: &S3Flags) -> Result<Applied, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::input(
            format!("cannot read plan file {}: {e}", file.display()),
            "give the file written by `rkectl plan … --out FILE`",
        )
    })?;
    let pf: PlanFile = serde_json::from_str(&text).map_err(|e| {
        CliError::input(
            format!("{} is not a plan file: {e}", file.display()),
            "give the file written by `rkectl plan … --out FILE`",
        )
    })?;
    let plan = pf.plan;
    if plan.format > plan::FORMAT {
        return Err(CliError::input(
            format!("{} was written by a newer rkectl (format {})", file.display(), plan.format),
            "apply it with that version",
        ));
    }
    plan.graph().map_err(|e| CliError::input(format!("{} is not a valid plan: {e}", file.display()), "plan again"))?;
    let cfg = load_config(common)?;
    if plan.cluster_hash != cfg.hash {
        return Err(refuse(
            format!(
                "the plan in {} was made for another cluster.yml (or {} changed since)",
                file.display(),
                cfg.path.display()
            ),
            "plan again with the current cluster.yml",
        ));
    }
    if plan.observed.offline {
        return Err(refuse(
            "an offline plan cannot be applied: it did not look at the hosts",
            "plan again without --offline",
        ));
    }
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let locks = lock_cluster(&paths, plan.action.template_name())?;
    if paths.journal.exists() {
        return Err(unfinished(&paths));
    }
    let s3 = s3_for_plan(&plan.action, s3_flags, &cfg.cluster)?;
    let state_passphrase = inputs::state_passphrase(s3_flags)?;
    let secrets: Vec<Secret> =
        s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]).chain(state_passphrase.clone()).collect();
    // The same preparation as when the plan was made; a local state file, once there, is the
    // PKI (the plan may have written it from the snapshot's).
    let use_local_state = crate::rke::state::path_for(&cfg.path).exists();
    let connector = connector(common, &cfg.cluster);
    let input = crate::prepare::PrepareInput {
        cfg,
        spec: plan.action.clone(),
        s3,
        state_passphrase,
        pki_flags: PkiFlags { new_pki: false, use_local_state },
        offline: false,
        lock_nodes: Some(locks.holder.clone()),
        connector,
    };
    let fresh = crate::prepare::prepare(input).await.map_err(|e| redact_refusal(e, &secrets))?;
    let observed = &fresh.plan.observed;
    if fresh.plan.observed_fingerprint != plan.observed_fingerprint {
        let changed: Vec<String> = observed
            .hosts
            .iter()
            .filter(|(h, f)| plan.observed.hosts.get(*h) != Some(*f))
            .map(|(h, _)| h.to_string())
            .chain(plan.observed.hosts.keys().filter(|h| !observed.hosts.contains_key(*h)).map(|h| h.to_string()))
            .chain((observed.s3 != plan.observed.s3).then(|| "S3".to_string()))
            .collect();
        return Err(refuse(
            format!("the plan in {} is stale: what it was based on changed on {}", file.display(), changed.join(", ")),
            "plan again; rkectl applies a saved plan only to the state it was made for",
        ));
    }
    show(&plan, common);
    if !plan.has_changes() {
        return Ok(None);
    }
    confirm(&plan, common, &describe_destruction(&plan))?;
    apply(Prepared { plan, ..fresh }, common, None, locks).await
}

/// S3 settings for a plan made earlier: its target, keys from flags, env or cluster.yml.
fn s3_for_plan(spec: &ActionSpec, flags: &S3Flags, cluster: &Cluster) -> Result<Option<S3Settings>, CliError> {
    let Some(target) = spec.s3() else { return Ok(None) };
    let (access_key, secret_key, custom_ca) = inputs::credentials(flags, cluster.configured_s3())?;
    Ok(Some(S3Settings {
        endpoint: target.endpoint.clone(),
        bucket: target.bucket.clone(),
        region: target.region.clone(),
        folder: target.folder.clone(),
        custom_ca,
        access_key,
        secret_key,
        session_token: None,
    }))
}

async fn resume(common: &Common, s3_flags: &S3Flags, abandon: bool) -> Result<Applied, CliError> {
    let cfg = load_config(common)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    // Under the lock: an apply still running elsewhere owns its journal.
    let locks = lock_cluster(&paths, if abandon { "apply --abandon" } else { "apply (resume)" })?;
    if !paths.journal.exists() {
        return Err(CliError::input(
            format!("nothing to apply: no plan file given and no unfinished apply next to {}", cfg.path.display()),
            "run an action (`rkectl apply etcd snapshot-restore --name …`) or `rkectl apply PLAN_FILE`",
        ));
    }
    if abandon {
        let mut aside = paths.journal.as_os_str().to_owned();
        aside.push(format!(".abandoned-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
        std::fs::rename(&paths.journal, &aside)
            .map_err(|e| CliError::input(e.to_string(), "check the folder's permissions"))?;
        eprintln!("The unfinished apply was set aside as {}", std::path::Path::new(&aside).display());
        return Ok(None);
    }
    let j = journal::read(&paths.journal).map_err(CliError::refused)?;
    if j.plan.cluster_hash != cfg.hash {
        return Err(refuse(
            format!(
                "{} changed since the unfinished {} started; resuming it could act on the wrong hosts",
                cfg.path.display(),
                j.plan.title
            ),
            "put cluster.yml back as it was to finish it, or set it aside with `rkectl apply --abandon`",
        ));
    }
    let left: Vec<&plan::Step> =
        j.plan.steps.iter().filter(|s| s.kind() != StepKind::Barrier && !j.finished.contains(&s.id)).collect();
    eprintln!(
        "Resuming {} started {}: {} of {} steps done; {} left:",
        j.plan.title,
        j.started_at,
        j.finished.len(),
        j.finished.len() + left.len(),
        left.len()
    );
    for s in &left {
        let host = s.host.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "(cluster)".into());
        let again = if j.interrupted.contains(&s.id) { " (interrupted, runs again)" } else { "" };
        eprintln!("  {:<20} {host:<15} {}{again}", s.kind().name(), s.action.describe());
    }
    if let Some((step, err)) = &j.last_failure {
        eprintln!("The last run stopped at {step}: {err}");
    }
    let (_, state, rke_state) = crate::prepare::local_state(&cfg).map_err(CliError::refused)?;
    let s3 = s3_for_plan(&j.plan.action, s3_flags, &cfg.cluster)?;
    let state_passphrase = inputs::state_passphrase(s3_flags)?;
    if matches!(j.plan.action, ActionSpec::EtcdSnapshotSave { seal_state: true, .. }) && state_passphrase.is_none() {
        return Err(CliError::refused(crate::prepare::PrepareError::SealNeedsPassphrase));
    }
    let pki = match (&rke_state, matches!(j.plan.action, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. })) {
        (Some(st), true) => {
            let pki = st.pki().map_err(CliError::refused)?.ok_or_else(|| {
                refuse(format!("{} has no certificates", st.path().display()), "put RKE's cluster.rkestate back")
            })?;
            Some(ClusterPki {
                pki,
                state: st.clone(),
                source: PkiSource::LocalState(st.path().to_path_buf()),
                write: false,
                issued: Vec::new(),
                reissued: Vec::new(),
            })
        }
        (None, true) => {
            return Err(refuse(
                format!(
                    "the unfinished {} needs the cluster's PKI, and {} is gone",
                    j.plan.title,
                    crate::rke::state::path_for(&cfg.path).display()
                ),
                "put RKE's cluster.rkestate back beside cluster.yml, then run `rkectl apply` again",
            ));
        }
        _ => None,
    };
    let plan = j.plan.clone();
    confirm(&plan, common, &format!("Finish: {}", describe_destruction(&plan)))?;
    let prepared = Prepared { plan, cfg, paths, state, pki, rke_state, s3, state_passphrase, pool: None };
    apply(prepared, common, Some(j), locks).await
}
