//! The node-side agent: the same binary, run as `rkectl agent …` inside the tools image.
//!
//! It does on a node what is awkward or slow to do from the workstation: take a snapshot
//! with etcdctl and stream it to S3 while it is written, hash and check snapshot files,
//! clean and move etcd data, link logs, query member health, and run the recurring
//! snapshot service. Each command prints one `RKECTL-REPORT <json>` line (see [`report`])
//! and exits non-zero on failure, with the reason on stderr.

pub mod argv;
mod commands;
pub mod drill;
pub mod etcdctl;
pub mod files;
mod follow;
pub mod hashes;
pub mod node_lock;
pub mod peer_cert;
pub mod report;
pub mod rolling;
pub mod snapshot;
pub mod stall;
pub mod transfer;
pub mod verify;

use crate::config::S3Settings;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// TLS client settings for etcdctl.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Tls {
    #[arg(long)]
    pub cacert: PathBuf,
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
}

/// Where snapshots go in S3 (keys come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct S3Args {
    #[arg(long = "s3-endpoint")]
    pub s3_endpoint: Option<String>,
    #[arg(long)]
    pub bucket: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub folder: Option<String>,
}

impl S3Args {
    /// The settings, when a bucket was given.
    pub fn settings(&self) -> Result<Option<S3Settings>, String> {
        if self.bucket.is_none() {
            return Ok(None);
        }
        let flags = crate::config::S3Flags {
            s3: true,
            endpoint: self.s3_endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            folder: self.folder.clone(),
            ..Default::default()
        };
        S3Settings::resolve(crate::config::S3Use::Flags, &flags, None, &crate::s3::environment::Node)
            .map_err(|e| e.to_string())
    }
}

/// How long a serving helper waits for its peer by default.
pub const SERVE_WAIT_SECS: u64 = 120;

