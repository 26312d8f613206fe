//! Driving the lab from tests: the `tests/lab/lab` script and the `rkectl` binary.
//!
//! Lab tests are `#[ignore]`d, so a plain `cargo test` reports them as not run; the test
//! command (`tests/run`) brings the lab up and includes them, and there a lab that is not
//! up fails them. Every test takes the lab's lock for its whole run and starts from
//! `lab reset`, so tests of different binaries never share the nodes at the same time.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A reserved, freshly reset lab and a working folder with a copy of its cluster.yml.
pub struct Lab {
    pub env: BTreeMap<String, String>,
    pub dir: tempfile::TempDir,
    _lock: LabLock,
}

/// How a test holds the lab: its own lock on `tests.lock`, or, when the test process was
/// started under that lock (`flock tests.lock cargo test …`), a lock among its own threads
/// only (taking the file's lock again would wait for the process's own parent forever).
enum LabLock {
    Own(#[allow(dead_code)] File),
    Inherited(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>),
}

impl LabLock {
    fn take(path: &Path) -> LabLock {
        static INHERITED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        // Decided once, before this process opens the file itself.
        if *INHERITED.get_or_init(|| holds_inherited(path)) {
            return LabLock::Inherited(THREADS.lock().unwrap_or_else(|e| e.into_inner()));
        }
        let lock = File::options().create(true).truncate(false).write(true).open(path).expect("lab test lock");
        lock.lock().expect("lab test lock");
        LabLock::Own(lock)
    }
}

/// Whether a descriptor this process inherited already refers to the lock file.
fn holds_inherited(path: &Path) -> bool {
    let Ok(want) = std::fs::canonicalize(path) else { return false };
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == want))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab script.
pub fn script() -> PathBuf {
    repo().join("tests/lab/lab")
}

impl Lab {
    /// The lab, reserved and reset; a lab that is not up fails the test.
    pub fn get() -> Lab {
        let lock_path = Path::new(&std::env::var("RKECTL_LAB_DIR").unwrap_or_else(|_| "/var/lib/rkectl-lab".into()))
            .join("tests.lock");
        let lock = LabLock::take(&lock_path);
        let out = Command::new(script()).arg("status").output().expect("lab status");
        assert!(
            out.status.success(),
            "this test needs the lab, which is not up (tests/run brings it up, or tests/lab/lab up): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let reset = Command::new(script()).arg("reset").output().expect("lab reset");
        assert!(reset.status.success(), "lab reset failed: {}", String::from_utf8_lossy(&reset.stderr));
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = Lab { env, dir, _lock: lock };
        lab.write_cluster_yml(&lab.cluster_yaml(&[("node1", "etcd"), ("node2", "etcd"), ("node3", "etcd")]));
        lab
    }

    /// A cluster.yml for the lab with these nodes and roles (`"etcd"`, `"controlplane,worker"`).
    pub fn cluster_yaml(&self, nodes: &[(&str, &str)]) -> String {
        let mut s = String::from("cluster_name: rkectl-lab\nnodes:\n");
        for (n, roles) in nodes {
            s.push_str(&format!(
                "  - address: {}\n    hostname_override: {n}\n    user: root\n    role: [{roles}]\n    ssh_key_path: {}\n",
                self.addr(n),
                self.env["SSH_KEY"]
            ));
        }
        s.push_str("services:\n  etcd:\n    image: rkectl-lab/etcd:v3.4.23\n");
        s.push_str("system_images:\n  etcd: rkectl-lab/etcd:v3.4.23\n");
        s
    }

    /// The working copy of cluster.yml.
    pub fn cluster_yml(&self) -> PathBuf {
        self.dir.path().join("cluster.yml")
    }

    /// Replaces the working cluster.yml.
    pub fn write_cluster_yml(&self, text: &str) {
        std::fs::write(self.cluster_yml(), text).unwrap();
    }

    /// The working cluster.yml's text.
    pub fn cluster_text(&self) -> String {
        std::fs::read_to_string(self.cluster_yml()).unwrap()
    }

    /// Address of `nodeK`.
    pub fn addr(&self, node: &str) -> String {
        format!("10.77.0.1{}", &node[4..])
    }

    /// RKE's state beside the working cluster.yml (`cluster.rkestate`), as JSON.
    pub fn rkestate(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.rkestate")).expect("cluster.rkestate");
        serde_json::from_str(&text).expect("cluster.rkestate is JSON")
    }

    /// The certificate bundle of RKE's state (`currentState`'s, else `desiredState`'s).
    pub fn bundle(&self) -> serde_json::Map<String, serde_json::Value> {
        let st = self.rkestate();
        for s in ["currentState", "desiredState"] {
            if let Some(b) = st[s]["certificatesBundle"].as_object().filter(|b| !b.is_empty()) {
                return b.clone();
            }
        }
        panic!("cluster.rkestate has no certificates")
    }

    /// `rkectl ARGS…` in the working folder, with the lab's known_hosts.
    pub fn rkectl(&self, args: &[&str]) -> Output {
        self.rkectl_env(args, &[])
    }

    /// `rkectl ARGS…` with extra environment.
    pub fn rkectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rkectl"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("RKECTL_KNOWN_HOSTS", &self.env["KNOWN_HOSTS"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("RKE_CONFIG")
            .env_remove("RKECTL_STATE_PASSPHRASE")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run rkectl");
        log_output(&format!("rkectl {}", args.join(" ")), &out);
        out
    }

