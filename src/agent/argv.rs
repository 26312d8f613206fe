//! The agent's command line, written from the same typed commands the agent parses, so
//! that the helpers' argv is spelled in one place: [`AgentCommand::to_args`] here, clap's
//! derive in [`super`]. A test renders every command and parses it back.

use super::stall::StallLimit;
use super::{AgentCommand, FormatArg, S3Args, Tls};
use std::path::Path;

/// An argv being written: the subcommand, then its flags in the order the agent documents.
struct Argv(Vec<String>);

impl Argv {
    fn new(subcommand: &str) -> Self {
        Argv(vec![subcommand.to_string()])
    }

    /// `--name value`.
    fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.0.push(format!("--{name}"));
        self.0.push(value.to_string());
        self
    }

    /// `--name path`.
    fn path(self, name: &str, path: &Path) -> Self {
        let value = path.to_string_lossy().into_owned();
        self.flag(name, value)
    }

    /// `--name value` when there is a value.
    fn opt(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.flag(name, v),
            None => self,
        }
    }

    /// `--name` when `on`.
    fn switch(mut self, name: &str, on: bool) -> Self {
        if on {
            self.0.push(format!("--{name}"));
        }
        self
    }

    /// `--name value` for each value.
    fn each<T: ToString>(self, name: &str, values: impl IntoIterator<Item = T>) -> Self {
        values.into_iter().fold(self, |a, v| a.flag(name, v))
    }

    fn tls(self, tls: &Tls) -> Self {
        self.path("cacert", &tls.cacert).path("cert", &tls.cert).path("key", &tls.key)
    }

    fn s3(self, s3: &S3Args) -> Self {
        self.opt("s3-endpoint", s3.s3_endpoint.as_ref())
            .opt("bucket", s3.bucket.as_ref())
            .opt("region", s3.region.as_ref())
            .opt("folder", s3.folder.as_ref())
    }

    /// `--stall-limit` only when it is not the default (the argv of a service is part of
    /// its spec hash: what was never written must not start being written).
    fn stall(self, limit: StallLimit) -> Self {
        let given = (limit != StallLimit::DEFAULT).then(|| format!("{}s", limit.0.as_secs()));
        self.opt("stall-limit", given)
    }
}

impl AgentCommand {
    /// The command's argv after `rkectl agent`, as the agent parses it.
    pub fn to_args(&self) -> Vec<String> {
        let argv = self.node_argv().or_else(|| self.snapshot_argv()).or_else(|| self.cluster_argv());
        argv.expect("every agent command has its argv in one of the groups").0
    }

    /// The node's own housekeeping, and the snapshot files on it.
    fn node_argv(&self) -> Option<Argv> {
        let paths = |ps: &[std::path::PathBuf]| ps.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>();
        Some(match self {
            AgentCommand::Clean { data_dir } => Argv::new("clean").path("data-dir", data_dir),
            AgentCommand::RestoreFinish { data_dir, staging } => {
                Argv::new("restore-finish").path("data-dir", data_dir).flag("staging", staging)
            }
            AgentCommand::HoldLock { owner, holder, lease_secs } => Argv::new("hold-lock")
                .flag("owner", owner)
                .opt("holder", holder.as_ref())
                .flag("lease-secs", lease_secs),
            AgentCommand::Owners => Argv::new("owners"),
            AgentCommand::LinkLogs { container, id, docker_root, log_dir } => Argv::new("link-logs")
                .flag("container", container)
                .flag("id", id)
                .path("docker-root", docker_root)
                .path("log-dir", log_dir),
            AgentCommand::SnapshotVerify { paths: ps, checksum_only } => {
                Argv::new("snapshot-verify").switch("checksum-only", *checksum_only).each("path", paths(ps))
            }
            AgentCommand::SnapshotUnpack { archive, out } => {
                Argv::new("snapshot-unpack").path("archive", archive).path("out", out)
            }
            AgentCommand::SnapshotDelete { dir, names } => {
                Argv::new("snapshot-delete").path("dir", dir).each("name", names)
            }
            _ => return None,
        })
    }

