//! Every helper belongs to one invocation, on real nodes (issue 20, items 8 and 9 and the
//! smaller ones on what is left there): a restore runs to the end while a second
//! workstation plans, lists and cleans up in a loop; an apply sweeps what killed runs left
//! (a look's helper, secrets, partial files) and `snapshot-list` shows no partial file; a
//! damaged helper binary of the right size is replaced; a workstation that falls silent
//! loses its node locks after the lease.

mod common;

use common::lab::{Lab, says, text};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn assert_restored(lab: &Lab) {
    for n in NODES {
        assert_eq!(lab.read(n, "before").as_deref(), Some("1"), "{n}");
        assert_eq!(lab.read(n, "after"), None, "{n}");
        let left: Vec<String> = lab.containers(n).into_iter().filter(|c| c != "etcd").collect();
        assert!(left.is_empty(), "{n}: containers left: {left:?}");
    }
}

/// A second workstation: its own folder with copies of cluster.yml and the state beside it.
struct Workstation {
    dir: tempfile::TempDir,
    known_hosts: String,
}

impl Workstation {
    fn beside(lab: &Lab) -> Workstation {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cluster.yml", "cluster.rkestate", "cluster.rkectl-state"] {
            let from = lab.dir.path().join(f);
            if from.exists() {
                std::fs::copy(&from, dir.path().join(f)).unwrap();
            }
        }
        Workstation { dir, known_hosts: lab.env["KNOWN_HOSTS"].clone() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rkectl(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_rkectl"))
            .args(args)
            .current_dir(self.path())
            .env("RKECTL_KNOWN_HOSTS", &self.known_hosts)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("$ (workstation 2) rkectl {}  -> {:?}", args.join(" "), out.status.code());
        out
    }
}

/// Runs `args` in the background; hands each stderr line to `at_line`; returns the exit
/// code and every line.
fn follow(lab: &Lab, args: &[&str], mut at_line: impl FnMut(&str, u32)) -> (Option<i32>, Vec<String>) {
    let mut child = lab.spawn(args);
    let pid = child.id();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
        at_line(&line, pid);
        lines.push(line);
    }
    (child.wait().unwrap().code(), lines)
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_restore_runs_to_the_end_while_another_workstation_plans_lists_and_cleans_up() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let ws = Workstation::beside(&lab);
    let done = AtomicBool::new(false);
    let (restore, looks) = std::thread::scope(|s| {
        let looks = s.spawn(|| {
            let mut runs: Vec<(String, Option<i32>, String)> = Vec::new();
            let commands: [&[&str]; 4] = [
                &["plan", "up"],
                &["plan", "etcd", "snapshot-restore", "--name", "snap.db"],
                &["etcd", "snapshot-list", "--verify"],
                &["cleanup", "--yes"],
            ];
            while !done.load(Ordering::SeqCst) {
                for c in commands {
                    let out = ws.rkectl(c);
                    runs.push((c.join(" "), out.status.code(), text(&out)));
                }
            }
            runs
        });
        // One cleanup for certain while the restore holds the nodes (the loop's may all fall
        // before or after it on a loaded machine): once the first host is being cleaned.
        let mut mid = None;
        let restore = follow(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |line, _| {
            if mid.is_none() && line.contains("Cleaning up host [") {
                let out = ws.rkectl(&["cleanup", "--yes"]);
                mid = Some((out.status.code(), text(&out)));
            }
        });
        done.store(true, Ordering::SeqCst);
        ((restore, mid), looks.join().unwrap())
    });
    let ((code, lines), mid) = restore;
    let (mid_code, mid_said) = mid.expect("the restore cleaned a host");
    assert!(
        mid_code == Some(2) && says(&mid_said, "is being changed by another rkectl apply"),
        "a cleanup in the middle of the restore must wait its turn, exit {mid_code:?}:\n{mid_said}"
    );
    let all = lines.join("\n");
    assert_eq!(code, Some(0), "the restore failed while another workstation looked and cleaned up:\n{all}");
    assert!(all.contains("Finished restoring on all etcd hosts"), "{all}");
    // What the other workstation saw: its looks worked; its cleanup waited its turn.
    let mut cleanups_refused = 0;
    for (cmd, code, said) in &looks {
        if cmd == "cleanup --yes" {
            match code {
                Some(0) => {}
                Some(2) if says(said, "is being changed by another rkectl apply") => cleanups_refused += 1,
                _ => panic!("{cmd} exited {code:?}:\n{said}"),
            }
        } else {
            assert_eq!(*code, Some(0), "{cmd} failed beside the restore:\n{said}");
        }
    }
    assert!(looks.len() >= 4, "the loop ran at least once: {looks:?}");
    eprintln!("cleanups of the loop refused while the restore ran: {cleanups_refused}");
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn an_apply_sweeps_what_killed_runs_left_and_snapshot_list_shows_no_partial_file() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let dead = "00000000000000dd";
    let checker = format!("etcd-checksum-checker-{dead}");
    let left = [
        "/etc/kubernetes/rkectl/etcd-snapshot-once-s3.json",
        "/etc/kubernetes/rkectl/etcd-rolling-snapshots-s3.json",
        "/opt/rke/etcd-snapshots/.rkectl/before-upgrade.rkestate",
        "/opt/rke/etcd-snapshots/snap.db.zip.rkectl-tmp.00aa11bb22cc33dd",
        "/etc/kubernetes/ssl/kube-etcd-10-77-0-11-key.pem.rkectl-tmp.0123456789abcdef",
    ];
    let writing = "/opt/rke/etcd-snapshots/2026-01-01T00:00:00Z_etcd.zip.part";
    lab.sh("node1", "mkdir -p /etc/kubernetes/rkectl /opt/rke/etcd-snapshots/.rkectl");
    for f in left {
        lab.put("node1", f, b"a secret, or half a file");
    }
    lab.sh("node1", &format!("touch -d '2 hours ago' {}", left[3]));
    lab.put("node1", writing, b"being written right now");
    // A checksum checker of a `plan` killed while it ran (its claim on the node is gone).
    let image = "rkectl-lab/etcd:v3.4.23";
    let made =
        lab.sh("node1", &format!("docker create --name {checker} --label io.rkectl.owner={dead} {image} etcdctl version >/dev/null && echo made"));
    assert_eq!(made.trim(), "made");

