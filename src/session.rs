//! One command's way from cluster.yml to a finished apply, the same for every action.
//!
//! In order: cluster.yml read (its warnings shown) and its SSH keys checked; the action
//! decided ([`crate::invocation`]); this cluster.yml's lock taken before anything else is
//! read, so that the journal checked next and the hosts observed after cannot change
//! under the apply; no unfinished apply left behind (else it is finished first); the
//! plan prepared, shown, confirmed when it is destructive, then applied. A saved plan is
//! compiled again and must match its file; `resume` finishes the journal's plan.
//!
//! What belongs to whoever drives it (a terminal, a test, another tool) comes in through
//! [`Console`]: showing, asking, and the lines a person reads. Every refusal that could
//! quote an S3 key or the state passphrase back is redacted here, once.

use crate::apply::{Applied, ApplyError, ApplyRequest};
use crate::config::{self, BadInput, Cluster, ConfigError, LoadedConfig, S3Flags, S3Use};
use crate::exec::events::{Level, Reporter};
use crate::host::Connector;
use crate::inventory::{InventoryError, Row};
use crate::invocation::{Request, Resolved};
use crate::model::action::ActionSpec;
use crate::plan::{self, Plan};
use crate::prepare::{PrepareInput, Prepared};
use crate::secret::{Redacted, Secret};
use crate::state::StatePaths;
use crate::state::journal::JournalState;
use crate::state::lock::{ApplyLock, Holder};
use miette::Diagnostic;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a session needs from whoever drives it.
pub trait Console: Send + Sync {
    /// Shows a plan before anything is done with it.
    fn show(&self, plan: &Plan);
    /// Says that a saved plan, about to be applied, is the one reviewed in `file` (it was
    /// compiled again and matched it step for step).
    fn reviewed(&self, plan: &Plan, file: &Path);
    /// Asks whether to go on with a plan that needs confirmation; `what` says what it
    /// destroys. An error refuses, and nothing is changed.
    fn confirm(&self, what: &str) -> Result<(), Redacted>;
    /// A line of the run's own in the reference's shape (`INFO[0004] …`).
    fn log(&self, level: Level, secs: u64, line: &str);
    /// Plain text for the person (what a resume has left, where a plan was saved).
    fn say(&self, text: &str);
    /// A doubtful setting of cluster.yml, pointing at its line.
    fn config_warnings(&self, cfg: &LoadedConfig);
    /// Whoever shows the run's events.
    fn reporter(&self) -> &dyn Reporter;
    /// Called right before steps start: the token that stops scheduling (a signal), if any.
    fn applying(&self) -> Option<tokio_util::sync::CancellationToken>;
    /// Whether a command run again here must carry `--yes` to go on: there is no one to
    /// ask (no terminal), or `--yes` was given.
    fn needs_yes(&self) -> bool;
}

/// Makes the connector that dials a cluster's hosts (SSH with the flags given, or a fake).
pub type Dialer<'a> = Box<dyn Fn(&Cluster) -> Arc<dyn Connector> + Send + Sync + 'a>;

/// What the invocation gave besides the action: where cluster.yml is, how hosts are
/// dialed, the S3 flags and the state passphrase file.
pub struct Session<'a> {
    pub console: &'a dyn Console,
    /// cluster.yml.
    pub config: PathBuf,
    /// Refuse keys that neither RKE nor rkectl reads.
    pub strict: bool,
    /// Dials the hosts of a cluster.
    pub connect: Dialer<'a>,
    pub s3: S3Flags,
    pub passphrase_file: Option<PathBuf>,
    /// Run at most this many steps at once.
    pub parallelism: Option<usize>,
}

/// Why a session ended without doing what was asked.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SessionError {
    /// cluster.yml is not valid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    /// A flag or argument is not valid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Input(#[from] BadInput),
    /// Refused before anything changed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refused(Box<dyn Diagnostic + Send + Sync>),
    /// The apply started and did not finish ([`ApplyError::changed_cluster`] says whether
    /// the cluster may have changed).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Apply(ApplyError),
}

impl SessionError {
    fn refused(e: impl Diagnostic + Send + Sync + 'static) -> Self {
        SessionError::Refused(Box::new(e))
    }
}

/// The locks an apply holds: this cluster.yml's lock file, then each host as it is dialed.
struct Locks {
    /// Held until the apply ends.
    _local: ApplyLock,
    /// The record each node's lock shows to another apply.
    holder: String,
}

