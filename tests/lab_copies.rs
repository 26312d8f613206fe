//! Lab: snapshot bytes go from host to host, not through the workstation.
//!
//! What crosses the workstation is measured independently of rkectl's own count: the byte
//! counters of the lab bridge's own port on this machine (traffic between this machine and
//! the nodes passes there; traffic between two nodes is forwarded by the bridge and never
//! does).

mod common;

use common::lab::{Lab, json_line, text};

/// A save of a few MiB copied to 2 hosts and a restore that distributes it to 2 hosts may
/// move this much through the workstation: SSH, Docker's API and the checks, no snapshot.
const WORKSTATION_LIMIT: u64 = 1_000_000;

/// The bytes received plus sent by this machine's port on the lab network.
fn workstation_bytes(lab: &Lab) -> u64 {
    let gateway = lab.env.get("NET_GATEWAY").cloned().unwrap_or_else(|| "10.77.0.1".into());
    let out = std::process::Command::new("ip").args(["-o", "-4", "addr", "show"]).output().expect("ip addr");
    let listing = String::from_utf8_lossy(&out.stdout);
    let dev = listing
        .lines()
        .find(|l| l.contains(&format!(" {gateway}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no interface holds {gateway}:\n{listing}"))
        .to_string();
    let read = |what: &str| -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{what}")).unwrap().trim().parse().unwrap()
    };
    read("rx_bytes") + read("tx_bytes")
}

/// Writes `mib` keys of 1 MiB of incompressible text through node1's member.
fn fill(lab: &Lab, mib: usize) {
    let cert = format!("/etc/kubernetes/ssl/kube-etcd-{}", lab.addr("node1").replace('.', "-"));
    let script = format!(
        "set -e; head -c 786432 /dev/urandom | base64 -w0 > /tmp/rkectl-value; \
         for i in $(seq 1 {mib}); do ETCDCTL_API=3 etcdctl --endpoints=https://{}:2379 \
         --cacert=/etc/kubernetes/ssl/kube-ca.pem --cert={cert}.pem --key={cert}-key.pem put big$i \
         < /tmp/rkectl-value > /dev/null; done; rm -f /tmp/rkectl-value; echo filled",
        lab.addr("node1"),
    );
    assert!(lab.sh("node1", &script).contains("filled"), "cannot fill node1's member");
}

fn size_on(lab: &Lab, node: &str, path: &str) -> u64 {
    lab.sh(node, &format!("stat -c %s {path}")).trim().parse().expect("a size")
}

/// The `traffic` of the `--json` result.
fn traffic(out: &std::process::Output) -> (u64, u64) {
    let result = json_line(out, "result");
    let t = &result["traffic"];
    (t["host_to_host_bytes"].as_u64().unwrap(), t["workstation_bytes"].as_u64().unwrap())
}

#[test]
#[ignore = "needs the lab (tests/run brings it up)"]
fn a_save_and_a_restore_move_snapshot_bytes_between_hosts_not_through_the_workstation() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    fill(&lab, 6);
    lab.write("node1", "/drill/kept", "before");

    // The counter sees what crosses this machine: one read of a file over SSH counts.
    let probe = "/var/lib/rkectl-probe";
    lab.sh("node1", &format!("head -c 3000000 /dev/urandom > {probe}"));
    let before = workstation_bytes(&lab);
    let ssh = std::process::Command::new("ssh")
        .args(["-i", &lab.env["SSH_KEY"], "-o", &format!("UserKnownHostsFile={}", lab.env["KNOWN_HOSTS"])])
        .args(["-o", "BatchMode=yes", &format!("root@{}", lab.addr("node1")), "cat", probe])
        .output()
        .expect("ssh");
    assert_eq!(ssh.stdout.len(), 3_000_000, "ssh cat: {}", String::from_utf8_lossy(&ssh.stderr));
    assert!(workstation_bytes(&lab) - before >= 3_000_000, "the bridge counters do not see SSH traffic");
    lab.sh("node1", &format!("rm -f {probe}"));

    let before = workstation_bytes(&lab);
    let out = lab.rkectl(&["etcd", "snapshot-save", "--name", "copies", "--yes", "--json"]);
    let moved = workstation_bytes(&lab) - before;
    assert!(out.status.success(), "save failed:\n{}", text(&out));
    let file = "/opt/rke/etcd-snapshots/copies.zip";
    let size = size_on(&lab, "node1", file);
    assert!(size > 4_000_000, "the snapshot is too small to tell the paths apart: {size} bytes");
    for n in ["node2", "node3"] {
        assert_eq!(size_on(&lab, n, file), size, "{n}'s copy");
    }
    let (direct, through) = traffic(&out);
    assert_eq!((direct, through), (2 * size, 0), "rkectl's count of the save's copies:\n{}", text(&out));
    assert!(
        moved < WORKSTATION_LIMIT,
        "the save moved {moved} bytes through the workstation (snapshot: {size} bytes, copied to 2 hosts)"
    );
    eprintln!("save: snapshot {size} bytes, 2 copies, {moved} bytes through the workstation");

    // Only node1 keeps the snapshot: the restore gives the others a copy.
    for n in ["node2", "node3"] {
        lab.sh(n, &format!("rm -f {file} /opt/rke/etcd-snapshots/.rkectl/copies.json"));
    }
    lab.write("node1", "/drill/kept", "after");
    let before = workstation_bytes(&lab);
    // -q: the JSON stream stays whole; stderr says nothing unless something is wrong.
    let out = lab.rkectl(&["-q", "etcd", "snapshot-restore", "--name", "copies", "--yes", "--json"]);
    let moved = workstation_bytes(&lab) - before;
    assert!(out.status.success(), "restore failed:\n{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("INFO["), "-q printed INFO lines:\n{stderr}");
    let (direct, through) = traffic(&out);
    assert_eq!((direct, through), (2 * size, 0), "rkectl's count of the restore's copies:\n{}", text(&out));
    assert!(
        moved < WORKSTATION_LIMIT,
        "the restore moved {moved} bytes through the workstation (snapshot: {size} bytes, copied to 2 hosts)"
    );
    eprintln!("restore: snapshot {size} bytes, 2 copies, {moved} bytes through the workstation");
    for n in ["node1", "node2", "node3"] {
        assert_eq!(lab.read(n, "/drill/kept").as_deref(), Some("before"), "{n} after the restore");
        let left = lab.containers(n);
        assert!(!left.iter().any(|c| c.contains("serve-snapshot") || c.contains("fetch-snapshot")), "{n}: {left:?}");
    }
}
