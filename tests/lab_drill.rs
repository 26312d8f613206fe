//! Lab: `rkectl etcd snapshot-drill` proves that a snapshot restores and reports what is
//! in it, and touches nothing of the cluster while it does.

mod common;

use common::lab::{Lab, json_line, text};

/// The `drill-report` event of a `--json` stream.
fn drill_event(out: &std::process::Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("event").cloned())
        .find(|e| e["event"] == "drill-report")
        .unwrap_or_else(|| panic!("no drill-report event:\n{}", text(out)))
}

#[test]
#[ignore = "needs the lab (tests/run brings it up)"]
fn a_drill_reports_the_keys_of_the_snapshot_and_changes_nothing() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "/registry/namespaces/default", "ns");
    lab.write("node1", "/registry/secrets/default/db-password", "s1");
    lab.write("node1", "/registry/pods/default/web-1", "p1");
    lab.write("node1", "/registry/cert-manager.io/certificates/default/web", "c1");
    lab.write("node1", "/app/config", "v1");
    lab.ok(&["etcd", "snapshot-save", "--name", "drill.db", "--yes"]);
    // After the snapshot: the live cluster has one secret more than the snapshot.
    lab.write("node1", "/registry/secrets/default/api-token", "s2");
    // node3 drills without its own copy: it gets one staged, and it goes afterwards.
    lab.sh("node3", "rm -f /opt/rke/etcd-snapshots/drill.db.zip /opt/rke/etcd-snapshots/.rkectl/drill.db.json");

    let nodes = ["node1", "node2", "node3"];
    let before = lab.world_fingerprint(&nodes);
    let plan = lab.ok(&["plan", "etcd", "snapshot-drill", "--name", "drill.db", "--host", &lab.addr("node3")]);
    assert!(plan.contains("drill-snapshot") && plan.contains(&lab.addr("node3")), "{plan}");
    let out = lab.rkectl(&[
        "etcd",
        "snapshot-drill",
        "--name",
        "drill.db",
        "--host",
        &lab.addr("node3"),
        "--compare-live",
        "--json",
    ]);
    assert!(out.status.success(), "drill failed:\n{}", text(&out));
    assert_eq!(json_line(&out, "result")["exit"], 0);
    let event = drill_event(&out);
    assert_eq!(event["origin"], format!("a copy from host {}", lab.addr("node1")), "{event:#}");
    let r = event["report"].clone();
    let restored = &r["restored"]["by_resource"];
    assert_eq!(restored["namespaces"], 1, "{r:#}");
    assert_eq!(restored["secrets"], 1, "{r:#}");
    assert_eq!(restored["pods"], 1, "{r:#}");
    assert_eq!(restored["cert-manager.io/certificates"], 1, "{r:#}");
    assert!(restored["(not kubernetes)"].as_u64().unwrap() >= 1, "{r:#}");
    assert_eq!(r["live"]["by_resource"]["secrets"], 2, "the live count: {r:#}");
    assert!(r["restored"]["revision"].as_i64().unwrap() > 0 && r["hash"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["newest"]["key"], "/app/config", "{r:#}");
    assert_eq!(r["snapshot"]["name"], "drill.db");
    assert!(r["snapshot"]["checksum"].as_str().unwrap().starts_with("blake3:"));
    // A drill uploads nothing and checks one copy: it does not say `uploaded: false`.
    assert!(r["snapshot"].get("uploaded").is_none() && r["snapshot"].get("identical_everywhere").is_none(), "{r:#}");
    eprintln!("drill: restore {} ms, drill {} ms", r["restore_millis"], r["total_millis"]);

    let after = lab.world_fingerprint(&nodes);
    assert_eq!(before, after, "the drill changed the cluster");
    for n in nodes {
        let left = lab.containers(n);
        assert!(!left.iter().any(|c| c.contains("drill") || c.contains("snapshot")), "{n}: {left:?}");
    }
    // The member kept its data: the key written after the snapshot is still there.
    assert_eq!(lab.read("node1", "/registry/secrets/default/api-token").as_deref(), Some("s2"));

    // The text report, as a person reads it.
    let out = lab.rkectl(&["etcd", "snapshot-drill", "--name", "drill.db"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("Drill of snapshot drill.db.zip") && said.contains("secrets"), "{said}");
    assert!(said.contains(&format!("host {}'s own copy", lab.addr("node1"))), "{said}");
}

#[test]
#[ignore = "needs the lab (tests/run brings it up)"]
fn a_drill_of_a_damaged_snapshot_fails_naming_the_hosts_and_the_reason_and_leaves_nothing() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "/app/config", "v1");
    lab.ok(&["etcd", "snapshot-save", "--name", "broken.db", "--yes"]);
    // Every copy is cut short: no good copy is left to drill.
    for n in ["node1", "node2", "node3"] {
        lab.sh(
            n,
            "f=/opt/rke/etcd-snapshots/broken.db.zip; head -c $(($(stat -c %s $f) / 2)) $f > $f.cut && mv $f.cut $f",
        );
    }
    let nodes = ["node1", "node2", "node3"];
    let before = lab.world_fingerprint(&nodes);
    let out = lab.rkectl(&["etcd", "snapshot-drill", "--name", "broken.db", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = json_line(&out, "error");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("broken.db") && message.contains(&lab.addr("node1")), "{err:#}");
    assert_eq!(before, lab.world_fingerprint(&nodes), "a failed drill changed the cluster");
    for n in nodes {
        assert!(!lab.containers(n).iter().any(|c| c.contains("drill")), "{n}");
    }
}

