//! Snapshot saves that take long, and saves that stall, against the lab: a database that
//! streams for longer than any fixed command timeout is saved, and a member that stops
//! sending mid-save fails the save with the stall message instead of hanging it, leaving
//! nothing partial behind (on the node or in S3).
//!
//! The node's loopback is slowed with a token bucket (`tc qdisc … tbf`; the lab's kernel
//! has no netem): the helper reaches its own member at the node's address, which Linux
//! routes through `lo`.

mod common;

use common::lab::{Lab, text};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The loopback's rate while slowed, in bytes per second (2 Mbit/s).
const SLOW_RATE: u64 = 250_000;
/// The token bucket's burst: above lo's 64 KiB MTU, or no full-size packet ever passes.
const SLOW_BURST: u64 = 256 * 1024;

/// Slows a node's loopback while alive.
struct SlowLoopback<'a> {
    lab: &'a Lab,
    node: &'static str,
}

impl<'a> SlowLoopback<'a> {
    fn new(lab: &'a Lab, node: &'static str) -> Self {
        let out = lab.lab(&[
            "exec",
            node,
            "tc",
            "qdisc",
            "replace",
            "dev",
            "lo",
            "root",
            "tbf",
            "rate",
            &format!("{}bit", SLOW_RATE * 8),
            "burst",
            &format!("{SLOW_BURST}b"),
            "latency",
            "2s",
        ]);
        assert!(out.status.success(), "cannot slow {node}'s loopback: {}", text(&out));
        SlowLoopback { lab, node }
    }
}

impl Drop for SlowLoopback<'_> {
    fn drop(&mut self) {
        let _ = self.lab.lab(&["exec", self.node, "tc", "qdisc", "del", "dev", "lo", "root"]);
    }
}

/// Unpauses a node's etcd when dropped (a failed assertion must not leave it frozen).
struct Unpause<'a>(&'a Lab, &'static str);

impl Drop for Unpause<'_> {
    fn drop(&mut self) {
        let _ = self.0.lab(&["exec", self.1, "docker", "unpause", "etcd"]);
    }
}

/// TLS flags for the node's own member (the certificates `rkectl up` placed).
fn tls(lab: &Lab, node: &str) -> Vec<String> {
    let cert = format!("/etc/kubernetes/ssl/kube-etcd-{}", lab.addr(node).replace('.', "-"));
    vec![
        "--cacert=/etc/kubernetes/ssl/kube-ca.pem".into(),
        format!("--cert={cert}.pem"),
        format!("--key={cert}-key.pem"),
    ]
}

/// Writes `mib` keys of 1 MiB each through the node's member (base64 of random bytes:
/// incompressible, under etcd's 1.5 MiB request limit).
fn fill(lab: &Lab, node: &str, mib: usize) {
    let script = format!(
        "set -e; head -c 786432 /dev/urandom | base64 -w0 > /tmp/rkectl-value; \
         for i in $(seq 1 {mib}); do ETCDCTL_API=3 etcdctl --endpoints=https://{}:2379 {} put big$i \
         < /tmp/rkectl-value > /dev/null; done; rm -f /tmp/rkectl-value; echo filled",
        lab.addr(node),
        tls(lab, node).join(" ")
    );
    assert!(lab.sh(node, &script).contains("filled"), "cannot fill {node}'s member");
}

