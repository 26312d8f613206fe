//! A corpus of bad inputs: every one is refused with exit code 2 before any host is dialed,
//! with a diagnostic that says what is wrong and, for cluster.yml, where (line and column,
//! through the library and in the binary's `[cluster.yml:LINE:COL]` pointer).
//!
//! A case is one entry of [`cases`]: a cluster.yml (the lab's, `tests/bad_inputs/base.yml`,
//! with textual edits; or a text of its own), what to run, and what must come out. Line and
//! column expectations refer to base.yml with the edits applied.
//!
//! `bad_inputs_change_nothing_in_the_lab` runs the cases whose cluster.yml is the lab's own
//! (the lab's real file with the same edits) as the real, non-offline commands, and checks
//! that nothing changed on the nodes or in S3.

#[path = "common/golden.rs"]
mod golden;
#[path = "common/lab.rs"]
mod lab;

use rkectl::config::{ConfigError, ConfigProblem};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = include_str!("bad_inputs/base.yml");
/// The SSH key file in base.yml (the lab's key in the lab, a dummy file otherwise).
const KEY: &str = "@SSH_KEY@";
/// The case's own folder (for key files that exist but cannot be read).
const CASE_DIR: &str = "@CASE_DIR@";
/// The last line of base.yml's `services.etcd` (line 21): etcd settings go after it.
const IMAGE: &str = "    image: rkectl-lab/etcd:v3.4.23\n";
/// A run that takes longer than this has dialed something: a bug in itself.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster.yml of a case.
#[derive(Clone, Copy)]
enum Yml {
    /// base.yml with each `(find, replace)` applied in turn to the first occurrence.
    Base(&'static [(&'static str, &'static str)]),
    /// A text of its own (not the lab's cluster.yml: not run in the lab).
    Text(&'static str),
    /// No cluster.yml at all.
    Missing,
}

/// A saved plan file handed to `rkectl apply FILE`.
#[derive(Clone, Copy)]
enum PlanFile {
    /// Made (offline, then marked as observed) for another cluster.yml.
    ForOtherConfig,
    /// Claims a newer plan format.
    NewerFormat,
    /// Written by an older rkectl (format 1: an `offline` flag beside the facts).
    OlderFormat,
    /// A step waits for a step that is not in the plan.
    BrokenGraph,
    /// Not JSON.
    Garbage,
}

/// An unfinished-apply journal next to cluster.yml.
#[derive(Clone, Copy)]
enum Journal {
    /// A valid header, then garbage on line 3 of 4.
    CorruptMiddleLine,
    /// A header of format 99.
    NewerFormat,
    /// A header of format 1, an older rkectl's.
    OlderFormat,
}

/// What a case runs.
#[derive(Clone, Copy)]
enum Run {
    /// `plan up --offline` (lab: `up --yes`, and `etcd snapshot-restore --name base.db --yes`).
    Config,
    /// `plan up`, which reads the SSH keys (an offline plan needs none) and is refused before
    /// any host is dialed (lab: as `Config`).
    Keys,
    /// `plan up --offline`, in the lab too.
    Offline,
    /// `plan ACTION --offline` (lab: `ACTION --yes`).
    Action(&'static [&'static str]),
    /// `apply FILE --yes` with a prepared plan file.
    ApplyPlan(PlanFile),
    /// `apply --yes` (resume) and `up --yes` with a prepared journal.
    Resume(Journal),
    /// Only `rkectl::invocation::snapshot_name` (a NUL cannot be passed on a command line).
    SnapshotNameLib(&'static str),
}

/// Something the case needs in its folder besides cluster.yml.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    None,
    /// `loop` is a symlink to itself: opening it fails with ELOOP, even for root.
    SymlinkLoop,
    /// `secret` holds an S3 secret key (`FILESECRET1`), as `--secret-key-file` reads it.
    SecretKeyFile,
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    yml: Yml,
    run: Run,
    setup: Setup,
    /// Exit code of every command run.
    code: i32,
    /// Fragments the diagnostic (binary output; library message) must contain. Fragments
    /// with " at line " (libyaml's context) are checked against base.yml only, not in the lab.
    words: &'static [&'static str],
    /// 1-based line and column of the cluster.yml problem (of its warning, for a cluster.yml
    /// that is accepted).
    at: Option<(usize, Option<usize>)>,
    /// How many problems the library reports (cluster.yml cases).
    problems: usize,
    /// Fragments (secrets in cluster.yml or on the command line) that no output may contain.
    hides: &'static [&'static str],
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        yml: Yml::Base(&[]),
        run: Run::Config,
        setup: Setup::None,
        code: 2,
        words: &[],
        at: None,
        problems: 1,
        hides: &[],
    }
}

impl Case {
    fn edit(mut self, edits: &'static [(&'static str, &'static str)]) -> Self {
        self.yml = Yml::Base(edits);
        self
    }
    fn text(mut self, text: &'static str) -> Self {
        self.yml = Yml::Text(text);
        self
    }
    fn missing(mut self) -> Self {
        self.yml = Yml::Missing;
        self
    }
    fn offline(mut self) -> Self {
        self.run = Run::Offline;
        self
    }
    fn keys(mut self) -> Self {
        self.run = Run::Keys;
        self
    }
    fn action(mut self, args: &'static [&'static str]) -> Self {
        self.run = Run::Action(args);
        self
    }
    fn apply_plan(mut self, p: PlanFile) -> Self {
        self.run = Run::ApplyPlan(p);
        self
    }
    fn resume(mut self, j: Journal) -> Self {
        self.run = Run::Resume(j);
        self
    }
    fn name_lib(mut self, name: &'static str) -> Self {
        self.run = Run::SnapshotNameLib(name);
        self
    }
    fn setup(mut self, s: Setup) -> Self {
        self.setup = s;
        self
    }
    fn exit(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
    fn says(mut self, words: &'static [&'static str]) -> Self {
        self.words = words;
        self
    }
    fn at(mut self, line: usize, column: usize) -> Self {
        self.at = Some((line, Some(column)));
        self
    }
    fn line(mut self, line: usize) -> Self {
        self.at = Some((line, None));
        self
    }
    fn problems(mut self, n: usize) -> Self {
        self.problems = n;
        self
    }
    fn hides(mut self, secrets: &'static [&'static str]) -> Self {
        self.hides = secrets;
        self
    }

    /// Whether the case's cluster.yml is the lab's own (edited) file.
    fn labs_own(&self) -> bool {
        matches!(self.yml, Yml::Base(_)) && !matches!(self.run, Run::SnapshotNameLib(_)) && self.code == 2
    }
}