impl Session<'_> {
    /// cluster.yml read and validated, its warnings shown, and (unless `offline`, which
    /// dials nothing) the SSH keys it names checked: everything before a host is dialed.
    pub fn load(&self, offline: bool) -> Result<LoadedConfig, SessionError> {
        let cfg = config::load_with(&self.config, config::Options { strict: self.strict })?;
        self.console.config_warnings(&cfg);
        if !offline {
            config::check_ssh_keys(&cfg)?;
        }
        Ok(cfg)
    }

    /// `plan`: the plan of `request`, shown and, with `out`, saved for `apply FILE`.
    pub async fn plan(&self, request: &Request, offline: bool, out: Option<&Path>) -> Result<(), SessionError> {
        let cfg = self.load(offline)?;
        let resolved = self.resolve(request, &cfg.cluster)?;
        // A plan made beside an unfinished apply would be of a cluster half-way through it
        // (a restore's removed members read as a new cluster): what to review is its end.
        refuse_unfinished(&StatePaths::beside(&cfg.dir(), &cfg.stem()))?;
        let prepared = self.prepare(cfg, resolved, offline, None).await?;
        self.console.show(&prepared.plan);
        if let Some(path) = out {
            plan::file::write(path, &self.config, &prepared.plan, prepared.pki.as_ref())
                .map_err(SessionError::refused)?;
            self.console.say(&format!(
                "Plan saved to {}; apply it with `rkectl apply {}`\n",
                path.display(),
                path.display()
            ));
        }
        Ok(())
    }

    /// An action planned, shown, confirmed and applied; `None` when nothing was to change.
    pub async fn act(&self, request: &Request) -> Result<Option<Applied>, SessionError> {
        let cfg = self.load(false)?;
        let resolved = self.resolve(request, &cfg.cluster)?;
        let (paths, locks) = self.lock(&cfg, resolved.spec.template_name())?;
        refuse_unfinished(&paths)?;
        let prepared = self.prepare(cfg, resolved, false, Some(locks.holder.clone())).await?;
        self.show_and_confirm(prepared, locks, None).await
    }

    /// `apply FILE`: a saved plan's inputs compiled again; what runs is that plan, once
    /// the file is proven to hold exactly its steps (a file's steps never run as written).
    pub async fn apply_saved(&self, file: &Path) -> Result<Option<Applied>, SessionError> {
        let saved = plan::file::read(file).map_err(SessionError::refused)?;
        let cfg = self.load(false)?;
        plan::file::check_fits(&saved, &cfg, file).map_err(SessionError::refused)?;
        let (paths, locks) = self.lock(&cfg, saved.action.template_name())?;
        refuse_unfinished(&paths)?;
        let r = self.for_plan(&saved.action, &cfg.cluster)?;
        let (secrets, keys_from) = (r.secrets(), r.keys_from);
        let connector = (self.connect)(&cfg.cluster);
        // The clock the plan was made with, so that what it compiles compares with the file.
        let input = PrepareInput::again(cfg, &saved, r.s3, r.state_passphrase, connector, locks.holder.clone());
        let fresh = prepare_redacted(input, &secrets, keys_from).await?;
        plan::file::check_unchanged(&saved, &fresh.plan, file).map_err(SessionError::refused)?;
        // What runs is what was reviewed: said, not shown a second time.
        match fresh.plan.has_changes() {
            true => self.console.reviewed(&fresh.plan, file),
            false => self.console.show(&fresh.plan),
        }
        self.confirm_and_apply(fresh, locks, None).await
    }

    /// `apply` alone: finishes the unfinished apply beside cluster.yml, or (`abandon`)
    /// sets its journal aside.
    pub async fn resume(&self, abandon: bool) -> Result<Option<Applied>, SessionError> {
        let cfg = self.load(false)?;
        // Under the lock: an apply still running elsewhere owns its journal.
        let (paths, locks) = self.lock(&cfg, if abandon { "apply --abandon" } else { "apply (resume)" })?;
        if !paths.journal.exists() {
            return Err(BadInput {
                message: format!(
                    "nothing to apply: no plan file given and no unfinished apply next to {}",
                    cfg.path.display()
                ),
                help: "run an action (`rkectl apply etcd snapshot-restore --name …`) or `rkectl apply PLAN_FILE`"
                    .into(),
            }
            .into());
        }
        if abandon {
            let aside = crate::resume::set_aside(&paths)
                .map_err(|e| BadInput { message: e.to_string(), help: "check the folder's permissions".into() })?;
            self.console.say(&format!("The unfinished apply was set aside as {}\n", aside.display()));
            return Ok(None);
        }
        let j = crate::resume::read_unfinished(&cfg).map_err(SessionError::refused)?;
        self.console.say(&crate::resume::steps_left(&j));
        let r = self.for_plan(&j.plan.action, &cfg.cluster)?;
        let prepared =
            crate::resume::prepare_resume(cfg, &j, r.s3, r.state_passphrase).map_err(SessionError::refused)?;
        let left = prepared.plan.left(&j.finished);
        if left.needs_confirmation() {
            self.console
                .confirm(&format!("To finish the interrupted apply: {}", left.destruction_summary()))
                .map_err(SessionError::refused)?;
        }
        self.apply(prepared, Some(j), locks).await.map(Some)
    }

    /// `etcd snapshot-list`: every snapshot on the hosts and (with `--s3` or cluster.yml's
    /// `s3backupconfig`, as RKE's own commands do) in S3; `verify` checks each copy.
    pub async fn list(&self, verify: bool) -> Result<(LoadedConfig, Vec<Row>), SessionError> {
        let cfg = self.load(false)?;
        let env = crate::s3::environment::Workstation;
        let s3 = config::S3Settings::resolve(S3Use::FlagsOrConfigured, &self.s3, cfg.cluster.configured_s3(), &env)?;
        let secrets: Vec<Secret> = s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]).collect();
        let connector = (self.connect)(&cfg.cluster);
        let rows = crate::inventory::list(&cfg.cluster, connector, s3.as_ref(), verify).await.map_err(|e| match e {
            InventoryError::AgentBinary(e) => SessionError::refused(e),
            InventoryError::Refresh(e) => {
                let hint = keys_hint(e.s3(), self.s3.key_sources_help(cfg.cluster.configured_s3()));
                redacted(e, &secrets, hint)
            }
        })?;
        Ok((cfg, rows))
    }

    fn resolve(&self, request: &Request, cluster: &Cluster) -> Result<Resolved, SessionError> {
        Ok(crate::invocation::resolve(request, &self.s3, self.passphrase_file.as_deref(), cluster)?)
    }

    fn for_plan(&self, spec: &ActionSpec, cluster: &Cluster) -> Result<Resolved, SessionError> {
        Ok(crate::invocation::for_plan(spec, &self.s3, self.passphrase_file.as_deref(), cluster)?)
    }

    /// Takes the lock of this cluster.yml before anything is read or dialed.
    fn lock(&self, cfg: &LoadedConfig, what: &str) -> Result<(StatePaths, Locks), SessionError> {
        let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
        // What is recorded is the action, never the command line: it may hold an S3 key.
        let command = format!("rkectl {what}");
        let local = ApplyLock::acquire(&paths.lock, &command).map_err(SessionError::refused)?;
        if let Some(prev) = &local.previous {
            let line = format!(
                "A previous apply (pid {} on {}, since {}) ended without releasing the lock; taking it over",
                prev.pid, prev.host, prev.since
            );
            self.console.log(Level::Warn, 0, &line);
        }
        Ok((paths, Locks { _local: local, holder: Holder::me(&command).to_line() }))
    }

    /// Prepares a resolved action (see [`crate::prepare`]).
    async fn prepare(
        &self,
        cfg: LoadedConfig,
        r: Resolved,
        offline: bool,
        lock_nodes: Option<String>,
    ) -> Result<Prepared, SessionError> {
        let (secrets, keys_from) = (r.secrets(), r.keys_from.clone());
        let input = PrepareInput {
            connector: (self.connect)(&cfg.cluster),
            cfg,
            spec: r.spec,
            s3: r.s3,
            state_passphrase: r.state_passphrase,
            pki_flags: r.pki_flags,
            offline,
            lock_nodes,
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        prepare_redacted(input, &secrets, keys_from).await
    }

    async fn show_and_confirm(
        &self,
        p: Prepared,
        locks: Locks,
        resume: Option<JournalState>,
    ) -> Result<Option<Applied>, SessionError> {
        self.console.show(&p.plan);
        self.confirm_and_apply(p, locks, resume).await
    }

    async fn confirm_and_apply(
        &self,
        p: Prepared,
        locks: Locks,
        resume: Option<JournalState>,
    ) -> Result<Option<Applied>, SessionError> {
        if !p.plan.has_changes() {
            return Ok(None);
        }
        if p.plan.needs_confirmation() {
            self.console.confirm(&p.plan.destruction_summary()).map_err(SessionError::refused)?;
        }
        self.apply(p, resume, locks).await.map(Some)
    }

    async fn apply(&self, p: Prepared, resume: Option<JournalState>, locks: Locks) -> Result<Applied, SessionError> {
        let log = |secs, line: &str| self.console.log(Level::Info, secs, line);
        if let ActionSpec::EtcdSnapshotSave { name, generated_name: true, .. } = &p.plan.action {
            self.console.log(Level::Warn, 0, &format!("Name of the snapshot is not specified using [{name}]"));
        }
        let action = p.plan.action.clone();
        log(0, action.start_line());
        let request = ApplyRequest {
            connector: (self.connect)(&p.cfg.cluster),
            prepared: p,
            resume,
            lock_holder: locks.holder.clone(),
            reporter: self.console.reporter(),
            parallelism: self.parallelism,
            stop: self.console.applying(),
            finish_with: self.finish_command(),
        };
        let result = crate::apply::apply(request).await;
        let applied = result.map_err(SessionError::Apply)?;
        let (secs, moved) = (applied.elapsed.as_secs(), applied.traffic);
        if moved != Default::default() {
            let line = format!(
                "Snapshot bytes moved: {} host to host, {} through this workstation",
                moved.host_to_host_bytes, moved.workstation_bytes
            );
            log(secs, &line);
        }
        log(secs, &action.done_line());
        drop(locks);
        Ok(applied)
    }
}