/// The agent's commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AgentCommand {
    /// Removes everything inside the etcd data folder (`kube-cleaner`).
    Clean {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Moves restored data from the staging folder into place.
    RestoreFinish {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        staging: String,
    },
    /// Holds an invocation's claim on this node, and with `--holder` the node's lock, while
    /// standard input keeps talking (runs on the node).
    HoldLock {
        /// The invocation's id.
        #[arg(long)]
        owner: String,
        /// Takes the node lock too, for this holder (shown to an apply that finds it taken).
        #[arg(long)]
        holder: Option<String>,
        /// Lets go when nothing arrived on standard input for this long.
        #[arg(long, default_value_t = node_lock::LEASE_SECS)]
        lease_secs: u64,
    },
    /// Reports which invocations' claims on this node are held (runs on the node).
    Owners,
    /// Links a container's log file into RKE's log folder (`rke-log-linker`).
    LinkLogs {
        #[arg(long)]
        container: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        docker_root: PathBuf,
        #[arg(long)]
        log_dir: PathBuf,
    },
    /// Size, BLAKE3 and etcd's hash check of snapshot files (one report line each).
    SnapshotVerify {
        #[arg(long = "path", required = true)]
        paths: Vec<PathBuf>,
        /// Only size and BLAKE3 (fast): no SHA-256 trailer, no `etcdctl snapshot status`.
        #[arg(long)]
        checksum_only: bool,
    },
    /// Takes a snapshot (`etcd-snapshot-once`) as rke-tools' archive, streaming it to S3
    /// while it is written.
    SnapshotSave {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// RKE's state file to put in the archive (removed once it is in).
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Every etcd host gets a copy of this snapshot.
        #[arg(long)]
        copied_to_every_host: bool,
        /// Give up when etcdctl has written nothing for this long (Go duration).
        #[arg(long, default_value = "2m", value_parser = stall::StallLimit::parse)]
        stall_limit: stall::StallLimit,
        #[command(flatten)]
        tls: Tls,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Downloads a snapshot from S3 into a folder and verifies it.
    S3Download {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        format: FormatArg,
        #[arg(long)]
        into: PathBuf,
        /// The ETag the plan pinned (objects without rkectl's manifest).
        #[arg(long)]
        etag: Option<String>,
        /// The checksum the plan pinned: a download of other bytes is never put in place.
        #[arg(long)]
        checksum: Option<String>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Unpacks an archive's database for a restore, verified.
    SnapshotUnpack {
        #[arg(long)]
        archive: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Deletes snapshots and their records.
    SnapshotDelete {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Health and revision of members.
    Health {
        #[arg(long)]
        endpoints: String,
        #[command(flatten)]
        tls: Tls,
    },
    /// Adds a member (no-op if its peer URL is already a member).
    MemberAdd {
        #[arg(long)]
        member: String,
        #[arg(long)]
        peer_url: String,
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        tls: Tls,
    },
    /// Removes a member by name (no-op if absent).
    MemberRemove {
        #[arg(long)]
        member: String,
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        tls: Tls,
    },
    /// Serves one snapshot file once to one peer, over mutual TLS (the source of a
    /// host-to-host copy).
    ServeSnapshot {
        #[arg(long)]
        file: PathBuf,
        /// This host's address on the cluster network.
        #[arg(long)]
        listen: std::net::IpAddr,
        /// The only host that may fetch it.
        #[arg(long)]
        peer: std::net::IpAddr,
        /// Give up when the peer has not fetched it within this many seconds.
        #[arg(long, default_value_t = SERVE_WAIT_SECS)]
        wait_secs: u64,
        #[command(flatten)]
        tls: Tls,
    },
    /// Fetches a snapshot file another host serves, hashing it as it is written; it is put
    /// in place only when it is the `size` bytes of `checksum` the plan pinned.
    FetchSnapshot {
        #[arg(long)]
        from: std::net::SocketAddr,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        checksum: String,
        #[command(flatten)]
        tls: Tls,
    },
    /// Restores a snapshot into scratch space, serves it from a throwaway etcd on unix
    /// sockets in this container only, and reports what it holds (`etcd-snapshot-drill`).
    SnapshotDrill {
        #[arg(long)]
        file: PathBuf,
        /// The running member, to count the same keys in (read-only).
        #[arg(long)]
        live_endpoint: Option<String>,
        #[command(flatten)]
        tls: Tls,
    },
    /// The recurring snapshot service (`etcd-rolling-snapshots`).
    RollingSnapshots {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        tls: Tls,
        /// Time between snapshots (Go duration).
        #[arg(long)]
        creation: String,
        /// Delete snapshots older than this (legacy; Go duration).
        #[arg(long, conflicts_with = "keep")]
        retention: Option<String>,
        /// Keep this many snapshots (backup_config).
        #[arg(long)]
        keep: Option<u32>,
        /// Give up a snapshot when etcdctl has written nothing for this long (Go duration).
        #[arg(long, default_value = "2m", value_parser = stall::StallLimit::parse)]
        stall_limit: stall::StallLimit,
        #[command(flatten)]
        s3: S3Args,
        /// Drill each snapshot right after it is taken (restore it in scratch space, read it).
        #[arg(long)]
        drill: bool,
    },
}

/// A snapshot format on the agent's command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Raw,
    Zip,
}

impl From<FormatArg> for crate::model::SnapshotFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Raw => crate::model::SnapshotFormat::Raw,
            FormatArg::Zip => crate::model::SnapshotFormat::Zip,
        }
    }
}

impl From<crate::model::SnapshotFormat> for FormatArg {
    fn from(f: crate::model::SnapshotFormat) -> Self {
        match f {
            crate::model::SnapshotFormat::Raw => FormatArg::Raw,
            crate::model::SnapshotFormat::Zip => FormatArg::Zip,
        }
    }
}

/// Why an agent command failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub message: String,
    /// The cluster cannot take the change yet (etcd: "unhealthy cluster" right after
    /// members start): the caller waits and tries again rather than failing.
    pub not_ready: bool,
    /// The other host could not be reached at all (a host-to-host copy goes another way).
    pub unreachable: bool,
}

/// The agent's exit code when the cluster is not ready for the change yet (EX_TEMPFAIL);
/// any other failure exits 1.
pub const EXIT_NOT_READY: u8 = 75;

impl AgentError {
    /// An error with context.
    pub fn new(msg: impl Into<String>) -> Self {
        AgentError { message: msg.into(), not_ready: false, unreachable: false }
    }