    /// Saving, downloading, drilling and the recurring service.
    fn snapshot_argv(&self) -> Option<Argv> {
        Some(match self {
            AgentCommand::SnapshotSave {
                endpoint,
                dir,
                name,
                state_file,
                copied_to_every_host,
                stall_limit,
                tls,
                s3,
            } => Argv::new("snapshot-save")
                .flag("endpoint", endpoint)
                .path("dir", dir)
                .flag("name", name)
                .switch("copied-to-every-host", *copied_to_every_host)
                .opt("state-file", state_file.as_ref().map(|f| f.to_string_lossy().into_owned()))
                .stall(*stall_limit)
                .tls(tls)
                .s3(s3),
            AgentCommand::S3Download { name, format, into, etag, checksum, s3 } => {
                let format = match format {
                    FormatArg::Raw => "raw",
                    FormatArg::Zip => "zip",
                };
                Argv::new("s3-download")
                    .flag("name", name)
                    .flag("format", format)
                    .path("into", into)
                    .opt("etag", etag.as_ref())
                    .opt("checksum", checksum.as_ref())
                    .s3(s3)
            }
            AgentCommand::SnapshotDrill { file, live_endpoint, tls } => {
                Argv::new("snapshot-drill").path("file", file).opt("live-endpoint", live_endpoint.as_ref()).tls(tls)
            }
            AgentCommand::RollingSnapshots {
                endpoint,
                dir,
                tls,
                creation,
                retention,
                keep,
                stall_limit,
                s3,
                drill,
            } => Argv::new("rolling-snapshots")
                .flag("endpoint", endpoint)
                .path("dir", dir)
                .tls(tls)
                .flag("creation", creation)
                .opt("retention", retention.as_ref())
                .opt("keep", keep.as_ref())
                .stall(*stall_limit)
                .s3(s3)
                .switch("drill", *drill),
            _ => return None,
        })
    }

    /// The members, their health, and copies between them.
    fn cluster_argv(&self) -> Option<Argv> {
        Some(match self {
            AgentCommand::Health { endpoints, tls } => Argv::new("health").flag("endpoints", endpoints).tls(tls),
            AgentCommand::MemberAdd { member, peer_url, endpoint, tls } => Argv::new("member-add")
                .flag("member", member)
                .flag("peer-url", peer_url)
                .flag("endpoint", endpoint)
                .tls(tls),
            AgentCommand::MemberRemove { member, endpoint, tls } => {
                Argv::new("member-remove").flag("member", member).flag("endpoint", endpoint).tls(tls)
            }
            AgentCommand::ServeSnapshot { file, listen, peer, wait_secs, tls } => Argv::new("serve-snapshot")
                .path("file", file)
                .flag("listen", listen)
                .flag("peer", peer)
                .opt("wait-secs", (*wait_secs != super::SERVE_WAIT_SECS).then_some(wait_secs))
                .tls(tls),
            AgentCommand::FetchSnapshot { from, out, size, checksum, tls } => Argv::new("fetch-snapshot")
                .flag("from", from)
                .path("out", out)
                .flag("size", size)
                .flag("checksum", checksum)
                .tls(tls),
            _ => return None,
        })
    }
}

