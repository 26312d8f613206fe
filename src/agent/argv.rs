//! The agent's command line, written from the same typed commands the agent parses, so
//! that the helpers' argv is spelled in one place: [`AgentCommand::to_args`] here, clap's
//! derive in [`super`]. A test renders every command and parses it back.

use super::stall::StallLimit;
use super::{AgentCommand, FormatArg, S3Args, Tls};
use std::path::Path;

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Appends `--flag value`.
fn flag(args: &mut Vec<String>, name: &str, value: impl Into<String>) {
    args.push(format!("--{name}"));
    args.push(value.into());
}

impl Tls {
    fn push(&self, args: &mut Vec<String>) {
        flag(args, "cacert", p(&self.cacert));
        flag(args, "cert", p(&self.cert));
        flag(args, "key", p(&self.key));
    }
}

impl S3Args {
    fn push(&self, args: &mut Vec<String>) {
        let fields = [("s3-endpoint", &self.s3_endpoint), ("bucket", &self.bucket), ("region", &self.region)];
        for (name, value) in fields.into_iter().chain([("folder", &self.folder)]) {
            if let Some(v) = value {
                flag(args, name, v.clone());
            }
        }
    }
}

/// `--stall-limit` only when it is not the default (the argv of a service is part of its
/// spec hash: what was never written must not start being written).
fn stall(args: &mut Vec<String>, limit: StallLimit) {
    if limit != StallLimit::DEFAULT {
        flag(args, "stall-limit", format!("{}s", limit.0.as_secs()));
    }
}

impl AgentCommand {
    /// The command's argv after `rkectl agent`, as the agent parses it.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        match self {
            AgentCommand::Clean { data_dir } => {
                a.push("clean".into());
                flag(&mut a, "data-dir", p(data_dir));
            }
            AgentCommand::RestoreFinish { data_dir, staging } => {
                a.push("restore-finish".into());
                flag(&mut a, "data-dir", p(data_dir));
                flag(&mut a, "staging", staging.clone());
            }
            AgentCommand::HoldLock { owner, holder, lease_secs } => {
                a.push("hold-lock".into());
                flag(&mut a, "owner", owner.clone());
                if let Some(h) = holder {
                    flag(&mut a, "holder", h.clone());
                }
                flag(&mut a, "lease-secs", lease_secs.to_string());
            }
            AgentCommand::Owners => a.push("owners".into()),
            AgentCommand::LinkLogs { container, id, docker_root, log_dir } => {
                a.push("link-logs".into());
                flag(&mut a, "container", container.clone());
                flag(&mut a, "id", id.clone());
                flag(&mut a, "docker-root", p(docker_root));
                flag(&mut a, "log-dir", p(log_dir));
            }
            AgentCommand::SnapshotVerify { paths, checksum_only } => {
                a.push("snapshot-verify".into());
                if *checksum_only {
                    a.push("--checksum-only".into());
                }
                for path in paths {
                    flag(&mut a, "path", p(path));
                }
            }
            AgentCommand::SnapshotSave {
                endpoint,
                dir,
                name,
                state_file,
                copied_to_every_host,
                stall_limit,
                tls,
                s3,
            } => {
                a.push("snapshot-save".into());
                flag(&mut a, "endpoint", endpoint.clone());
                flag(&mut a, "dir", p(dir));
                flag(&mut a, "name", name.clone());
                if *copied_to_every_host {
                    a.push("--copied-to-every-host".into());
                }
                if let Some(f) = state_file {
                    flag(&mut a, "state-file", p(f));
                }
                stall(&mut a, *stall_limit);
                tls.push(&mut a);
                s3.push(&mut a);
            }
            AgentCommand::S3Download { name, format, into, etag, checksum, s3 } => {
                a.push("s3-download".into());
                flag(&mut a, "name", name.clone());
                let format = match format {
                    FormatArg::Raw => "raw",
                    FormatArg::Zip => "zip",
                };
                flag(&mut a, "format", format);
                flag(&mut a, "into", p(into));
                if let Some(e) = etag {
                    flag(&mut a, "etag", e.clone());
                }
                if let Some(c) = checksum {
                    flag(&mut a, "checksum", c.clone());
                }
                s3.push(&mut a);
            }
            AgentCommand::SnapshotUnpack { archive, out } => {
                a.push("snapshot-unpack".into());
                flag(&mut a, "archive", p(archive));
                flag(&mut a, "out", p(out));
            }
            AgentCommand::SnapshotDelete { dir, names } => {
                a.push("snapshot-delete".into());
                flag(&mut a, "dir", p(dir));
                for n in names {
                    flag(&mut a, "name", n.clone());
                }
            }
            AgentCommand::Health { endpoints, tls } => {
                a.push("health".into());
                flag(&mut a, "endpoints", endpoints.clone());
                tls.push(&mut a);
            }
            AgentCommand::MemberAdd { member, peer_url, endpoint, tls } => {
                a.push("member-add".into());
                flag(&mut a, "member", member.clone());
                flag(&mut a, "peer-url", peer_url.clone());
                flag(&mut a, "endpoint", endpoint.clone());
                tls.push(&mut a);
            }
            AgentCommand::MemberRemove { member, endpoint, tls } => {
                a.push("member-remove".into());
                flag(&mut a, "member", member.clone());
                flag(&mut a, "endpoint", endpoint.clone());
                tls.push(&mut a);
            }
            AgentCommand::ServeSnapshot { file, listen, peer, wait_secs, tls } => {
                a.push("serve-snapshot".into());
                flag(&mut a, "file", p(file));
                flag(&mut a, "listen", listen.to_string());
                flag(&mut a, "peer", peer.to_string());
                if *wait_secs != super::SERVE_WAIT_SECS {
                    flag(&mut a, "wait-secs", wait_secs.to_string());
                }
                tls.push(&mut a);
            }
            AgentCommand::FetchSnapshot { from, out, size, checksum, tls } => {
                a.push("fetch-snapshot".into());
                flag(&mut a, "from", from.to_string());
                flag(&mut a, "out", p(out));
                flag(&mut a, "size", size.to_string());
                flag(&mut a, "checksum", checksum.clone());
                tls.push(&mut a);
            }
            AgentCommand::SnapshotDrill { file, live_endpoint, tls } => {
                a.push("snapshot-drill".into());
                flag(&mut a, "file", p(file));
                if let Some(e) = live_endpoint {
                    flag(&mut a, "live-endpoint", e.clone());
                }
                tls.push(&mut a);
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
            } => {
                a.push("rolling-snapshots".into());
                flag(&mut a, "endpoint", endpoint.clone());
                flag(&mut a, "dir", p(dir));
                tls.push(&mut a);
                flag(&mut a, "creation", creation.clone());
                if let Some(r) = retention {
                    flag(&mut a, "retention", r.clone());
                }
                if let Some(k) = keep {
                    flag(&mut a, "keep", k.to_string());
                }
                stall(&mut a, *stall_limit);
                s3.push(&mut a);
                if *drill {
                    a.push("--drill".into());
                }
            }
        }
        a
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

    /// One of every command, with its optional parts both present and absent.
    fn every_command() -> Vec<AgentCommand> {
        let d = |s: &str| PathBuf::from(s);
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
            AgentCommand::SnapshotDrill { file: d("/s/x.zip"), live_endpoint: None, tls: tls() },
            AgentCommand::SnapshotDrill {
                file: d("/s/x.db"),
                live_endpoint: Some("https://10.0.0.1:2379".into()),
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