    /// The cluster is not ready for the change yet; try again later.
    pub fn not_ready(msg: impl Into<String>) -> Self {
        AgentError { message: msg.into(), not_ready: true, unreachable: false }
    }

    /// The other host could not be reached at all.
    pub fn unreachable(msg: impl Into<String>) -> Self {
        AgentError { message: msg.into(), not_ready: false, unreachable: true }
    }

    /// The process exit code that says which of the two it is.
    pub fn exit_code(&self) -> u8 {
        if self.not_ready {
            EXIT_NOT_READY
        } else if self.unreachable {
            transfer::EXIT_UNREACHABLE
        } else {
            1
        }
    }
}

impl From<std::io::Error> for AgentError {
    fn from(e: std::io::Error) -> Self {
        AgentError::new(e.to_string())
    }
}

/// Runs an agent command; prints its report line on success.
pub async fn run(cmd: AgentCommand) -> Result<(), AgentError> {
    match cmd {
        AgentCommand::Clean { data_dir } => files::clean(&data_dir),
        AgentCommand::RestoreFinish { data_dir, staging } => files::restore_finish(&data_dir, &staging),
        AgentCommand::HoldLock { owner, holder, lease_secs } => {
            node_lock::hold(&owner, holder.as_deref(), std::time::Duration::from_secs(lease_secs))
        }
        AgentCommand::Owners => node_lock::print_live_owners(),
        AgentCommand::LinkLogs { container, id, docker_root, log_dir } => {
            files::link_logs(&container, &id, &docker_root, &log_dir)
        }
        AgentCommand::SnapshotVerify { paths, checksum_only } => commands::snapshot_verify(paths, checksum_only).await,
        AgentCommand::SnapshotSave { endpoint, dir, name, state_file, copied_to_every_host, stall_limit, tls, s3 } => {
            commands::snapshot_save(snapshot::SaveRequest {
                endpoint: &endpoint,
                tls: &tls,
                dir: &dir,
                name: &name,
                s3: s3.settings().map_err(AgentError::new)?.as_ref(),
                state_file: state_file.as_deref(),
                copied_to_every_host,
                stall_limit,
                progress: std::sync::Arc::new(snapshot::PrintProgress::default()),
            })
            .await
        }
        AgentCommand::S3Download { name, format, into, etag, checksum, s3 } => {
            let checksum = checksum.map(crate::model::Checksum);
            commands::s3_download(&name, format, &into, etag.as_deref(), checksum.as_ref(), &s3).await
        }
        AgentCommand::SnapshotUnpack { archive, out } => commands::snapshot_unpack(&archive, &out).await,
        AgentCommand::SnapshotDelete { dir, names } => snapshot::delete(&dir, &names),
        AgentCommand::Health { endpoints, tls } => commands::print_report(&etcdctl::health(&endpoints, &tls).await?),
        AgentCommand::MemberAdd { member, peer_url, endpoint, tls } => {
            etcdctl::member_add(&endpoint, &tls, &member, &peer_url).await
        }
        AgentCommand::MemberRemove { member, endpoint, tls } => etcdctl::member_remove(&endpoint, &tls, &member).await,
        AgentCommand::ServeSnapshot { file, listen, peer, wait_secs, tls } => {
            commands::serve_snapshot(&file, listen, peer, wait_secs, &tls).await
        }
        AgentCommand::FetchSnapshot { from, out, size, checksum, tls } => {
            let expect = crate::model::SnapshotFacts { size, checksum: crate::model::Checksum(checksum) };
            commands::fetch_snapshot(from, &out, &expect, &tls).await
        }
        AgentCommand::SnapshotDrill { file, live_endpoint, tls } => {
            commands::snapshot_drill(&file, live_endpoint.as_deref(), &tls).await
        }
        AgentCommand::RollingSnapshots { endpoint, dir, tls, creation, retention, keep, stall_limit, s3, drill } => {
            rolling::run(rolling::Settings {
                drill,
                endpoint,
                dir,
                tls,
                creation,
                retention,
                keep,
                stall_limit,
                s3: s3.settings().map_err(AgentError::new)?,
            })
            .await
        }
    }
}