/// Parses an agent argv (after `rkectl agent`), as the agent itself does.
pub fn parse(args: &[String]) -> Result<AgentCommand, clap::Error> {
    #[derive(clap::Parser)]
    struct Agent {
        #[command(subcommand)]
        command: AgentCommand,
    }
    let argv = std::iter::once("agent".to_string()).chain(args.iter().cloned());
    <Agent as clap::Parser>::try_parse_from(argv).map(|a| a.command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tls() -> Tls {
        Tls { cacert: "/ssl/ca.pem".into(), cert: "/ssl/c.pem".into(), key: "/ssl/k.pem".into() }
    }

    fn s3(full: bool) -> S3Args {
        S3Args {
            s3_endpoint: Some("https://s3.example:9000".into()),
            bucket: Some("b".into()),
            region: full.then(|| "eu-west-1".into()),
            folder: full.then(|| "f/g".into()),
        }
    }

    fn d(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// One of every command, with its optional parts both present and absent.
    fn every_command() -> Vec<AgentCommand> {
        [node_commands(), snapshot_commands(), cluster_commands()].concat()
    }

    /// The node's own housekeeping.
    fn node_commands() -> Vec<AgentCommand> {
        vec![
            AgentCommand::Clean { data_dir: d("/var/lib/rancher/etcd") },
            AgentCommand::RestoreFinish { data_dir: d("/data"), staging: "restore-staging".into() },
            AgentCommand::HoldLock {
                owner: "0123456789abcdef".into(),
                holder: Some("pid 1 on ws".into()),
                lease_secs: 60,
            },
            AgentCommand::HoldLock { owner: "0123456789abcdef".into(), holder: None, lease_secs: 5 },
            AgentCommand::Owners,
            AgentCommand::LinkLogs {
                container: "etcd".into(),
                id: "abc".into(),
                docker_root: d("/var/lib/docker"),
                log_dir: d("/var/lib/rancher/rke/log"),
            },
        ]
    }

    /// Snapshots: saving, moving, checking, deleting, drilling.
    fn snapshot_commands() -> Vec<AgentCommand> {
        vec![
            AgentCommand::SnapshotVerify { paths: vec![d("/a.zip"), d("/b name.db")], checksum_only: true },
            AgentCommand::SnapshotVerify { paths: vec![d("/a.zip")], checksum_only: false },
            AgentCommand::SnapshotSave {
                endpoint: "https://10.0.0.1:2379".into(),
                dir: d("/opt/rke/etcd-snapshots"),
                name: "s".into(),
                state_file: Some(d("/etc/kubernetes/rkectl/state.json")),
                copied_to_every_host: true,
                stall_limit: StallLimit(std::time::Duration::from_secs(30)),
                tls: tls(),
                s3: s3(true),
            },
            AgentCommand::SnapshotSave {
                endpoint: "https://10.0.0.1:2379".into(),
                dir: d("/opt/rke/etcd-snapshots"),
                name: "s".into(),
                state_file: None,
                copied_to_every_host: false,
                stall_limit: StallLimit::DEFAULT,
                tls: tls(),
                s3: S3Args { s3_endpoint: None, bucket: None, region: None, folder: None },
            },
            AgentCommand::S3Download {
                name: "n".into(),
                format: FormatArg::Zip,
                into: d("/x"),
                etag: Some("\"e\"".into()),
                checksum: None,
                s3: s3(false),
            },
            AgentCommand::S3Download {
                name: "n".into(),
                format: FormatArg::Raw,
                into: d("/x"),
                etag: None,
                checksum: Some("blake3:ab".into()),
                s3: s3(true),
            },
            AgentCommand::SnapshotUnpack { archive: d("/a.zip"), out: d("/o.db") },
            AgentCommand::SnapshotDelete { dir: d("/s"), names: vec!["a".into(), "b".into()] },
            AgentCommand::SnapshotDrill { file: d("/s/x.zip"), live_endpoint: None, tls: tls() },
            AgentCommand::SnapshotDrill {
                file: d("/s/x.db"),
                live_endpoint: Some("https://10.0.0.1:2379".into()),
                tls: tls(),
            },
        ]
    }

    /// The cluster: members, their health, copies between them, the recurring service.
    fn cluster_commands() -> Vec<AgentCommand> {
        vec![
            AgentCommand::Health { endpoints: "https://a:2379,https://b:2379".into(), tls: tls() },
            AgentCommand::MemberAdd {
                member: "etcd-n".into(),
                peer_url: "https://a:2380".into(),
                endpoint: "https://b:2379".into(),
                tls: tls(),
            },
            AgentCommand::MemberRemove { member: "etcd-n".into(), endpoint: "https://b:2379".into(), tls: tls() },
            AgentCommand::ServeSnapshot {
                file: d("/opt/rke/etcd-snapshots/s.zip"),
                listen: "10.0.0.1".parse().unwrap(),
                peer: "10.0.0.2".parse().unwrap(),
                wait_secs: 7,
                tls: tls(),
            },
            AgentCommand::FetchSnapshot {
                from: "[fd00::1]:4000".parse().unwrap(),
                out: d("/o"),
                size: 12,
                checksum: "blake3:cd".into(),
                tls: tls(),
            },
            AgentCommand::RollingSnapshots {
                endpoint: "https://a:2379".into(),
                dir: d("/s"),
                tls: tls(),
                creation: "12h".into(),
                retention: None,
                keep: Some(6),
                stall_limit: StallLimit::DEFAULT,
                s3: s3(true),
                drill: true,
            },
            AgentCommand::RollingSnapshots {
                endpoint: "https://a:2379".into(),
                dir: d("/s"),
                tls: tls(),
                creation: "5m0s".into(),
                retention: Some("24h0m0s".into()),
                keep: None,
                stall_limit: StallLimit(std::time::Duration::from_secs(90)),
                s3: S3Args { s3_endpoint: None, bucket: None, region: None, folder: None },
                drill: false,
            },
        ]
    }

    #[test]
    fn every_command_parses_back_from_the_argv_it_renders() {
        let cmds = every_command();
        let mut kinds = std::collections::BTreeSet::new();
        for cmd in cmds {
            let args = cmd.to_args();
            kinds.insert(args[0].clone());
            let back = parse(&args).unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"));
            assert_eq!(back, cmd, "{args:?}");
        }
        // Every subcommand the agent has is covered (a new one must be added above).
        let all: std::collections::BTreeSet<String> =
            <AgentCommand as clap::Subcommand>::augment_subcommands(clap::Command::new("agent"))
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
        assert_eq!(kinds, all);
    }
}
