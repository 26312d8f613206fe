//! Faults in the lab: hosts lost before and during an apply, a Docker daemon gone, S3 down,
//! a full snapshot folder, a corrupted copy, a cut SSH link, a second apply, a changed host
//! key. In every case: nothing destructive before pre-flight passed, the error names host
//! and cause, no temporary container is left, `rkectl apply` finishes once the fault is
//! fixed, and no data is lost.

mod common;

use common::lab::{Lab, says, text};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn assert_restored(lab: &Lab) {
    for n in NODES {
        assert_eq!(lab.read(n, "before").as_deref(), Some("1"), "{n}");
        assert_eq!(lab.read(n, "after"), None, "{n}");
    }
    assert_no_temporaries(lab);
}

fn assert_no_temporaries(lab: &Lab) {
    for n in NODES {
        let left: Vec<String> =
            lab.containers(n).into_iter().filter(|c| rkectl::etcd::names::TEMPORARY.contains(&c.as_str())).collect();
        assert!(left.is_empty(), "{n}: temporary containers left: {left:?}");
    }
}

/// Starts an rkectl command; calls `at_line` for each stderr line until it returns true.
fn run_until(lab: &Lab, args: &[&str], mut at_line: impl FnMut(&str) -> bool) -> (Child, Vec<String>) {
    let mut child = lab.spawn(args);
    let mut lines = Vec::new();
    let err = BufReader::new(child.stderr.take().unwrap());
    let mut reader = err.lines();
    for line in reader.by_ref() {
        let line = line.unwrap();
        lines.push(line.clone());
        if at_line(&line) {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    let rest = std::thread::spawn(move || reader.map_while(Result::ok).collect::<Vec<_>>());
    let status = child.wait().unwrap();
    lines.extend(rest.join().unwrap());
    lines.push(format!("exit: {:?}", status.code()));
    (child, lines)
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_node_lost_in_the_middle_of_a_restore_is_finished_after_it_returns() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let node3 = lab.addr("node3");
    let (_, lines) = run_until(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l| {
        if l.contains(&format!("Successfully cleaned up host [{node3}]")) {
            let out = lab.lab(&["stop", "node3", "--kill"]);
            assert!(out.status.success());
        }
        false
    });
    let all = lines.join("\n");
    assert!(all.contains("exit: Some(1)"), "{all}");
    assert!(all.contains(&format!("on host {node3} failed")), "the error names the host:\n{all}");
    assert!(lab.lab(&["start", "node3"]).status.success());
    let out = lab.ok(&["apply", "--yes"]);
    assert!(out.contains("Resuming") && out.contains("Finished restoring on all etcd hosts"), "{out}");
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_stopped_docker_daemon_is_named_and_nothing_changes() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let before = lab.world_fingerprint(&NODES);
    // The node's dockerd is its PID 1; taking its socket away is what a stopped daemon looks
    // like to a client (connection refused at /var/run/docker.sock).
    lab.sh("node2", "mv /var/run/docker.sock /var/run/docker.sock.off");
    let out = lab.rkectl(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
    lab.sh("node2", "mv /var/run/docker.sock.off /var/run/docker.sock");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&lab.addr("node2")) && t.to_lowercase().contains("docker"), "{t}");
    assert_eq!(lab.world_fingerprint(&NODES), before);
    let out = lab.ok(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
    assert!(out.contains("Finished restoring"), "{out}");
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn s3_down_is_refused_before_anything_changes() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    let before = lab.world_fingerprint(&NODES);
    assert!(lab.lab(&["s3", "stop"]).status.success());
    let mut args: Vec<String> = ["etcd", "snapshot-save", "--name", "x.db"].iter().map(|s| s.to_string()).collect();
    args.extend(lab.s3_flags());
    let out = lab.rkectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(lab.lab(&["s3", "start"]).status.success());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&lab.env["S3_ENDPOINT"]) && t.to_lowercase().contains("reach"), "{t}");
    assert_eq!(lab.world_fingerprint(&NODES), before);
    lab.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_full_snapshot_folder_fails_the_copy_cleanly_and_apply_finishes_after_it_is_fixed() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    // Incompressible data, so that even the archive is larger than the folder.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:x}", x & 0xf)
        })
        .collect();
    lab.write("node1", "k", &noise);
    lab.sh("node2", "mkdir -p /opt/rke/etcd-snapshots && mount -t tmpfs -o size=12k tmpfs /opt/rke/etcd-snapshots");
    let out = lab.rkectl(&["etcd", "snapshot-save", "--name", "full.db", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&lab.addr("node2")) && t.contains("fetch-snapshot"), "{t}");
    assert!(t.to_lowercase().contains("no space"), "the cause is named: {t}");
    let left = lab.sh("node2", "ls -A /opt/rke/etcd-snapshots");
    assert!(!left.contains("full.db"), "a partial copy was left: {left}");
    assert_no_temporaries(&lab);
    lab.sh("node2", "umount /opt/rke/etcd-snapshots");
    let out = lab.ok(&["apply", "--yes"]);
    assert!(out.contains("Finished saving snapshot [full.db]"), "{out}");
    let sums: Vec<String> = NODES
        .iter()
        .map(|n| lab.sh(n, "sha256sum /opt/rke/etcd-snapshots/full.db.zip | cut -d' ' -f1").trim().to_string())
        .collect();
    assert!(!sums[0].is_empty() && sums.iter().all(|s| s == &sums[0]), "{sums:?}");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_corrupted_copy_is_replaced_from_a_good_one_before_the_restore() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    // Sixteen bytes, not one: a single changed byte can land in the extra bits of a deflate
    // distance that points at zeros either way, and the archive then still holds the same
    // database (seen in the lab: the copy differed as a file and passed every check).
    lab.sh(
        "node3",
        "printf 'XXXXXXXXXXXXXXXX' | dd of=/opt/rke/etcd-snapshots/snap.db.zip bs=1 seek=200 conv=notrunc 2>/dev/null",
    );
    let plan = lab.ok(&["plan", "etcd", "snapshot-restore", "--name", "snap.db"]);
    assert!(plan.contains("CORRUPT") && plan.contains(&format!("fetch-snapshot     {}", lab.addr("node3"))), "{plan}");
    lab.ok(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn an_ssh_connection_cut_once_does_not_fail_an_apply() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let node2 = lab.addr("node2");
    let mut cut = false;
    let (_, lines) = run_until(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l| {
        if !cut && l.contains(&format!("Restoring [snap.db] snapshot on etcd host [{node2}]")) {
            // Kill the SSH master connection to node2 (what a dropped link does to it).
            let pattern = format!("ssh .*-M .*{}", node2.replace('.', "\\."));
            let k = Command::new("pkill").args(["-9", "-f", &pattern]).status().unwrap();
            assert!(k.success(), "no SSH master to {node2} to kill");
            cut = true;
        }
        false
    });
    let all = lines.join("\n");
    assert!(cut, "the cut point was never reached:\n{all}");
    assert!(all.contains("exit: Some(0)"), "{all}");
    assert!(all.contains("retrying"), "the cut was retried:\n{all}");
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_second_apply_is_refused_and_a_killed_ones_lock_is_taken_over() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let mut second = None;
    let (_, lines) = run_until(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l| {
        if second.is_none() && l.contains("Cleaning up host") {
            second = Some(lab.rkectl(&["apply", "--yes"]));
        }
        false
    });
    assert!(lines.join("\n").contains("exit: Some(0)"));
    let second = second.expect("second apply ran");
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let t = text(&second);
    assert!(t.contains("holds the lock") && t.contains("pid ") && t.contains("since"), "{t}");

    // A killed apply: its lock record stays, the lock itself is free; the next apply says so.
    let (mut child, mut lines) = (None, Vec::new());
    {
        let mut c = lab.spawn(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
        let err = BufReader::new(c.stderr.take().unwrap());
        for l in err.lines().map_while(Result::ok) {
            let stop = l.contains("Successfully cleaned up host");
            lines.push(l);
            if stop {
                c.kill().unwrap();
                break;
            }
        }
        let st = c.wait().unwrap();
        lines.push(format!("exit: {:?}", st.code()));
        child.replace(c);
    }
    drop(child);
    assert!(lines.last().is_some_and(|l| l != "exit: Some(0)"), "{lines:?}");
    let record = std::fs::read_to_string(lab.dir.path().join("cluster.rkectl-lock")).unwrap();
    assert!(record.contains("\"pid\""), "the killed apply's record: {record}");
    let out = lab.ok(&["apply", "--yes"]);
    assert!(out.contains("ended without releasing the lock; taking it over"), "{out}\n(lock record: {record})");
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn ctrl_c_before_any_step_runs_ends_the_command_at_once_and_releases_the_lock() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    // A fourth etcd node at an address nobody answers on (in the lab's network): the
    // pre-flight waits there for seconds, which is when the signal comes.
    let right = lab.cluster_text();
    let mut yaml = right.clone();
    let silent = "  - address: 10.77.0.99\n    hostname_override: gone\n    user: root\n    role: [etcd]\n";
    yaml = yaml.replacen("nodes:\n", &format!("nodes:\n{silent}"), 1);
    lab.write_cluster_yml(&yaml);
    let before = lab.world_fingerprint(&NODES);
    let mut c = lab.spawn(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]);
    let lock = lab.dir.path().join("cluster.rkectl-lock");
    let pid = format!("\"pid\":{}", c.id());
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|r| r.replace(' ', "").contains(&pid)) {
        assert!(start.elapsed().as_secs() < 30, "the lock was never taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &c.id().to_string()]).status().unwrap().success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut said).unwrap();
    let st = c.wait().unwrap();
    assert_eq!(st.code(), Some(130), "{said}");
    assert!(says(&said, "interrupted before any step ran: nothing was changed on any host"), "{said}");
    assert!(start.elapsed().as_secs() < 20, "it ended at once, not after the dial's timeout: {said}");
    assert!(!std::fs::read_to_string(&lock).unwrap().contains(&pid), "the lock was released");
    assert_eq!(lab.world_fingerprint(&NODES), before, "nothing changed");
    // The next command finds no lock left behind.
    lab.write_cluster_yml(&right);
    let out = lab.rkectl(&["etcd", "snapshot-list"]);
    assert!(!text(&out).contains("ended without releasing the lock"), "{}", text(&out));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn ctrl_c_lets_running_steps_finish_and_apply_finishes_the_rest() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    lab.write("node1", "after", "2");
    let (mut c, mut lines) = (lab.spawn(&["etcd", "snapshot-restore", "--name", "snap.db", "--yes"]), Vec::new());
    let err = BufReader::new(c.stderr.take().unwrap());
    let mut sent = false;
    for l in err.lines().map_while(Result::ok) {
        if !sent && l.contains("Cleaning up host") {
            let st = Command::new("kill").args(["-INT", &c.id().to_string()]).status().unwrap();
            assert!(st.success());
            sent = true;
        }
        lines.push(l);
    }
    let st = c.wait().unwrap();
    let all = lines.join("\n");
    assert!(sent, "{all}");
    assert_eq!(st.code(), Some(130), "{all}");
    assert!(all.contains("Interrupted: no new step starts"), "{all}");
    // Every stamp, INFO, WARN or ERRO, reads on from the one before it.
    let stamps: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.get(5..9).filter(|_| l.get(4..5) == Some("[")).and_then(|n| n.parse().ok()))
        .collect();
    assert!(stamps.len() > 3 && stamps.windows(2).all(|w| w[0] <= w[1]), "stamps go backwards: {stamps:?}\n{all}");
    let flat = all.replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    // The message names the exact command that finishes the job: no terminal here, so
    // with --yes. It is run as printed.
    let finish = flat.split("run `").nth(1).and_then(|t| t.split("` to finish it").next()).expect("a command");
    assert_eq!(finish, "rkectl apply --yes", "{all}");
    // No helper container is left running, and the journal lets apply finish the restore.
    for n in NODES {
        let left: Vec<String> = lab.containers(n).into_iter().filter(|c| c != "etcd").collect();
        assert!(left.iter().all(|c| c == "etcd-rolling-snapshots"), "{n}: {left:?}");
    }
    assert!(lab.dir.path().join("cluster.rkectl-journal").exists());
    // A plan half-way through the restore would show a new, empty cluster: refused, naming
    // the unfinished restore and how to finish it.
    let out = lab.rkectl(&["plan", "up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(says(&text(&out), "an unfinished restore") && says(&text(&out), "run `rkectl apply`"), "{}", text(&out));
    let args: Vec<&str> = finish.split_whitespace().skip(1).collect();
    lab.ok(&args);
    assert_restored(&lab);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn two_workstations_never_act_on_the_same_nodes_at_once() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    // A second workstation: its own copy of cluster.yml and the state beside it, so its
    // local lock file is another file; only the nodes are shared.
    let ws = tempfile::tempdir().unwrap();
    for f in ["cluster.yml", "cluster.rkestate", "cluster.rkectl-state"] {
        let from = lab.dir.path().join(f);
        if from.exists() {
            std::fs::copy(&from, ws.path().join(f)).unwrap();
        }
    }
    let other = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rkectl"))
            .args(args)
            .current_dir(ws.path())
            .env("RKECTL_KNOWN_HOSTS", &lab.env["KNOWN_HOSTS"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let mut second = None;
    let (_, lines) = run_until(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l| {
        if second.is_none() && l.contains("Cleaning up host") {
            second = Some(other(&["etcd", "snapshot-save", "--name", "other.db", "--yes"]));
        }
        false
    });
    assert!(lines.join("\n").contains("exit: Some(0)"), "{lines:?}");
    let second = second.expect("the second workstation ran");
    let t = text(&second);
    assert_eq!(second.status.code(), Some(2), "{t}");
    assert!(says(&t, "is being changed by another rkectl apply"), "{t}");
    assert!(t.contains("rkectl etcd-snapshot-restore") && t.contains("pid "), "{t}");
    for n in NODES {
        assert!(!lab.sh(n, "ls /opt/rke/etcd-snapshots").contains("other.db"), "{n}");
    }
    assert_restored(&lab);
    // Once the first apply is done its node locks are gone with its sessions.
    let again = other(&["etcd", "snapshot-save", "--name", "other.db", "--yes"]);
    assert!(again.status.success(), "{}", text(&again));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_changed_host_key_stops_the_apply_with_a_clear_message() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    let known = std::fs::read_to_string(&lab.env["KNOWN_HOSTS"]).unwrap();
    // Replace node2's keys with another key of the same types.
    let other = lab.dir.path().join("other_host_key");
    Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).status().unwrap();
    let fake_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fake_key: Vec<&str> = fake_key.split_whitespace().collect();
    let node2 = lab.addr("node2");
    let mut changed: Vec<String> =
        known.lines().filter(|l| !l.starts_with(&format!("{node2} "))).map(str::to_string).collect();
    changed.push(format!("{node2} {} {}", fake_key[0], fake_key[1]));
    let kh = lab.dir.path().join("known_hosts");
    std::fs::write(&kh, changed.join("\n") + "\n").unwrap();
    let before = lab.world_fingerprint(&NODES);
    let out = lab.rkectl_env(
        &["etcd", "snapshot-save", "--name", "x.db", "--yes"],
        &[("RKECTL_KNOWN_HOSTS", kh.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out).to_lowercase();
    assert!(t.contains(&node2) && t.contains("host key"), "{t}");
    assert_eq!(lab.world_fingerprint(&NODES), before);
}

/// The cluster changed but rkectl's state file cannot be written afterwards: that is a failed
/// apply (exit 1, naming the file), never "refused, nothing changed" (exit 2), and `rkectl
/// apply` records the state once the cause is fixed.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_state_file_that_cannot_be_written_after_a_restore_fails_the_apply() {
    let lab = Lab::get();
    lab.up_with_snapshot();
    let state = lab.dir.path().join("cluster.rkectl-state");
    let mut blocked = false;
    let (_, lines) = run_until(&lab, &["etcd", "snapshot-restore", "--name", "snap.db", "--yes"], |l| {
        if !blocked && l.contains("Cleaning up host") {
            // A folder where the file goes: the final rename over it fails.
            let _ = std::fs::remove_file(&state);
            std::fs::create_dir_all(state.join("in-the-way")).unwrap();
            blocked = true;
        }
        false
    });
    let all = lines.join("\n");
    assert!(blocked, "{all}");
    assert_eq!(lines.last().map(String::as_str), Some("exit: Some(1)"), "{all}");
    let flat = all.replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("could not be written") && flat.contains("cluster.rkectl-state"), "{all}");
    assert_restored(&lab);
    std::fs::remove_dir_all(&state).unwrap();
    lab.ok(&["apply", "--yes"]);
    let saved = std::fs::read_to_string(&state).expect("the state is recorded by the second apply");
    assert!(saved.contains("etcd-node1"), "{saved}");
}
