//! Commands and flags, compatible with RKE's where RKE has the command.

use crate::agent::AgentCommand;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// rkectl: back up and recover the etcd plane of RKE-style clusters.
#[derive(Debug, Parser)]
#[command(name = "rkectl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Global: before the command (`rkectl --config F plan up`) or after it, as RKE's.
    #[command(flatten)]
    pub common: Common,
    /// Show more: a plan's unchanged lines too, and rkectl's own diagnostics (-v info, -vv
    /// debug, -vvv trace; RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Show only warnings and errors (no progress, no INFO lines); the plan and results stay.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Flags every command that touches a cluster takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Specify an alternate cluster YAML file (default: $RKE_CONFIG, else cluster.yml).
    // The environment is read by hand (`Common::config`), here and below: clap counts a value
    // from the environment as typed, and its error usage then shows the flag as required.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Use SSH Agent Auth defined by SSH_AUTH_SOCK.
    #[arg(long, global = true)]
    pub ssh_agent_auth: bool,
    /// Disable Docker version check.
    #[arg(long, global = true)]
    pub ignore_docker_version: bool,
    /// Trust host keys seen for the first time (and record them); changed keys are always refused.
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// known_hosts file to verify host keys against (default: $RKECTL_KNOWN_HOSTS, else
    /// ~/.ssh/known_hosts).
    #[arg(long, global = true)]
    known_hosts: Option<PathBuf>,
    /// Run at most N steps at once (default: every ready step).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,
    /// Do not ask for confirmation (for scripts).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Machine-readable output: the plan as JSON, apply events as JSON lines.
    #[arg(long, global = true)]
    pub json: bool,
    /// Refuse a cluster.yml with keys that RKE and rkectl ignore (by default, warnings).
    #[arg(long, global = true)]
    pub strict: bool,
}

/// S3 flags of snapshot commands.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Flags {
    /// Enabled backup to s3.
    #[arg(long)]
    pub s3: bool,
    /// Specify s3 endpoint url (default: "s3.amazonaws.com").
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Specify s3 accessKey (without keys here or in cluster.yml: the AWS credentials chain,
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, profile, SSO, instance role).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Specify s3 secretKey. Every local user can read it in the process list: prefer
    /// --secret-key-file, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// File holding the s3 secretKey (its final newline is not part of it).
    #[arg(long, conflicts_with = "secret_key")]
    pub secret_key_file: Option<PathBuf>,
    /// Specify s3 bucket name.
    #[arg(long)]
    pub bucket_name: Option<String>,
    /// Specify the s3 bucket location (optional).
    #[arg(long)]
    pub region: Option<String>,
    /// Folder in the bucket (optional).
    #[arg(long)]
    pub folder: Option<String>,
    /// PEM file of the CA that signs a private S3 endpoint's certificate.
    #[arg(long)]
    pub s3_endpoint_ca: Option<PathBuf>,
    /// File holding the passphrase that seals the cluster state beside S3 snapshots, and opens
    /// it on restore (default: $RKECTL_STATE_PASSPHRASE_FILE; or the passphrase itself in
    /// RKECTL_STATE_PASSPHRASE).
    #[arg(long)]
    state_passphrase_file: Option<PathBuf>,
}

/// The flag's value, else the environment's.
fn or_env(flag: &Option<PathBuf>, var: &str) -> Option<PathBuf> {
    flag.clone().or_else(|| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from))
}

impl Common {
    /// `--config`, else `$RKE_CONFIG`, else `cluster.yml`.
    pub fn config(&self) -> PathBuf {
        or_env(&self.config, "RKE_CONFIG").unwrap_or_else(|| PathBuf::from("cluster.yml"))
    }

    /// `--known-hosts`, else `$RKECTL_KNOWN_HOSTS`.
    pub fn known_hosts(&self) -> Option<PathBuf> {
        or_env(&self.known_hosts, "RKECTL_KNOWN_HOSTS")
    }
}

impl S3Flags {
    /// `--state-passphrase-file`, else `$RKECTL_STATE_PASSPHRASE_FILE`.
    pub fn state_passphrase_file(&self) -> Option<PathBuf> {
        or_env(&self.state_passphrase_file, "RKECTL_STATE_PASSPHRASE_FILE")
    }

    /// The library's view of these flags.
    pub fn library(&self) -> crate::config::S3Flags {
        crate::config::S3Flags {
            s3: self.s3,
            endpoint: self.s3_endpoint.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            secret_key_file: self.secret_key_file.clone(),
            bucket: self.bucket_name.clone(),
            region: self.region.clone(),
            folder: self.folder.clone(),
            endpoint_ca: self.s3_endpoint_ca.clone(),
        }
    }
}

