//! Step kinds: one module each, holding everything about that kind of step.
//!
//! A kind's module defines its parameters (the struct a plan and the journal hold), and
//! implements [`Kind`]: whether and how it is planned on a host or for the cluster
//! (pure: it reads the compiler's [`Builder`], never a host), the line that describes it,
//! its effect on the plan's "after" view, and how it runs (through the [`Host`] trait, with
//! the [`Executor`]'s helpers). Adding a kind is one new module, one line in the list
//! below, and its line in a template under `plans/`.
//!
//! Every step is idempotent: running it again after it (or part of it) already happened
//! leaves the same state, which is what lets an interrupted apply resume. Log lines follow
//! the reference document's wording.
//!
//! [`Host`]: crate::host::Host

pub mod context;
mod direct_copy;
pub mod effect;
mod executor;
pub mod planning;
mod records;
mod step;
pub mod sweep;

pub use executor::Executor;
pub use records::{archive_state, read_record, s3_error};
pub use step::Step;

use crate::config::HostAddr;
use crate::model::step::Replacement;
use context::{StepCtx, StepError};
use effect::Effect;
use planning::{Builder, CompileError};

/// One kind of step. The constants say how the engine treats it; the functions are the
/// kind's planning, description, effect and execution.
pub(crate) trait Kind: Sized {
    /// It changes something that cannot be taken back (data is deleted): plans that hold
    /// it ask first.
    const DESTRUCTIVE: bool = false;
    /// It changes the cluster (anything but looking, dialing, pulling images and placing
    /// verified snapshot copies). A run that fails before any such step began changed
    /// nothing and is reported as refused.
    const CHANGES_CLUSTER: bool = true;
    /// A finished record of it may be skipped on resume (not so for what builds
    /// process-local state, like the SSH session).
    const SKIPPABLE_ON_RESUME: bool = true;
    /// It only looks or waits (dialing, checks): a plan of nothing else has no changes.
    const ONLY_LOOKS: bool = false;
    /// It is a point of order, not work: the scheduler passes it once what it waits for
    /// is done, and it is neither counted nor numbered as a step (the plan draws it as a
    /// rule between steps, with its description).
    const ORDER_ONLY: bool = false;

    /// The steps of this kind a template's line adds on `host`.
    fn plan_host(_b: &mut Builder<'_>, _host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(Vec::new())
    }

    /// The steps of this kind a template's cluster-wide line adds.
    fn plan_cluster(_b: &mut Builder<'_>) -> Result<Vec<Self>, CompileError> {
        Ok(Vec::new())
    }

    /// One line saying what the step does, for plans and logs.
    fn describe(&self) -> String;

    /// What the step replaces that rkectl did not make, if anything.
    fn replaces(&self) -> Option<&Replacement> {
        None
    }