/// The corpus. Lines refer to base.yml after the case's edits.
fn cases() -> Vec<Case> {
    let name_300: &'static str = Box::leak("x".repeat(300).into_boxed_str());
    let save_300: &'static [&'static str] =
        Box::leak(vec!["etcd", "snapshot-save", "--name", name_300].into_boxed_slice());
    vec![
        // --- YAML that does not parse ---
        case("yaml-bad-indentation")
            .edit(&[("node1\n    user: root\n", "node1\n   user: root\n")])
            .says(&["did not find expected '-' indicator, while parsing a block collection at line 4 column 3"])
            .at(6, 4),
        case("yaml-unclosed-quote")
            .edit(&[("hostname_override: node1\n", "hostname_override: \"node1\n")])
            .says(&["found unexpected end of stream, while scanning a quoted scalar at line 5 column 24"])
            .at(24, 1),
        case("yaml-tab-indentation")
            .edit(&[("node1\n    user: root\n", "node1\n\tuser: root\n")])
            .says(&["found a tab character that violates indentation"])
            .at(6, 1),
        case("yaml-unclosed-flow-sequence")
            .edit(&[("node2\n    user: root\n    role: [etcd]\n", "node2\n    user: root\n    role: [etcd\n")])
            .says(&["did not find expected ',' or ']'", "while parsing a flow sequence at line 12 column 11"])
            .at(13, 17),
        case("yaml-duplicate-key")
            .edit(&[("node3\n    user: root\n", "node3\n    user: root\n    user: admin\n")])
            // serde_yaml points at the node's mapping, not at the second `user:` (line 17).
            .says(&["nodes[2]: duplicate field `user`"])
            .at(14, 5),
        case("yaml-top-level-list")
            .text("- address: 10.77.0.11\n  user: root\n  role: [etcd]\n")
            .says(&["invalid type: sequence"])
            .at(1, 1),
        // --- wrong types ---
        case("type-list-for-user")
            .edit(&[("node2\n    user: root\n", "node2\n    user: [root, admin]\n")])
            .says(&["nodes[1].user: invalid type: sequence, expected a string"])
            .at(11, 11),
        case("type-map-for-role")
            .edit(&[("role: [etcd]\n", "role: {etcd: true}\n")])
            .says(&["nodes[0].role: invalid type: map, expected a sequence"])
            .at(7, 11),
        case("type-string-for-nodes")
            .edit(&[("nodes:\n", "nodes: 10.77.0.11\nformer_nodes:\n")])
            .says(&["nodes: invalid type: string \"10.77.0.11\", expected a sequence"])
            .at(3, 8),
        case("type-snapshot-not-a-bool")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: maybe\n")])
            .says(&["services.etcd.snapshot: invalid value", "maybe"])
            .at(22, 15),
        // --- nodes ---
        case("role-unknown")
            .edit(&[("node3\n    user: root\n    role: [etcd]\n", "node3\n    user: root\n    role: [etcd, master]\n")])
            .says(&["unknown role `master`"])
            .at(17, 18),
        case("role-empty-list")
            .edit(&[("node3\n    user: root\n    role: [etcd]\n", "node3\n    user: root\n    role: []\n")])
            .says(&["node 10.77.0.13 has no role"])
            .line(14),
        case("address-duplicate")
            .edit(&[("address: 10.77.0.13", "address: 10.77.0.11")])
            .says(&["duplicate node address 10.77.0.11 (also nodes[0])"])
            .at(14, 14),
        case("address-missing")
            .edit(&[("  - address: 10.77.0.13\n    hostname_override", "  - hostname_override")])
            .says(&["node 3 has no address"])
            .line(14),
        case("address-with-space")
            .edit(&[("address: 10.77.0.12", "address: 10.77.0.12 10.77.0.13")])
            .says(&["`10.77.0.12 10.77.0.13` is not a host address"])
            .at(9, 14),
        case("member-name-duplicate")
            .edit(&[("hostname_override: node2", "hostname_override: node1")])
            .says(&["duplicate node name node1 (also nodes[0])", "etcd-node1"])
            .line(9),
        // RKE lower-cases names before it compares them.
        case("node-name-duplicate-in-another-case")
            .edit(&[("hostname_override: node2", "hostname_override: NODE1")])
            .says(&["duplicate node name node1 (also nodes[0])"])
            .line(9),
        case("node-name-not-dns")
            .edit(&[("hostname_override: node2", "hostname_override: node_2")])
            .says(&["node name `node_2` is not a valid DNS-1123 subdomain"])
            .at(10, 24),
        case("internal-address-splices-members")
            .edit(&[("hostname_override: node2", "hostname_override: node2\n    internal_address: 10.77.0.12,etcd-x=https://10.0.0.9")])
            .says(&["is not a host address"])
            .line(11),
        // Not an IP and not a host name: `host:port` would end up in etcd's URLs.
        case("internal-address-with-a-port")
            .edit(&[("hostname_override: node2", "hostname_override: node2\n    internal_address: 10.77.0.12:2380")])
            .says(&["`10.77.0.12:2380` is not a host address"])
            .at(11, 23),
        // Spliced into etcd's URLs without brackets, an IPv6 address names another host:port.
        case("address-ipv6")
            .edit(&[("address: 10.77.0.12", "address: fd00::12")])
            .says(&["`fd00::12` is not a host address: rkectl does not support IPv6 node addresses yet"])
            .at(9, 14),
        case("internal-address-ipv6")
            .edit(&[("hostname_override: node2", "hostname_override: node2\n    internal_address: fd00::12")])
            .says(&["`fd00::12` is not a host address: rkectl does not support IPv6"])
            .at(11, 23),
        // ssh would read it as an option (and etcd's flags would carry it).
        case("address-as-an-ssh-option")
            .edit(&[("address: 10.77.0.12", "address: -oProxyCommand=id")])
            .says(&["`-oProxyCommand=id` is not a host address: it starts with `-`"])
            .at(9, 14),
        case("hostname-override-splices-members")
            .edit(&[("hostname_override: node2", "hostname_override: node2,etcd-x=https://10.0.0.9")])
            .says(&["is not a valid DNS-1123 subdomain"])
            .at(10, 24),
        case("user-as-an-ssh-option")
            .edit(&[("node2\n    user: root\n", "node2\n    user: -oProxyCommand=id\n")])
            .says(&["user `-oProxyCommand=id` cannot be given to ssh: it starts with `-`"])
            .at(11, 11),
        case("user-with-a-shell-metacharacter")
            .edit(&[("node2\n    user: root\n", "node2\n    user: root;id\n")])
            .says(&["user `root;id` cannot be given to ssh: it holds a shell metacharacter"])
            .at(11, 11),
        case("s3backupconfig-without-endpoint")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n",
            )])
            .says(&["s3backupconfig has no endpoint"])
            .line(24),
        case("no-etcd-node")
            .edit(&[("role: [etcd]", "role: [worker]"), ("role: [etcd]", "role: [controlplane]"), ("role: [etcd]", "role: [worker]")])
            .says(&["no node has the etcd role"])
            .at(3, 1),
        case("no-nodes-empty-list").edit(&[("nodes:\n", "nodes: []\nformer_nodes:\n")]).says(&["lists no nodes"]).at(3, 1),
        case("no-nodes-key").edit(&[("nodes:\n", "former_nodes:\n")]).says(&["lists no nodes"]),
        case("empty-file").text("").says(&["lists no nodes"]),
        case("user-missing")
            .edit(&[("node2\n    user: root\n", "node2\n")])
            .says(&["node 10.77.0.12 has no user"])
            .line(9),
        case("port-zero")
            .edit(&[("node1\n    user: root\n", "node1\n    user: root\n    port: 0\n")])
            .says(&["`0` is not a valid SSH port"])
            .at(7, 11),
        case("port-70000")
            .edit(&[("node1\n    user: root\n", "node1\n    user: root\n    port: 70000\n")])
            .says(&["`70000` is not a valid SSH port"])
            .at(7, 11),
        case("port-ssh")
            .edit(&[("node1\n    user: root\n", "node1\n    user: root\n    port: ssh\n")])
            .says(&["`ssh` is not a valid SSH port"])
            .at(7, 11),
        case("port-negative")
            .edit(&[("node3\n    user: root\n", "node3\n    user: root\n    port: -22\n")])
            .says(&["`-22` is not a valid SSH port"])
            .at(17, 11),
        case("docker-socket-relative")
            .edit(&[("node2\n    user: root\n", "node2\n    user: root\n    docker_socket: var/run/docker.sock\n")])
            .says(&["docker_socket `var/run/docker.sock` is not an absolute path"])
            .at(12, 20),
        // Every problem is reported at once: the library has both, the pointer is at the first.
        case("two-problems-at-once")
            .edit(&[
                ("node1\n    user: root\n", "node1\n    user: root\n    port: ssh\n"),
                (IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    creation: 5x\n"),
            ])
            .says(&["`ssh` is not a valid SSH port"])
            .at(7, 11)
            .problems(2),
        // --- legacy recurring snapshots: durations ---
        case("creation-unknown-unit")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: 5x\n")])
            .says(&["invalid creation", "unknown unit `x`"])
            .at(23, 15),
        case("creation-negative")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: -5m\n")])
            .says(&["invalid creation", "negative durations are not allowed"])
            .at(23, 15),
        case("retention-zero")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    retention: 0s\n")])
            .says(&["retention must be longer than zero"])
            .at(23, 16),
        case("creation-not-a-duration")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: abc\n")])
            .says(&["invalid creation", "`abc` is not a duration"])
            .at(23, 15),
        case("retention-without-unit")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    retention: 24\n")])
            .says(&["invalid retention", "missing unit"])
            .at(23, 16),
        // --- backup_config ---
        case("backup-retention-negative")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 12\n      retention: -1\n")])
            .says(&["retention must be at least 1, not -1"])
            .at(24, 18),
        case("backup-retention-zero")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 12\n      retention: 0\n")])
            .says(&["retention must be at least 1, not 0"])
            .at(24, 18),
        case("backup-interval-zero")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 0\n      retention: 6\n")])
            .says(&["interval_hours must be at least 1, not 0"])
            .at(23, 23),
        case("backup-interval-too-large")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 5000000000\n")])
            .says(&["interval_hours", "5000000000"])
            .at(23, 23),
        case("backup-timeout-zero")
            .edit(&[(IMAGE, "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      timeout: 0\n")])
            .says(&["backup_config.timeout must be a positive number of seconds"])
            .at(23, 16),
        case("s3backupconfig-without-bucket")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3backupconfig:\n        access_key: a\n        secret_key: b\n        endpoint: 10.77.0.1:9000\n",
            )])
            .says(&["s3backupconfig has no bucket_name"])
            .line(24),
        case("s3backupconfig-endpoint-with-space")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n        endpoint: s3 amazonaws.com\n",
            )])
            .says(&["S3 endpoint `s3 amazonaws.com` contains spaces"])
            .at(25, 19),
        // Valid: both are written, backup_config wins, and the plan says so.
        case("legacy-and-backup-config-valid")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: 5m0s\n    retention: 24h\n    backup_config:\n      interval_hours: 6\n      retention: 3\n",
            )])
            .exit(0)
            .says(&[
                "services.etcd.backup_config overrides the legacy creation=5m0s/retention=24h0m0s: snapshots every 6h, keeping 3.",
            ]),
        // --- keys RKE does not know (RKE and rkectl ignore them) ---
        case("unknown-key-refused-with-strict")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3_backup_config:\n        bucket_name: b\n",
            )])
            .action(&["up", "--strict"])
            .says(&[
                "unknown key `s3_backup_config` in services.etcd.backup_config: rkectl and RKE ignore it",
                "did you mean `s3backupconfig`?",
            ])
            .at(23, 7),
        // Valid without --strict: a warning, at its line, and the plan (with no S3 in it).
        case("unknown-key-warned-without-strict")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3_backup_config:\n        bucket_name: b\n",
            )])
            .exit(0)
            .says(&[
                "unknown key `s3_backup_config` in services.etcd.backup_config: rkectl and RKE ignore it",
                "did you mean `s3backupconfig`?",
            ])
            .at(23, 7),
        // --- YAML merge keys, applied as RKE applies them ---
        // The second node takes the first's keys, hostname_override included.
        case("merge-nodes-share-an-anchor")
            .edit(&[
                ("  - address: 10.77.0.11\n", "  - &node\n    address: 10.77.0.11\n"),
                (
                    "  - address: 10.77.0.12\n    hostname_override: node2\n    user: root\n    role: [etcd]\n",
                    "  - <<: *node\n    address: 10.77.0.12\n",
                ),
            ])
            .says(&["duplicate node name node1 (also nodes[0])"])
            .line(10),
        case("merge-of-a-scalar")
            .edit(&[("node2\n    user: root\n", "node2\n    <<: root\n")])
            .says(&["map merge requires map or sequence of maps as the value"])
            .at(11, 5),
        // --- SSH keys (checked after parsing, before dialing) ---
        case("key-file-missing")
            .keys()
            .edit(&[("node2\n    user: root\n    role: [etcd]\n    ssh_key_path: @SSH_KEY@", "node2\n    user: root\n    role: [etcd]\n    ssh_key_path: @CASE_DIR@/no-such-key")])
            .says(&["no-such-key for node 10.77.0.12 does not exist"])
            .at(13, 19),
        // Root can read any file whatever its mode, so "unreadable" is made of things open()
        // or read() refuse to root too: a directory (EISDIR) and a symlink loop (ELOOP).
        case("key-file-is-a-directory")
            .keys()
            .edit(&[("ssh_key_path: @SSH_KEY@", "ssh_key_path: @CASE_DIR@")])
            .says(&["for node 10.77.0.11 cannot be read"])
            .at(8, 19),
        case("key-file-symlink-loop")
            .keys()
            .edit(&[("node3\n    user: root\n    role: [etcd]\n    ssh_key_path: @SSH_KEY@", "node3\n    user: root\n    role: [etcd]\n    ssh_key_path: @CASE_DIR@/loop")])
            .setup(Setup::SymlinkLoop)
            .says(&["loop for node 10.77.0.13 cannot be read"])
            .at(18, 19),
        case("key-file-top-level-missing")
            .keys()
            .edit(&[
                ("cluster_name: rkectl-lab\n", "cluster_name: rkectl-lab\nssh_key_path: @CASE_DIR@/no-such-key\n"),
                ("    ssh_key_path: @SSH_KEY@\n", ""),
                ("    ssh_key_path: @SSH_KEY@\n", ""),
                ("    ssh_key_path: @SSH_KEY@\n", ""),
            ])
            .says(&["no-such-key for node 10.77.0.11 does not exist"])
            .at(3, 15),
        // A reviewer plans offline on a machine without the keys.
        case("key-file-missing-offline-plan-needs-none")
            .edit(&[("ssh_key_path: @SSH_KEY@", "ssh_key_path: @CASE_DIR@/no-such-key")])
            .offline()
            .exit(0)
            .says(&["Planned offline"]),
        // --- bastion_host, SSH certificates, private registries ---
        case("bastion-without-user")
            .edit(&[("system_images:\n", "bastion_host:\n  address: 10.77.0.14\nsystem_images:\n")])
            .says(&["bastion_host has no user"])
            .at(22, 1),
        case("bastion-port-not-a-port")
            .edit(&[(
                "system_images:\n",
                "bastion_host:\n  address: 10.77.0.14\n  user: root\n  port: twenty-two\nsystem_images:\n",
            )])
            .says(&["`twenty-two` is not a valid SSH port"])
            .at(25, 9),
        case("bastion-address-is-an-option")
            .edit(&[("system_images:\n", "bastion_host:\n  address: -oProxyCommand=sh\n  user: root\nsystem_images:\n")])
            .says(&["`-oProxyCommand=sh` is not a host address"])
            .at(23, 12),
        case("bastion-key-file-missing")
            .keys()
            .edit(&[(
                "system_images:\n",
                "bastion_host:\n  address: 10.77.0.14\n  user: root\n  ssh_key_path: @CASE_DIR@/no-such-key\nsystem_images:\n",
            )])
            .says(&["no-such-key for the bastion host 10.77.0.14 does not exist"])
            .at(25, 17),
        // Settings without an address: no bastion, as in RKE, and a warning that says so.
        case("bastion-without-address-warned")
            .edit(&[("system_images:\n", "bastion_host:\n  user: root\nsystem_images:\n")])
            .exit(0)
            .says(&["bastion_host has settings but no address"])
            .at(22, 1),
        case("ssh-cert-inline-not-a-certificate")
            .edit(&[("ssh_key_path: @SSH_KEY@\n", "ssh_key_path: @SSH_KEY@\n    ssh_cert: ~/.ssh/id_ed25519-cert.pub\n")])
            .says(&["ssh_cert is not an OpenSSH certificate"])
            .at(9, 15),
        case("ssh-cert-file-missing")
            .keys()
            .edit(&[(
                "ssh_key_path: @SSH_KEY@\n",
                "ssh_key_path: @SSH_KEY@\n    ssh_cert_path: @CASE_DIR@/no-such-cert.pub\n",
            )])
            .says(&["no-such-cert.pub for node 10.77.0.11 does not exist"])
            .at(9, 20),
        case("ssh-cert-file-is-a-key")
            .keys()
            .edit(&[("ssh_key_path: @SSH_KEY@\n", "ssh_key_path: @SSH_KEY@\n    ssh_cert_path: @SSH_KEY@\n")])
            .says(&["(the SSH certificate for node 10.77.0.11) is not an OpenSSH certificate"])
            .at(9, 20),
        case("registry-ecr-plugin-for-the-etcd-image")
            .edit(&[(
                "system_images:\n",
                "private_registries:\n  - url: docker.io\n    ecr_credential_plugin:\n      aws_access_key_id: AKIAEXAMPLE\nsystem_images:\n",
            )])
            .says(&["the etcd image rkectl-lab/etcd:v3.4.23 comes from docker.io", "ecr_credential_plugin rkectl cannot use"])
            .at(24, 5),
        // --- secrets next to a problem are masked, whatever their key's exact name ---
        case("redact-registry-aws-secret-access-key")
            .edit(&[(
                "system_images:\n",
                "private_registries:\n  - url: docker.io\n    ecr_credential_plugin:\n      aws_secret_access_key: REGISTRYSECRET1\nsystem_images:\n",
            )])
            .says(&["ecr_credential_plugin rkectl cannot use"])
            .at(24, 5)
            .hides(&["REGISTRYSECRET1"]),
        case("redact-registry-aws-session-token")
            .edit(&[(
                "system_images:\n",
                "private_registries:\n  - url: docker.io\n    ecr_credential_plugin:\n      aws_session_token: REGISTRYTOKEN1\nsystem_images:\n",
            )])
            .says(&["ecr_credential_plugin rkectl cannot use"])
            .at(24, 5)
            .hides(&["REGISTRYTOKEN1"]),
        case("redact-flow-style-s3backupconfig")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3backupconfig: {bucket_name: b, access_key: AKIAFLOWSTYLE1, secret_key: FLOWSECRET1, endpoint: s3 amazonaws.com}\n",
            )])
            .says(&["S3 endpoint `s3 amazonaws.com` contains spaces"])
            .at(23, 103)
            .hides(&["AKIAFLOWSTYLE1", "FLOWSECRET1"]),
        // The warning shows the line of the misspelled key, and so its value.
        case("redact-misspelled-secret-key-warned")
            .edit(&[(
                IMAGE,
                "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n        endpoint: 10.77.0.1:9000\n        secret_kye: MISSPELTSECRET1\n",
            )])
            .exit(0)
            .says(&["unknown key `secret_kye`", "did you mean `secret_key`?"])
            .at(26, 9)
            .hides(&["MISSPELTSECRET1"]),
        case("registry-url-with-scheme-warned")
            .edit(&[(
                "system_images:\n",
                "private_registries:\n  - url: https://registry.example.com\n    user: ci\n    password: hunter22hunter\nsystem_images:\n",
            )])
            .exit(0)
            .says(&["registry url `https://registry.example.com` never matches an image"])
            .at(23, 10),
        case("config-file-missing").missing().says(&["cannot read cluster configuration"]),
        // --- S3 flags ---
        case("s3-without-bucket")
            .action(&["etcd", "snapshot-save", "--name", "bad.db", "--s3"])
            .says(&["--s3 needs a bucket"]),
        case("s3-restore-without-bucket")
            .action(&["etcd", "snapshot-restore", "--name", "base.db", "--s3", "--s3-endpoint", "http://10.77.0.1:9000"])
            .says(&["--s3 needs a bucket"]),
        case("s3-endpoint-without-s3")
            .action(&["etcd", "snapshot-restore", "--name", "base.db", "--s3-endpoint", "http://10.77.0.1:9000"])
            .says(&["S3 flags were given without --s3"]),
        case("s3-bucket-without-s3")
            .action(&["etcd", "snapshot-save", "--name", "bad.db", "--bucket-name", "rkectl-backups"])
            .says(&["S3 flags were given without --s3"]),
        case("s3-folder-without-s3")
            .action(&["etcd", "snapshot-delete", "--name", "base.db", "--folder", "x"])
            .says(&["S3 flags were given without --s3"]),
        // --- the S3 secret key: from a file; a flag's value warns (every local user sees it) ---
        case("secret-key-flag-warned")
            .action(&[
                "etcd", "snapshot-save", "--name", "x.db", "--s3", "--bucket-name", "b", "--access-key", "AKIAWARNED1",
                "--secret-key", "FLAGSECRET1",
            ])
            .exit(0)
            .says(&["--secret-key puts the S3 secret key on the command line", "use --secret-key-file FILE"])
            .hides(&["FLAGSECRET1", "AKIAWARNED1"]),
        case("secret-key-file-read")
            .action(&[
                "etcd", "snapshot-save", "--name", "x.db", "--s3", "--bucket-name", "b", "--access-key", "AKIAFILE1",
                "--secret-key-file", "secret",
            ])
            .setup(Setup::SecretKeyFile)
            .exit(0)
            .says(&["Planned offline"])
            .hides(&["FILESECRET1", "AKIAFILE1", "--secret-key puts"]),
        case("secret-key-file-missing")
            .action(&["etcd", "snapshot-save", "--name", "x.db", "--s3", "--bucket-name", "b", "--secret-key-file", "no-such-secret"])
            .says(&["cannot read --secret-key-file no-such-secret"]),
        case("secret-key-file-and-flag")
            .action(&[
                "etcd", "snapshot-save", "--name", "x.db", "--s3", "--bucket-name", "b", "--secret-key", "FLAGSECRET2",
                "--secret-key-file", "secret",
            ])
            .setup(Setup::SecretKeyFile)
            .says(&["cannot be used with"])
            .hides(&["FLAGSECRET2", "FILESECRET1"]),
        // --- snapshot names ---
        case("name-with-slash")
            .action(&["etcd", "snapshot-delete", "--name", "../etcd-snapshots/base.db"])
            .says(&["invalid snapshot name", "cannot contain `/`"]),
        case("name-with-backslash")
            .action(&["etcd", "snapshot-delete", "--name", "x\\base.db"])
            .says(&["invalid snapshot name", "cannot contain `/`"]),
        case("name-dot-dot")
            .action(&["etcd", "snapshot-restore", "--name", ".."])
            .says(&["invalid snapshot name", "cannot be `.` or `..`"]),
        case("name-with-nul").name_lib("base\0.db").says(&["invalid snapshot name", "control characters"]),
        case("name-with-control-char")
            .action(&["etcd", "snapshot-save", "--name", "bad\x07.db"])
            .says(&["invalid snapshot name `bad?.db`", "control characters"]),
        case("name-with-newline")
            .action(&["etcd", "snapshot-restore", "--name", "base.db\n"])
            .says(&["invalid snapshot name", "control characters"]),
        case("name-300-chars")
            .action(save_300)
            .says(&["invalid snapshot name", "at most 200 bytes long (this one has 300)"]),
        case("name-empty").action(&["etcd", "snapshot-restore", "--name", ""]).says(&["a snapshot name cannot be empty"]),
        // --- other flags ---
        case("prune-retention-zero")
            .action(&["etcd", "snapshot-prune", "--retention", "0s"])
            .says(&["--retention must be longer than zero"]),
        case("prune-retention-bad")
            .action(&["etcd", "snapshot-prune", "--retention", "5x"])
            .says(&["invalid --retention `5x`"]),
        case("prune-keep-zero").action(&["etcd", "snapshot-prune", "--keep", "0"]).says(&["--keep"]),
        case("parallelism-zero").action(&["up", "--parallelism", "0"]).says(&["--parallelism"]),
        // --- saved plans ---
        case("plan-for-another-cluster-yml")
            .apply_plan(PlanFile::ForOtherConfig)
            .says(&["was made for another cluster.yml"]),
        case("plan-newer-format")
            .apply_plan(PlanFile::NewerFormat)
            .says(&["written by another rkectl (plan format 99"]),
        case("plan-older-format")
            .apply_plan(PlanFile::OlderFormat)
            .says(&["written by another rkectl (plan format 1"]),
        case("plan-broken-graph").apply_plan(PlanFile::BrokenGraph).says(&["is not a valid plan"]),
        case("plan-not-json").apply_plan(PlanFile::Garbage).says(&["is not a plan file"]),
        // --- unfinished-apply journals ---
        case("journal-corrupt-middle-line")
            .resume(Journal::CorruptMiddleLine)
            .says(&["is corrupt at line 3"]),
        case("journal-newer-format")
            .resume(Journal::NewerFormat)
            .says(&["written by another rkectl (format 99"]),
        case("journal-older-format")
            .resume(Journal::OlderFormat)
            .says(&["written by another rkectl (format 1,"]),
    ]
}