impl Session<'_> {
    /// The command that finishes an apply stopped part-way, exactly as it must be typed
    /// here (with `--config` when cluster.yml is elsewhere, `--yes` where nobody can be
    /// asked), and the flags whose values it needs again (named, never quoted).
    fn finish_command(&self) -> String {
        let mut command = String::from("rkectl apply");
        if self.config != Path::new("cluster.yml") {
            command.push_str(&format!(" --config {}", self.config.display()));
        }
        if self.console.needs_yes() {
            command.push_str(" --yes");
        }
        let again: Vec<&str> = [
            (self.s3.access_key.is_some(), "--access-key"),
            (self.s3.secret_key.is_some(), "--secret-key"),
            (self.s3.secret_key_file.is_some(), "--secret-key-file"),
            (self.s3.endpoint_ca.is_some(), "--s3-endpoint-ca"),
            (self.passphrase_file.is_some(), "--state-passphrase-file"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        match again.as_slice() {
            [] => format!("`{command}`"),
            flags => format!("`{command}` (with {} as given now)", flags.join(", ")),
        }
    }
}

fn refuse_unfinished(paths: &StatePaths) -> Result<(), SessionError> {
    match paths.journal.exists() {
        true => Err(SessionError::refused(crate::resume::unfinished(paths))),
        false => Ok(()),
    }
}

/// Prepares `input`; a refusal is redacted of `secrets`, and one of the S3 keys says where
/// they came from (`keys_from`).
async fn prepare_redacted(
    input: PrepareInput,
    secrets: &[Secret],
    keys_from: String,
) -> Result<Prepared, SessionError> {
    crate::prepare::prepare(input).await.map_err(|e| {
        let hint = keys_hint(e.s3(), keys_from);
        redacted(e, secrets, hint)
    })
}

/// A refusal whose text may quote an S3 key back, redacted when there is anything to take
/// out or to add (else it keeps its own code and help).
fn redacted(e: impl Diagnostic + Send + Sync + 'static, secrets: &[Secret], hint: Option<String>) -> SessionError {
    if secrets.is_empty() && hint.is_none() {
        return SessionError::refused(e);
    }
    SessionError::refused(Redacted::of(&e, secrets, hint))
}

/// For a refusal of the S3 keys: where they came from, so that the help says what to fix.
fn keys_hint(refused: Option<&crate::s3::S3Error>, help: String) -> Option<String> {
    matches!(refused, Some(crate::s3::S3Error::Credentials { .. })).then_some(help)
}