    /// `rkectl ARGS…` started in the background, its stderr piped (to watch its log lines).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_rkectl"))
            .args(args)
            .current_dir(self.dir.path())
            .env("RKECTL_KNOWN_HOSTS", &self.env["KNOWN_HOSTS"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rkectl")
    }

    /// `rkectl ARGS…` that must succeed; returns stdout + stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rkectl(args);
        let said = text(&out);
        assert!(out.status.success(), "rkectl {} failed ({:?}):\n{said}", args.join(" "), out.status.code());
        said
    }

    /// S3 flags for the lab's server.
    pub fn s3_flags(&self) -> Vec<String> {
        vec![
            "--s3".into(),
            "--s3-endpoint".into(),
            self.env["S3_ENDPOINT"].clone(),
            "--bucket-name".into(),
            self.env["S3_BUCKET"].clone(),
            "--access-key".into(),
            self.env["S3_ACCESS_KEY"].clone(),
            "--secret-key".into(),
            self.env["S3_SECRET_KEY"].clone(),
        ]
    }

    /// S3 flags for the lab's second server (moto, `S3B_*`).
    pub fn s3b_flags(&self) -> Vec<String> {
        let mut flags = self.s3_flags();
        for (i, key) in [(2, "S3B_ENDPOINT"), (4, "S3B_BUCKET"), (6, "S3B_ACCESS_KEY"), (8, "S3B_SECRET_KEY")] {
            flags[i] = self.env.get(key).unwrap_or_else(|| panic!("lab status prints no {key}")).clone();
        }
        flags
    }

    /// The lab script, e.g. `["exec", "node1", "docker", "ps"]`.
    pub fn lab(&self, args: &[&str]) -> Output {
        let out = Command::new(script())
            .args(args)
            .env("CLUSTER_YML", self.cluster_yml())
            .stdin(Stdio::null())
            .output()
            .expect("run lab");
        // Object bodies are binary; log only what is text.
        if !(args.len() > 1 && args[0] == "s3" && args[1] == "get") {
            log_output(&format!("lab {}", args.join(" ")), &out);
        }
        out
    }