/// The size of a file on node1, without logging the question (it is asked many times).
fn quiet_size(path: &str) -> Option<u64> {
    let out = Command::new(common::lab::script()).args(["exec", "node1", "stat", "-c", "%s", path]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn s3_keys(lab: &Lab) -> Vec<String> {
    let out = lab.lab(&["s3", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// A save whose database streams for longer than 30 s (etcdctl's old cut-off) succeeds.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_save_that_streams_for_longer_than_30_s_succeeds() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    // Eight 1 MiB values: a database well over what the slowed link passes in 30 s (checked below).
    fill(&lab, "node1", 8);
    let slowed: Vec<SlowLoopback> =
        ["node1", "node2", "node3"].into_iter().map(|n| SlowLoopback::new(&lab, n)).collect();
    let t = Instant::now();
    let out = lab.rkectl(&["etcd", "snapshot-save", "--name", "slow.db"]);
    let took = t.elapsed();
    drop(slowed);
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    let source = ["node1", "node2", "node3"]
        .into_iter()
        .find(|n| all.contains(&format!("Saving snapshot [slow.db] on host [{}]", lab.addr(n))))
        .unwrap_or_else(|| panic!("which host saved it?\n{all}"));
    let db = lab.snapshot_db(source, "slow.db").len() as u64;
    // The token bucket lets no more than this through in 30 s: the save took longer, by
    // construction, whatever the machine's speed.
    assert!(db > 30 * SLOW_RATE + SLOW_BURST, "a {db}-byte database streams in under 30 s");
    assert!(lab.snapshot_status_ok(source, "slow.db"), "etcdctl snapshot status fails on the saved database");
    for n in ["node1", "node2", "node3"] {
        assert!(lab.snapshot_status_ok(n, "slow.db"), "{n}'s copy");
    }
    println!("MEASURE saving a {db}-byte database at {SLOW_RATE} B/s: {:.1} s", took.as_secs_f64());
}

/// A member frozen mid-save (`docker pause etcd`) stops the stream: the agent gives up
/// after its stall limit (3 s here, given on its command line; 2 min by default) with a
/// message naming the endpoint, and leaves neither partial files nor an S3 object.
/// (etcdctl's gRPC keepalive, 2 s + 6 s, also ends a save from a member frozen whole; the
/// limit is below it so that what is tested is the stall detector, which also catches a
/// member that still answers pings but sends nothing.)
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_stalled_save_fails_with_the_stall_message() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    // Enough to be frozen mid-stream: the member is paused once 2 MiB have arrived.
    fill(&lab, "node1", 4);
    let bin = lab.sh("node1", "ls -d /opt/rke/rkectl/*/rkectl").trim().to_string();
    assert!(bin.ends_with("/rkectl") && !bin.contains('\n'), "rkectl's binary on node1: {bin:?}");
    let bin_dir = bin.trim_end_matches("/rkectl").to_string();
    let dir = "/tmp/rkectl-stall-test";
    let creds = "/tmp/rkectl-stall-s3.json";
    let keys = format!(
        r#"{{"access_key_id":"{}","secret_access_key":"{}"}}"#,
        lab.env["S3_ACCESS_KEY"], lab.env["S3_SECRET_KEY"]
    );
    lab.put("node1", creds, keys.as_bytes());
    let endpoint = format!("https://{}:2379", lab.addr("node1"));
    let mut args: Vec<String> = vec![
        "exec".into(),
        "node1".into(),
        "docker".into(),
        "run".into(),
        "--rm".into(),
        "--name=rkectl-stall-test".into(),
        "--network=host".into(),
        format!("--volume={bin_dir}:{bin_dir}:ro"),
        "--volume=/etc/kubernetes/ssl:/etc/kubernetes/ssl:ro".into(),
        format!("--volume={dir}:{dir}"),
        format!("--volume={creds}:/run/secrets/rkectl-s3.json:ro"),
        "--env=RKECTL_S3_CREDENTIALS_FILE=/run/secrets/rkectl-s3.json".into(),
        format!("--entrypoint={bin}"),
        "rkectl-lab/etcd:v3.4.23".into(),
        "agent".into(),
        "snapshot-save".into(),
        format!("--endpoint={endpoint}"),
        format!("--dir={dir}"),
        "--name=stalled.db".into(),
        "--stall-limit=3s".into(),
        format!("--s3-endpoint={}", lab.env["S3_ENDPOINT"]),
        format!("--bucket={}", lab.env["S3_BUCKET"]),
    ];
    args.extend(tls(&lab, "node1"));
    let _slow = SlowLoopback::new(&lab, "node1");
    let mut agent = Command::new(common::lab::script())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    // Freeze the member once a few MiB have streamed in.
    let part = format!("{dir}/stalled.db.part");
    let started = Instant::now();
    loop {
        let size: u64 = quiet_size(&part).unwrap_or(0);
        if size >= 2 << 20 {
            break;
        }
        assert!(agent.try_wait().unwrap().is_none(), "the save ended before it was paused");
        assert!(started.elapsed() < Duration::from_secs(300), "the save never got going");
        std::thread::sleep(Duration::from_millis(200));
    }
    let unpause = Unpause(&lab, "node1");
    let paused = lab.lab(&["exec", "node1", "docker", "pause", "etcd"]);
    assert!(paused.status.success(), "{}", text(&paused));
    let t = Instant::now();
    // Bounded here, so that a save that hangs fails the test instead of hanging it.
    while agent.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(300) {
            let _ = lab.lab(&["exec", "node1", "docker", "rm", "-f", "rkectl-stall-test"]);
            let _ = agent.kill();
            panic!("the stalled save was still waiting after 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let given_up = t.elapsed();
    drop(unpause);
    let out = agent.wait_with_output().unwrap();
    let said = text(&out);
    println!("MEASURE a save stalled by a frozen member given up after {:.1} s", given_up.as_secs_f64());
    println!("seen: {}", said.lines().rev().find(|l| l.contains("rkectl agent")).unwrap_or_default());
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("etcdctl snapshot save made no progress for 3 s (endpoint {endpoint}")), "{said}");
    assert!(said.contains("RKECTL-PROGRESS "), "no progress was printed before the stall: {said}");
    let left = lab.sh("node1", &format!("ls -A {dir}"));
    assert!(left.trim().is_empty(), "the stalled save left files: {left}");
    let keys = s3_keys(&lab);
    assert!(!keys.iter().any(|k| k.starts_with("stalled.db")), "a partial object is in S3: {keys:?}");
    lab.sh("node1", &format!("rm -rf {dir} {creds}"));
}