/// How the cluster's PKI may be chosen.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PkiArgs {
    /// Create a new CA and certificates when there is none, or replace what the hosts trust
    /// (the plan shows each replaced file and asks first).
    #[arg(long)]
    pub new_pki: bool,
}

/// An action: what `plan` reviews and `apply` executes.
#[derive(Debug, Clone, Subcommand)]
pub enum Action {
    /// Bring the etcd plane to what cluster.yml says.
    Up {
        #[command(flatten)]
        pki: PkiArgs,
    },
    /// etcd snapshot commands.
    // snapshot-list only reads and has no plan: it is not offered here (nor in the pages
    // and completions of `plan` and `apply`); typed anyway, it is refused with the command to run.
    #[command(mut_subcommand("snapshot-list", |c| c.hide(true)))]
    Etcd {
        #[command(subcommand)]
        command: Box<EtcdAction>,
    },
    /// Remove rkectl's helper binaries from the nodes.
    Cleanup,
}

/// `etcd …` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum EtcdAction {
    /// Take snapshot on all etcd hosts.
    SnapshotSave {
        /// Specify snapshot name.
        #[arg(long)]
        name: Option<String>,
        /// Put RKE's state file (cluster.rkestate: every private key of the cluster, in clear)
        /// inside the archive, as `rke etcd snapshot-save` does.
        #[arg(long)]
        include_state: bool,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// Restore existing snapshot.
    SnapshotRestore {
        /// Specify snapshot name.
        #[arg(long)]
        name: String,
        /// Use the cluster.rkestate beside cluster.yml, never the state stored with the snapshot.
        #[arg(long)]
        use_local_state: bool,
        #[command(flatten)]
        pki: PkiArgs,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// Prove that a snapshot restores, and report what is in it, without touching the
    /// cluster: it is restored inside a helper container on one etcd host and read there.
    SnapshotDrill {
        /// Specify snapshot name.
        #[arg(long)]
        name: String,
        /// The etcd host to drill on (its address in cluster.yml); default: one that holds it.
        #[arg(long)]
        host: Option<String>,
        /// Count the same keys in the running cluster too (read-only), side by side.
        #[arg(long)]
        compare_live: bool,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// Delete a snapshot from every etcd host (and S3 with --s3).
    SnapshotDelete {
        /// Specify snapshot name: deleted from every etcd host, and from S3 with --s3.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// Delete snapshots past their retention (cluster.yml's, or --retention/--keep).
    SnapshotPrune {
        /// Delete automatic snapshots older than this (Go duration, e.g. 24h).
        #[arg(long, conflicts_with = "keep")]
        retention: Option<String>,
        /// Keep this many of the newest automatic snapshots.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// List snapshots on every etcd host and in S3, with whether the copies agree.
    SnapshotList {
        /// Also run etcd's own checks on every copy (SHA-256 trailer, `etcdctl snapshot status`);
        /// without it, every copy is hashed (BLAKE3) so that differing copies show.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        s3: S3Flags,
    },
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the etcd plane to what cluster.yml says (plan, confirm, apply).
    Up {
        #[command(flatten)]
        pki: PkiArgs,
    },
    /// etcd snapshot commands (plan, confirm, apply).
    Etcd {
        #[command(subcommand)]
        command: EtcdAction,
    },
    /// Remove rkectl's helper binaries from the etcd hosts (plan, apply).
    Cleanup,
    /// Show what an action would do, without doing it.
    Plan {
        #[command(subcommand)]
        action: Action,
        /// Save the plan to a file, to apply it later with `rkectl apply FILE`.
        #[arg(long, global = true)]
        out: Option<PathBuf>,
        /// Plan without contacting any host (state shown as unknown); for review only.
        #[arg(long, global = true)]
        offline: bool,
    },
    /// Apply a saved plan, an action, or resume the unfinished apply of this cluster.
    #[command(args_conflicts_with_subcommands = true)]
    Apply {
        /// A plan file made by `rkectl plan … --out FILE`.
        file: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<Action>,
        /// Set aside an unfinished apply's journal instead of resuming it.
        #[arg(long)]
        abandon: bool,
        #[command(flatten)]
        s3: S3Flags,
    },
    /// Print a shell's completion script (bash, zsh, fish…).
    Completions {
        /// The shell whose script to print.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff; `rkectl man etcd snapshot-save | man -l -`), or write them all.
    Man {
        /// Write a page per command (rkectl.1, rkectl-etcd-snapshot-save.1…) into this folder.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        out: Option<PathBuf>,
        /// The command whose page to print (e.g. `etcd snapshot-save`); the top page when none.
        command: Vec<String>,
    },
    /// The node-side agent (runs inside the etcd image on a node).
    #[command(hide = true)]
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
}