/// Where a case runs: a folder, the key file base.yml's `@SSH_KEY@` stands for, the
/// cluster.yml template, and extra environment.
struct World<'a> {
    root: PathBuf,
    key: String,
    template: String,
    env: Vec<(&'a str, String)>,
    lab: bool,
}

/// The case's cluster.yml text, or why the case itself is broken.
fn render(template: &str, yml: &Yml, key: &str, dir: &Path) -> Result<Option<String>, String> {
    let text = match yml {
        Yml::Missing => return Ok(None),
        Yml::Text(t) => t.to_string(),
        Yml::Base(edits) => {
            let mut t = template.to_string();
            for (find, replace) in edits.iter() {
                if !t.contains(find) {
                    return Err(format!("edit anchor {find:?} is not in the cluster.yml template"));
                }
                t = t.replacen(find, replace, 1);
            }
            t
        }
    };
    Ok(Some(text.replace(KEY, key).replace(CASE_DIR, &dir.display().to_string())))
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `rkectl ARGS…` in `dir`, with nothing from the caller's environment that could change
/// what it does, and a timeout.
fn rkectl(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Ran {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rkectl"));
    c.args(args)
        .current_dir(dir)
        .env_remove("RKE_CONFIG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("SSH_AUTH_SOCK")
        .env("NO_COLOR", "1")
        .env("RKECTL_KNOWN_HOSTS", dir.join("known_hosts"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run rkectl");
    let start = Instant::now();
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait rkectl") {
            break Some(s);
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// Text with whitespace and miette's gutter removed, so that wrapped diagnostics compare.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// The commands a case runs, in the lab or not.
fn commands(run: &Run, lab: bool, plan_file: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let with = |a: &[&str], extra: &[&str]| a.iter().chain(extra).map(|s| s.to_string()).collect::<Vec<_>>();
    match run {
        Run::Config | Run::Keys if lab => {
            vec![v(&["up", "--yes"]), v(&["etcd", "snapshot-restore", "--name", "base.db", "--yes"])]
        }
        Run::Config => vec![v(&["plan", "up", "--offline"])],
        Run::Keys => vec![v(&["plan", "up"])],
        Run::Offline => vec![v(&["plan", "up", "--offline"])],
        Run::Action(a) if lab => vec![with(a, &["--yes"])],
        Run::Action(a) => vec![with(&["plan"], a).into_iter().chain(v(&["--offline"])).collect()],
        Run::ApplyPlan(_) => vec![v(&["apply", plan_file, "--yes"])],
        Run::Resume(_) => vec![v(&["apply", "--yes"]), v(&["up", "--yes"])],
        Run::SnapshotNameLib(_) => vec![],
    }
}

/// A plan of `cluster.yml` in `dir` as JSON (`rkectl plan up --offline --out`), marked as if
/// it had observed the hosts so that only the property under test can refuse it.
fn offline_plan(dir: &Path, config: &str, env: &[(&str, String)]) -> Result<serde_json::Value, String> {
    let out = dir.join(format!("{config}.plan.json"));
    let r = rkectl(dir, &["plan", "up", "--offline", "--config", config, "--out", &out.display().to_string()], env);
    if r.code != Some(0) {
        return Err(format!("could not make a plan of {config}: {:?}\n{}", r.code, r.stderr));
    }
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    v["plan"]["observed"] = serde_json::json!({"online": {"hosts": {}, "s3": null}});
    Ok(v)
}

/// Prepares what the case needs besides cluster.yml; returns the plan file's name.
fn prepare(case: &Case, dir: &Path, w: &World) -> Result<String, String> {
    if case.setup == Setup::SymlinkLoop {
        std::os::unix::fs::symlink("loop", dir.join("loop")).map_err(|e| e.to_string())?;
    }
    if case.setup == Setup::SecretKeyFile {
        std::fs::write(dir.join("secret"), "FILESECRET1\n").map_err(|e| e.to_string())?;
    }
    let plan_file = "saved.plan".to_string();
    match case.run {
        Run::ApplyPlan(kind) => {
            let text = match kind {
                PlanFile::Garbage => "this is not a plan\n".to_string(),
                PlanFile::ForOtherConfig => {
                    let other = w.template.replacen("cluster_name: rkectl-lab", "cluster_name: another-cluster", 1);
                    let other = render(&other, &Yml::Base(&[]), &w.key, dir)?.unwrap();
                    if !other.contains("another-cluster") {
                        return Err("the template has no `cluster_name: rkectl-lab` to change".into());
                    }
                    std::fs::write(dir.join("other.yml"), other).map_err(|e| e.to_string())?;
                    offline_plan(dir, "other.yml", &w.env)?.to_string()
                }
                PlanFile::NewerFormat => {
                    let mut v = offline_plan(dir, "cluster.yml", &w.env)?;
                    v["plan"]["format"] = 99.into();
                    v.to_string()
                }
                PlanFile::OlderFormat => {
                    let mut v = offline_plan(dir, "cluster.yml", &w.env)?;
                    v["plan"]["format"] = 1.into();
                    v["plan"]["observed"] = serde_json::json!({"offline": false, "hosts": {}, "s3": null});
                    v.to_string()
                }
                PlanFile::BrokenGraph => {
                    let mut v = offline_plan(dir, "cluster.yml", &w.env)?;
                    let steps = v["plan"]["steps"].as_array_mut().ok_or("plan has no steps")?;
                    // The first step is the first host's dial; everything after waits for it.
                    steps.remove(0);
                    v.to_string()
                }
            };
            std::fs::write(dir.join(&plan_file), text).map_err(|e| e.to_string())?;
        }
        Run::Resume(kind) => {
            let v = offline_plan(dir, "cluster.yml", &w.env)?;
            let format = match kind {
                Journal::CorruptMiddleLine => rkectl::plan::FORMAT,
                Journal::NewerFormat => 99,
                Journal::OlderFormat => 1,
            };
            let header = serde_json::json!({
                "type": "header",
                "format": format,
                "rkectl": env!("CARGO_PKG_VERSION"),
                "started_at": "2026-01-01T00:00:00Z",
                "config": "cluster.yml",
                "plan": v["plan"],
            });
            let mut lines = vec![header.to_string()];
            lines.push(r#"{"type":"run-started","at":"2026-01-01T00:00:00Z","resumed":false}"#.into());
            if let Journal::CorruptMiddleLine = kind {
                lines.push("{\"type\":\"started\",\"step\":\u{1}garbage@@".into());
                lines.push(r#"{"type":"run-ended","at":"2026-01-01T00:00:01Z","ok":false}"#.into());
            }
            let text = lines.join("\n") + "\n";
            std::fs::write(dir.join("cluster.rkectl-journal"), text).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(plan_file)
}

/// Library-side checks of a cluster.yml case.
fn check_library(case: &Case, text: &str, fails: &mut Vec<String>) {
    let parsed = rkectl::config::parse(Path::new("cluster.yml"), text.to_string());
    let err = match parsed {
        Err(e) => e,
        Ok(cfg) => match rkectl::config::check_ssh_keys(&cfg) {
            Err(e) => e,
            Ok(()) if case.code == 0 => return check_warning(case, &cfg.warnings, fails),
            Ok(()) => {
                fails.push("library: rkectl::config::parse accepted it (and its SSH keys)".into());
                return;
            }
        },
    };
    if case.code == 0 {
        fails.push(format!("library: refused a valid cluster.yml: {err:?}"));
        return;
    }
    if !matches!(err, ConfigError::Invalid { .. }) {
        fails.push(format!("library: not ConfigError::Invalid: {err}"));
        return;
    }
    let problems = err.problems();
    if problems.len() != case.problems {
        let msgs: Vec<_> = problems.iter().map(|p| format!("{} (line {:?})", p.message, p.line)).collect();
        fails.push(format!("library: {} problems, expected {}: {msgs:?}", problems.len(), case.problems));
    }
    let matching: Vec<_> = problems.iter().filter(|p| case.words.iter().all(|w| p.message.contains(w))).collect();
    let Some(p) = matching.first() else {
        let msgs: Vec<_> = problems.iter().map(|p| &p.message).collect();
        fails.push(format!("library: no problem says {:?}; problems: {msgs:?}", case.words));
        return;
    };
    match case.at {
        Some((line, column)) => {
            if p.line != Some(line) {
                fails.push(format!("library: problem `{}` is at line {:?}, expected {line}", p.message, p.line));
            }
            if let Some(c) = column
                && p.column != Some(c)
            {
                fails.push(format!("library: problem `{}` is at column {:?}, expected {c}", p.message, p.column));
            }
        }
        None => {
            if p.line.is_some() {
                fails.push(format!("library: problem `{}` has line {:?}; the case expects none", p.message, p.line));
            }
        }
    }
}

/// An accepted cluster.yml case with a place (`at`) has a warning there that says its words.
fn check_warning(case: &Case, warnings: &[ConfigProblem], fails: &mut Vec<String>) {
    let Some((line, column)) = case.at else { return };
    let said = |w: &ConfigProblem| format!("{} {}", w.message, w.help.as_deref().unwrap_or(""));
    let Some(w) = warnings.iter().find(|w| case.words.iter().all(|word| said(w).contains(word))) else {
        let all: Vec<_> = warnings.iter().map(said).collect();
        fails.push(format!("library: no warning says {:?}; warnings: {all:?}", case.words));
        return;
    };
    if w.line != Some(line) || column.is_some_and(|c| w.column != Some(c)) {
        fails.push(format!(
            "library: warning `{}` is at {:?}:{:?}, expected {line}:{column:?}",
            w.message, w.line, w.column
        ));
    }
}

/// Runs one case; returns what went wrong with it (empty: it passed), and what each command
/// said, with this run's folders replaced by names, for the golden file of diagnostics.
fn run_case(case: &Case, w: &World) -> (Vec<String>, String) {
    let mut fails = Vec::new();
    let mut said = String::new();
    let dir = w.root.join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    let text = match render(&w.template, &case.yml, &w.key, &dir) {
        Ok(t) => t,
        Err(e) => return (vec![format!("case is broken: {e}")], said),
    };
    if let Some(t) = &text {
        std::fs::write(dir.join("cluster.yml"), t).unwrap();
    }
    if w.lab {
        // The lab's state (its PKI), so that a command that wrongly went ahead would act
        // as it would on the real cluster.
        let _ = std::fs::copy(w.root.join("../cluster.rkectl-state"), dir.join("cluster.rkectl-state"));
        let _ = std::fs::copy(w.root.join("../cluster.rkestate"), dir.join("cluster.rkestate"));
    }
    let plan_file = match prepare(case, &dir, w) {
        Ok(p) => p,
        Err(e) => return (vec![format!("case is broken: {e}")], said),
    };

    // The library.
    if !w.lab {
        match (&case.run, &text) {
            (Run::SnapshotNameLib(name), _) => match rkectl::invocation::snapshot_name(name) {
                Ok(_) => fails.push(format!("library: snapshot name {name:?} accepted")),
                Err(e) => {
                    let m = e.to_string();
                    for word in case.words {
                        if !m.contains(word) {
                            fails.push(format!("library: message {m:?} does not say {word:?}"));
                        }
                    }
                }
            },
            (Run::Config, Some(t)) => check_library(case, t, &mut fails),
            _ => {}
        }
    }

    // The binary.
    for args in commands(&case.run, w.lab, &plan_file) {
        let mut full: Vec<&str> = args.iter().map(String::as_str).collect();
        full.extend(["--config", "cluster.yml"]);
        let r = rkectl(&dir, &full, &w.env);
        let shown = format!("rkectl {}", args.join(" ").escape_debug());
        let anonymous = |t: &str| {
            t.replace(&dir.display().to_string(), "<case>")
                .replace(&w.root.display().to_string(), "<root>")
                .replace(&w.key, "<key>")
        };
        said.push_str(&format!("$ {}\n[exit {:?}]\n{}", anonymous(&shown), r.code, anonymous(&r.stderr)));
        if r.code != Some(case.code) {
            fails.push(format!(
                "{shown}: exit code {:?}, expected {}\n--- stdout\n{}--- stderr\n{}",
                r.code, case.code, r.stdout, r.stderr
            ));
            continue;
        }
        let all = squash(&format!("{}{}", r.stdout, r.stderr));
        // The lab's cluster.yml is laid out its own way: where-words hold for base.yml only.
        for word in case.words.iter().filter(|word| !(w.lab && word.contains(" at line "))) {
            if !all.contains(&squash(word)) {
                fails.push(format!("{shown}: output does not say {word:?}\n--- stderr\n{}", r.stderr));
            }
        }
        for secret in case.hides {
            if r.stdout.contains(secret) || r.stderr.contains(secret) {
                fails.push(format!("{shown}: output shows {secret:?}\n--- stderr\n{}", r.stderr));
            }
        }
        if case.code == 2 && !r.stdout.trim().is_empty() {
            fails.push(format!("{shown}: refused but printed a plan on stdout:\n{}", r.stdout));
        }
        if let (Some((line, column)), false) = (case.at, w.lab) {
            let pointer = match column {
                Some(c) => format!("[cluster.yml:{line}:{c}]"),
                None => format!("[cluster.yml:{line}:"),
            };
            if !all.contains(&pointer) {
                fails.push(format!("{shown}: stderr does not point at {pointer}\n--- stderr\n{}", r.stderr));
            }
        }
    }
    (fails, said)
}

/// Runs every case, then fails listing every case that failed (not just the first); returns
/// every case's diagnostics, in the corpus's order.
fn run_all(cases: &[Case], w: &World) -> String {
    let mut failed = Vec::new();
    let mut transcript = String::new();
    for case in cases {
        let (fails, said) = run_case(case, w);
        if !fails.is_empty() {
            failed.push(format!("== {} ==\n  {}", case.name, fails.join("\n  ").replace('\n', "\n    ")));
        }
        transcript.push_str(&format!("=== {}\n{said}\n", case.name));
    }
    eprintln!("{} cases run, {} failed", cases.len(), failed.len());
    assert!(failed.is_empty(), "{} of {} bad-input cases failed:\n{}", failed.len(), cases.len(), failed.join("\n"));
    transcript
}

#[test]
fn diagnostics_never_show_the_secrets_in_cluster_yml() {
    // Problems on the lines next to an S3 secret key and inside a node with an inline key.
    let yml = "nodes:\n  - address: 10.77.0.11\n    user: root\n    role: [etcd, nonsense]\n    ssh_key: |-\n      -----BEGIN OPENSSH PRIVATE KEY-----\n      SSHKEYBODYb3BlbnNzaC1rZXkt\n      -----END OPENSSH PRIVATE KEY-----\nservices:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        access_key: AKIAVISIBLEACCESS\n        bucket_name: b\n        secret_key: SECRETVISIBLE123\n        endpoint: s3 amazonaws.com\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yml"), yml).unwrap();
    let ran = rkectl(dir.path(), &["plan", "up", "--offline"], &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("nonsense") && all.contains("contains spaces"), "{all}");
    for secret in ["AKIAVISIBLEACCESS", "SECRETVISIBLE123", "SSHKEYBODY", "PRIVATE KEY"] {
        assert!(!all.contains(secret), "{secret} shows:\n{all}");
    }
    // The lines are there, masked: the pointer still lands on the right line.
    assert!(all.contains("secret_key: ****************"), "{all}");
}

#[test]
fn corpus_has_at_least_thirty_distinct_cases() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "case names must be unique");
    assert!(n >= 30, "only {n} cases");
}

#[test]
fn bad_inputs_are_refused_with_located_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id_rsa");
    std::fs::write(&key, "not a real key; nothing is dialed\n").unwrap();
    let w = World {
        root: tmp.path().join("cases"),
        key: key.display().to_string(),
        template: BASE.to_string(),
        env: Vec::new(),
        lab: false,
    };
    // A change in how any refusal reads shows up as a diff for review.
    golden::check("bad-inputs.txt", &run_all(&cases(), &w));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn bad_inputs_change_nothing_in_the_lab() {
    let lab = lab::Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.ok(&["etcd", "snapshot-save", "--name", "base.db", "--yes"]);
    let mut nodes: Vec<&str> =
        lab.env.keys().filter_map(|k| k.strip_prefix("NODE_")).filter(|n| n.starts_with("node")).collect();
    nodes.sort_unstable();
    for n in ["node1", "node2", "node3"] {
        assert!(nodes.contains(&n), "lab has no {n}");
    }
    let before = lab.world_fingerprint(&nodes);
    assert!(before.contains("base.db"), "the fingerprint does not see the snapshot:\n{before}");

    let key = lab.env["SSH_KEY"].clone();
    let template = lab.cluster_text().replace(&key, KEY);
    let w = World {
        root: lab.dir.path().join("cases"),
        key,
        template,
        env: vec![("RKECTL_KNOWN_HOSTS", lab.env["KNOWN_HOSTS"].clone())],
        lab: true,
    };
    let cases: Vec<Case> = cases().into_iter().filter(Case::labs_own).collect();
    eprintln!("running {} cases against the lab's cluster.yml", cases.len());
    // Every case runs (and every failure is listed) before the fingerprint is compared.
    let outcome = std::panic::catch_unwind(|| run_all(&cases, &w));
    let after = lab.world_fingerprint(&nodes);
    if before != after {
        let diff = similar::TextDiff::from_lines(&before, &after);
        let changed: Vec<String> = diff
            .iter_all_changes()
            .filter(|c| c.tag() != similar::ChangeTag::Equal)
            .map(|c| format!("{}{}", if c.tag() == similar::ChangeTag::Delete { "-" } else { "+" }, c))
            .collect();
        panic!("bad inputs changed the lab:\n{}", changed.join(""));
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