    let list = lab.ok(&["etcd", "snapshot-list"]);
    assert!(!list.contains("rkectl-tmp") && !list.contains(".part"), "a partial file is no snapshot:\n{list}");

    let out = lab.ok(&["etcd", "snapshot-save", "--name", "later"]);
    assert!(out.contains(&format!("Removed container [{checker}] left by an earlier run")), "{out}");
    for f in left {
        assert!(out.contains(&format!("Removed [{f}] left by an earlier run")), "{f}:\n{out}");
        assert_eq!(lab.sh("node1", &format!("[ -e {f} ] && echo there")), "", "{f} is swept");
    }
    assert_eq!(
        lab.sh("node1", &format!("[ -e {writing} ] && echo there")).trim(),
        "there",
        "a file being written stays"
    );
    assert!(!lab.containers("node1").contains(&checker));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_helper_binary_of_the_right_size_but_other_bytes_is_replaced_on_the_node() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let local = PathBuf::from(env!("CARGO_BIN_EXE_rkectl"));
    let local_sum = String::from_utf8(Command::new("sha256sum").arg(&local).output().unwrap().stdout).unwrap();
    let local_sum = local_sum.split_whitespace().next().unwrap().to_string();
    let bin = lab.sh("node1", "ls -d /opt/rke/rkectl/*/rkectl").trim().to_string();
    assert!(bin.starts_with("/opt/rke/rkectl/"), "{bin}");
    // Same size, other bytes: a disk error, or a hand edit.
    lab.sh(
        "node1",
        &format!("s=$(stat -c %s {bin}); head -c $s /dev/zero > {bin}.new && mv {bin}.new {bin}; chmod 755 {bin}"),
    );
    assert_ne!(lab.sh("node1", &format!("sha256sum {bin}")).split_whitespace().next(), Some(local_sum.as_str()));
    let list = lab.ok(&["etcd", "snapshot-list", "--verify"]);
    assert!(list.contains("snap.db"), "{list}");
    let there = lab.sh("node1", &format!("sha256sum {bin}"));
    assert_eq!(there.split_whitespace().next(), Some(local_sum.as_str()), "the node's binary is rkectl's again");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_workstation_fallen_silent_loses_its_node_locks_after_the_lease() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let ws = Workstation::beside(&lab);
    let mut stopped = None;
    let mut refused_while_stopped = None;
    let mut took_over_after = None;
    // The restore's process is stopped (a laptop closed, a workstation cut off: its SSH
    // sessions stay up on the nodes, and nothing more comes through them).
    let (code, lines) = follow(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l, pid| {
        if stopped.is_none() && l.contains("Verified snapshot") {
            assert!(Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success());
            let since = Instant::now();
            stopped = Some(since);
            let first = ws.rkectl(&["cleanup", "--yes"]);
            refused_while_stopped = Some((first.status.code(), text(&first)));
            // The node lets go once the lease is over; well before sshd would notice.
            while since.elapsed() < Duration::from_secs(150) {
                let again = ws.rkectl(&["cleanup", "--yes"]);
                if again.status.success() {
                    took_over_after = Some(since.elapsed());
                    break;
                }
                std::thread::sleep(Duration::from_secs(5));
            }
            assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
        }
    });
    let all = lines.join("\n");
    assert!(stopped.is_some(), "never reached the stop point:\n{all}");
    assert_ne!(code, Some(0), "{all}");
    let (first_code, first) = refused_while_stopped.unwrap();
    assert_eq!(first_code, Some(2), "{first}");
    let first = first.replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(says(&first, "is being changed by another rkectl apply") && says(&first, "lets go 60 s"), "{first}");
    let after = took_over_after.unwrap_or_else(|| panic!("the silent workstation's locks were never released"));
    eprintln!("the other workstation took the nodes over {} s after the first fell silent", after.as_secs());
    assert!(after >= Duration::from_secs(30), "not before the lease: {after:?}");
    // The first workstation finishes its restore (or runs it again, if it had not begun).
    if lab.dir.path().join("cluster.rkectl-journal").exists() {
        lab.ok(&["apply", "--yes"]);
    } else {
        lab.ok(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
    }
    assert_restored(&lab);
}