#[test]
#[ignore = "needs the lab (tests/run brings it up)"]
fn recurring_snapshots_with_rkectl_drill_drill_each_one_and_a_failed_drill_is_an_error_line() {
    let lab = Lab::get();
    let bc = "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 12\n      retention: 2\n      rkectl_drill: true\n";
    lab.write_cluster_yml(&lab.cluster_text().replace("    image: rkectl-lab/etcd:v3.4.23\n", bc));
    let plan = lab.ok(&["plan", "up", "--new-pki"]);
    assert!(plan.contains("drill each one"), "{plan}");
    assert!(plan.contains("rkectl_drill is rkectl's own setting"), "the warning: {plan}");
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "/registry/namespaces/drilled", "ns");
    let cmd = lab.sh("node1", "docker inspect -f '{{join .Config.Cmd \" \"}}' etcd-rolling-snapshots");
    assert!(cmd.contains("--creation 12h --keep 2") && cmd.ends_with("--drill\n"), "{cmd}");

    // The same service with a 4 s interval: each snapshot is drilled, in the service's log.
    // With its own filesystem read-only, the drill has no scratch space: an error line.
    let rerun = |extra: &str| {
        format!(
            "set -e; c=etcd-rolling-snapshots; \
             img=$(docker inspect -f '{{{{.Config.Image}}}}' $c); \
             ep=$(docker inspect -f '{{{{index .Config.Entrypoint 0}}}}' $c); \
             binds=$(docker inspect -f '{{{{range .HostConfig.Binds}}}}-v {{{{.}}}} {{{{end}}}}' $c); \
             cmd=$(docker inspect -f '{{{{join .Config.Cmd \" \"}}}}' $c | sed 's/--creation 12h/--creation 4s/'); \
             docker rm -f rolling-fast >/dev/null 2>&1 || true; \
             docker run -d --name rolling-fast --net host {extra} $binds --entrypoint $ep $img agent $cmd >/dev/null"
        )
    };
    lab.sh("node1", &rerun(""));
    std::thread::sleep(std::time::Duration::from_secs(11));
    let logs = lab.sh("node1", "docker logs rolling-fast 2>&1; docker rm -f rolling-fast >/dev/null");
    let drilled: Vec<&str> = logs.lines().filter(|l| l.contains("msg=\"Drilled backup\"")).collect();
    assert!(!drilled.is_empty(), "no drill in the service's log:\n{logs}");
    assert!(drilled[0].contains("level=info") && drilled[0].contains("keys="), "{logs}");
    assert!(!logs.contains("level=error"), "{logs}");

    lab.sh("node1", &rerun("--read-only"));
    std::thread::sleep(std::time::Duration::from_secs(7));
    let logs = lab.sh("node1", "docker logs rolling-fast 2>&1; docker rm -f rolling-fast >/dev/null");
    assert!(
        logs.lines().any(|l| l.contains("level=error") && l.contains("msg=\"Backup failed its restore drill\"")),
        "a failed drill must be an error line:\n{logs}"
    );
}