    /// The step's effect on the views of the plan's "after".
    fn effect(&self, _fx: &mut Effect<'_>) {}

    /// Another host the step talks to besides its own (its link is dialled again when the
    /// step is retried).
    fn other_host(&self) -> Option<&HostAddr> {
        None
    }

    /// Runs the step.
    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError>;
}

/// Declares the closed set of step kinds: for each, its variant of [`StepAction`] and
/// [`StepKind`], its name in templates, plans and the journal, and the module that holds it.
macro_rules! step_kinds {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal in $module:ident; )*) => {
        $( mod $module; pub use $module::$kind; )*

        /// What a step does, with its parameters. Serialised with a kebab-case `kind` tag.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind")]
        pub enum StepAction {
            $( $(#[$doc])* #[serde(rename = $name)] $kind($kind), )*
        }

        /// The closed set of step kinds, as templates in `plans/` name them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum StepKind {
            $( $(#[$doc])* #[serde(rename = $name)] $kind, )*
        }

        impl StepKind {
            /// Every kind, in the list's order.
            pub const ALL: &'static [StepKind] = &[$( StepKind::$kind, )*];

            /// The kebab-case name (`clean-host`).
            pub fn name(self) -> &'static str {
                match self { $( StepKind::$kind => $name, )* }
            }

            /// Whether the step changes something that cannot be taken back (data is deleted).
            pub fn is_destructive(self) -> bool {
                match self { $( StepKind::$kind => <$kind as Kind>::DESTRUCTIVE, )* }
            }

            /// Whether the step changes the cluster; see [`Kind::CHANGES_CLUSTER`].
            pub fn changes_cluster(self) -> bool {
                match self { $( StepKind::$kind => <$kind as Kind>::CHANGES_CLUSTER, )* }
            }

            /// Whether it only looks or waits; see [`Kind::ONLY_LOOKS`].
            pub fn only_looks(self) -> bool {
                match self { $( StepKind::$kind => <$kind as Kind>::ONLY_LOOKS, )* }
            }

            /// Whether it is a point of order, not work; see [`Kind::ORDER_ONLY`].
            pub fn is_order_only(self) -> bool {
                match self { $( StepKind::$kind => <$kind as Kind>::ORDER_ONLY, )* }
            }

            /// Whether re-running after a finished record may be skipped on resume.
            pub fn skippable_on_resume(self) -> bool {
                match self { $( StepKind::$kind => <$kind as Kind>::SKIPPABLE_ON_RESUME, )* }
            }

            /// The steps of this kind a template's line adds on `host`.
            pub(crate) fn plan_host(self, b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<StepAction>, CompileError> {
                Ok(match self {
                    $( StepKind::$kind => $kind::plan_host(b, host)?.into_iter().map(StepAction::$kind).collect(), )*
                })
            }

            /// The steps of this kind a template's cluster-wide line adds.
            pub(crate) fn plan_cluster(self, b: &mut Builder<'_>) -> Result<Vec<StepAction>, CompileError> {
                Ok(match self {
                    $( StepKind::$kind => $kind::plan_cluster(b)?.into_iter().map(StepAction::$kind).collect(), )*
                })
            }
        }

        impl StepAction {
            /// The step's kind.
            pub fn kind(&self) -> StepKind {
                match self { $( StepAction::$kind(_) => StepKind::$kind, )* }
            }

            /// What the step replaces that rkectl did not make, if anything.
            pub fn replaces(&self) -> Option<&Replacement> {
                match self { $( StepAction::$kind(a) => a.replaces(), )* }
            }

            /// One line saying what the step does, with what it replaces, for plans and logs.
            pub fn describe(&self) -> String {
                let what = match self { $( StepAction::$kind(a) => a.describe(), )* };
                match self.replaces() {
                    Some(r) => format!("{what} ({r})"),
                    None => what,
                }
            }

            /// Applies the step's effect to the plan's views.
            pub fn effect(&self, fx: &mut Effect<'_>) {
                match self { $( StepAction::$kind(a) => a.effect(fx), )* }
            }

            /// Another host the step talks to besides its own.
            pub fn other_host(&self) -> Option<&HostAddr> {
                match self { $( StepAction::$kind(a) => a.other_host(), )* }
            }

            /// Runs the step.
            pub(crate) async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
                match self { $( StepAction::$kind(a) => a.run(ex, step, ctx).await, )* }
            }
        }
    };
}

step_kinds! {
    /// Waits for every step before it; does nothing itself.
    Barrier = "barrier" in barrier;
    /// Opens the SSH session and the Docker tunnel; checks Docker.
    Dial = "dial" in dial;
    /// Pulls images the host lacks.
    PullImages = "pull-images" in pull_images;
    /// Checks that the host's own copy of a snapshot is still the one the plan pinned.
    VerifySnapshot = "verify-snapshot" in verify_snapshot;
    /// Gives the host a verified copy of a snapshot.
    FetchSnapshot = "fetch-snapshot" in fetch_snapshot;
    /// Unpacks the database from the snapshot's archive for the restore, verified.
    UnpackSnapshot = "unpack-snapshot" in unpack_snapshot;
    /// Removes the etcd container and the etcd data (`kube-cleaner`).
    CleanHost = "clean-host" in clean_host;
    /// Restores the snapshot into a fresh data folder (`etcd-restore`).
    Restore = "restore" in restore;
    /// Removes what the restore staged (copies and unpacked databases).
    DiscardStaged = "discard-staged" in discard_staged;
    /// Restores the snapshot inside a helper container and reports what it holds.
    DrillSnapshot = "drill-snapshot" in drill_snapshot;
    /// Places the member's certificates and the CA on the host.
    DeployCerts = "deploy-certs" in deploy_certs;
    /// Creates and starts (or restarts) the `etcd` container.
    StartEtcd = "start-etcd" in start_etcd;
    /// Adds a member to the running cluster before it starts (`etcdctl member add`).
    MemberAdd = "member-add" in member_add;
    /// Removes a member from the running cluster (`etcdctl member remove`).
    MemberRemove = "member-remove" in member_remove;
    /// Stops and removes the `etcd` container of a member that leaves.
    RemoveEtcd = "remove-etcd" in remove_etcd;
    /// Runs `rke-log-linker` for a container.
    LogLinker = "log-linker" in log_linker;
    /// Removes `rke-log-linker`.
    RemoveLogLinker = "remove-log-linker" in remove_log_linker;
    /// Checks that every member is healthy and, after a restore, holds the same data.
    HealthCheck = "health-check" in health_check;
    /// Takes a snapshot on this host (`etcd-snapshot-once`).
    SaveSnapshot = "save-snapshot" in save_snapshot;
    /// Starts or replaces `etcd-rolling-snapshots`.
    StartRollingSnapshots = "start-rolling-snapshots" in start_rolling_snapshots;
    /// Removes `etcd-rolling-snapshots`.
    RemoveRollingSnapshots = "remove-rolling-snapshots" in remove_rolling_snapshots;
    /// Deletes a snapshot from the host or from S3.
    DeleteSnapshot = "delete-snapshot" in delete_snapshot;
    /// Removes rkectl's helper binaries (their folders under `/opt/rke/rkectl`).
    RemoveAgent = "remove-agent" in remove_agent;
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_alike_in_templates_plans_and_logs() {
        for kind in StepKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.name(), "{kind:?}");
            let back: StepKind = serde_json::from_value(json).unwrap();
            assert_eq!(back, *kind);
        }
    }
}