    /// `etcdctl` through the lab (the cluster's client certificate); stdout.
    pub fn etcdctl(&self, node: Option<&str>, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["etcdctl"];
        if let Some(n) = node {
            a.extend(["--node", n]);
        }
        a.extend(args);
        let out = self.lab(&a);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The value of `key` read through `node`'s member.
    pub fn read(&self, node: &str, key: &str) -> Option<String> {
        let out = self
            .etcdctl(Some(node), &["get", key, "--print-value-only"])
            .unwrap_or_else(|e| panic!("get via {node}: {e}"));
        let v = out.trim_end_matches('\n').to_string();
        (!v.is_empty()).then_some(v)
    }

    /// Writes `key` through `node`'s member.
    pub fn write(&self, node: &str, key: &str, value: &str) {
        self.etcdctl(Some(node), &["put", key, value]).unwrap_or_else(|e| panic!("put via {node}: {e}"));
    }

    /// The restore tests' starting point: the etcd plane up, `before=1` in snapshot
    /// `snap.db`, then `after=2` written, which a restore of `snap.db` must take away.
    pub fn up_with_snapshot(&self) {
        self.ok(&["up", "--yes", "--new-pki"]);
        self.write("node1", "before", "1");
        self.ok(&["etcd", "snapshot-save", "--name", "snap.db"]);
        self.write("node2", "after", "2");
    }

    /// A shell command in a node; stdout.
    pub fn sh(&self, node: &str, script: &str) -> String {
        let out = self.lab(&["exec", node, "sh", "-c", script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file of a node.
    pub fn fetch(&self, node: &str, path: &str) -> Vec<u8> {
        let out =
            Command::new(script()).args(["exec", node, "cat", path]).stdin(Stdio::null()).output().expect("lab exec");
        assert!(out.status.success(), "cannot read {path} on {node}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Writes a file on a node (mode 0600).
    pub fn put(&self, node: &str, path: &str, data: &[u8]) {
        use std::io::Write;
        let mut c = Command::new(script())
            .args(["exec", node, "sh", "-c", "umask 077; cat > \"$0\"", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("lab exec");
        c.stdin.take().unwrap().write_all(data).unwrap();
        assert!(c.wait().unwrap().success(), "cannot write {path} on {node}");
    }

    /// The database inside snapshot `name`'s archive on a node (`<name>.zip`).
    pub fn snapshot_db(&self, node: &str, name: &str) -> Vec<u8> {
        let zip = self.fetch(node, &format!("/opt/rke/etcd-snapshots/{name}.zip"));
        let (mut z, c) = rkectl::rke::archive::contents(std::io::Cursor::new(zip), name).expect("a zip archive");
        assert!(c.db, "{name}.zip on {node} has no /backup/{name}");
        let mut db = Vec::new();
        rkectl::rke::archive::read_db(&mut z, name, |b| {
            db.extend_from_slice(b);
            Ok(())
        })
        .expect("readable");
        db
    }

    /// Whether `etcdctl snapshot status` accepts the database inside a node's archive.
    pub fn snapshot_status_ok(&self, node: &str, name: &str) -> bool {
        let db = self.snapshot_db(node, name);
        let path = self.dir.path().join(format!("status-{node}-{name}"));
        std::fs::write(&path, db).unwrap();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"revision\""))
    }

    /// Puts a node's snapshot `from` under the name `to`: a valid archive of another
    /// snapshot, as rke-tools would have written it.
    pub fn repack(&self, node: &str, from: &str, to: &str) {
        let db = self.snapshot_db(node, from);
        let mut w = rkectl::rke::archive::ArchiveWriter::start(Vec::new(), to).unwrap();
        w.write_db(&db).unwrap();
        self.put(node, &format!("/opt/rke/etcd-snapshots/{to}.zip"), &w.finish(None).unwrap());
    }

    /// Names of the containers on a node (all states).
    pub fn containers(&self, node: &str) -> Vec<String> {
        self.sh(node, "docker ps -a --format '{{.Names}}'").lines().map(str::to_string).collect()
    }

    /// A fingerprint of everything rkectl could change on the nodes and in S3: containers
    /// (with ids and states), files under the folders rkectl writes, and bucket objects.
    /// A running etcd rewrites its own files, so its data folder counts by identity (the
    /// inode of `member/`, which a clean or restore replaces), not by content. rkectl's own
    /// binary, copied to `/opt/rke/rkectl/` when a host is first dialed (the observation
    /// before any plan runs it), is not the cluster's: `rkectl cleanup` removes it.
    pub fn world_fingerprint(&self, nodes: &[&str]) -> String {
        let mut s = String::new();
        for n in nodes {
            s.push_str(&format!("== {n}\n"));
            s.push_str(&self.sh(
                n,
                "docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.State}}' | sort; \
                 stat -c 'etcd data %i' /var/lib/etcd/member 2>/dev/null; \
                 for d in /opt/rke /etc/kubernetes /var/lib/rancher; do \
                   [ -d $d ] && find $d -path /opt/rke/rkectl -prune -o -type f -exec sha256sum {} + | sort; done",
            ));
        }
        let ls = self.lab(&["s3", "ls"]);
        s.push_str("== s3\n");
        s.push_str(&String::from_utf8_lossy(&ls.stdout));
        s
    }
}

/// stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether `text` says `phrase`, however miette wrapped it: whitespace and the diagnostic's
/// gutter are ignored on both sides, since where a line breaks depends on what else it holds.
pub fn says(text: &str, phrase: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    squash(text).contains(&squash(phrase))
}

fn log_output(what: &str, out: &Output) {
    eprintln!("$ {what}  -> {:?}", out.status.code());
    let t = text(out);
    let lines: Vec<&str> = t.lines().collect();
    let start = lines.len().saturating_sub(40);
    for l in &lines[start..] {
        eprintln!("  | {l}");
    }
}

/// The value of the line `{"<key>": …}` of a command's `--json` stream (stdout).
pub fn json_line(out: &Output, key: &str) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get(key).cloned())
        .unwrap_or_else(|| panic!("no {key:?} line in the --json output:\n{}", text(out)))
}