/// Watches node1 for up to 30 s for the throwaway etcd of a drill (the `etcd` binary run
/// with `--name=drill`); each time it is there, lists what it has open that another
/// process could connect to: TCP and UDP sockets in the node's network (the recurring
/// service's), and the mode of the folder its unix sockets are in. Prints
/// `seen=N tcp=[...] dirs=[...]`.
const WATCH_DRILL: &str = r#"
seen=0; tcp=""; dirs=""; end=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$end" ] && [ "$seen" -lt 5 ]; do
  for p in $(pgrep -f -- '--name=drill'); do
    case "$(readlink /proc/$p/exe)" in */etcd) ;; *) continue ;; esac
    seen=$((seen + 1))
    tcp="$tcp$(ss -Hltunp | grep "pid=$p," | tr -s ' ' | tr '
' ';')"
    dirs="$dirs $(stat -c '%a:%U' /proc/$p/cwd/ 2>/dev/null)"
  done
  sleep 0.05
done
echo "seen=$seen tcp=[$tcp] dirs=[$dirs ]"
"#;

#[test]
#[ignore = "needs the lab (tests/run brings it up)"]
fn a_recurring_drill_opens_nothing_a_local_user_or_host_network_pod_can_reach() {
    let lab = Lab::get();
    let bc = "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 12\n      retention: 2\n      rkectl_drill: true\n";
    lab.write_cluster_yml(&lab.cluster_text().replace("    image: rkectl-lab/etcd:v3.4.23\n", bc));
    lab.ok(&["up", "--yes", "--new-pki"]);
    // Some data, Secrets among it, so that each drill runs for a moment.
    let value = "x".repeat(100_000);
    for i in 0..20 {
        lab.write("node1", &format!("/registry/secrets/default/db-password-{i}"), &value);
    }
    // The service as rkectl runs it (host network), every 3 s instead of every 12 h.
    lab.sh(
        "node1",
        "set -e; c=etcd-rolling-snapshots; \
         img=$(docker inspect -f '{{.Config.Image}}' $c); \
         ep=$(docker inspect -f '{{index .Config.Entrypoint 0}}' $c); \
         net=$(docker inspect -f '{{.HostConfig.NetworkMode}}' $c); \
         binds=$(docker inspect -f '{{range .HostConfig.Binds}}-v {{.}} {{end}}' $c); \
         cmd=$(docker inspect -f '{{join .Config.Cmd \" \"}}' $c | sed 's/--creation 12h/--creation 3s/'); \
         [ \"$net\" = host ]; \
         docker rm -f rolling-fast >/dev/null 2>&1 || true; \
         docker run -d --name rolling-fast --net host $binds --entrypoint $ep $img agent $cmd >/dev/null",
    );
    let watched = lab.sh("node1", WATCH_DRILL);
    // The drill it watched, to its end.
    let logs = lab.sh(
        "node1",
        "for i in $(seq 1 60); do docker logs rolling-fast 2>&1 | grep -q 'restore drill\\|Drilled backup' && break; sleep 0.5; done; \
         docker logs rolling-fast 2>&1; docker rm -f rolling-fast >/dev/null",
    );
    let field = |name: &str| {
        let start = watched.find(&format!("{name}=")).map(|i| i + name.len() + 1).unwrap_or(0);
        watched[start..].split_whitespace().next().unwrap_or_default().to_string()
    };
    let seen: u32 = field("seen").parse().unwrap_or(0);
    assert!(seen > 0, "no drill was seen running on node1: {watched}\n{logs}");
    assert!(watched.contains("tcp=[]"), "the drill's etcd listens on the node's network: {watched}");
    let dirs = watched.split("dirs=[").nth(1).unwrap_or_default().trim_end().trim_end_matches(']');
    assert!(
        !dirs.split_whitespace().collect::<Vec<_>>().is_empty() && dirs.split_whitespace().all(|d| d == "700:root"),
        "the drill's sockets must be in a folder only root can enter: {watched}"
    );
    let drilled = logs.lines().filter(|l| l.contains("msg=\"Drilled backup\"")).count();
    assert!(drilled > 0 && !logs.contains("level=error"), "the drills must still succeed:\n{logs}");
}
