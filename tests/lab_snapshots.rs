//! Snapshots against the lab: one-time saves (local and S3), recurring snapshots with
//! retention, listing, deleting and pruning.

mod common;

use common::lab::{Lab, json_line, text};
use std::time::Duration;

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn sha256(lab: &Lab, node: &str, path: &str) -> String {
    lab.sh(node, &format!("sha256sum '{path}' | cut -d' ' -f1")).trim().to_string()
}

fn snapshots(lab: &Lab, node: &str) -> Vec<String> {
    let mut v: Vec<String> =
        lab.sh(node, "ls -1 /opt/rke/etcd-snapshots 2>/dev/null").lines().map(str::to_string).collect();
    v.sort();
    v
}

fn s3_keys(lab: &Lab) -> Vec<String> {
    let out = lab.lab(&["s3", "ls"]);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn assert_saved_everywhere(lab: &Lab, name: &str) -> String {
    let path = format!("/opt/rke/etcd-snapshots/{name}.zip");
    let sums: Vec<String> = NODES.iter().map(|n| sha256(lab, n, &path)).collect();
    assert!(!sums[0].is_empty(), "no {path} on node1");
    assert!(sums.iter().all(|s| s == &sums[0]), "copies differ: {sums:?}");
    for n in NODES {
        assert!(lab.snapshot_status_ok(n, name), "etcdctl snapshot status fails on {n}'s {name}.zip");
        assert_eq!(lab.containers(n), vec!["etcd".to_string()], "temporary containers left on {n}");
    }
    sums[0].clone()
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn snapshot_save_with_and_without_a_name() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "k1", "v1");
    let out = lab.ok(&["etcd", "snapshot-save", "--name", "snapshot.db"]);
    assert!(out.contains("Saving snapshot [snapshot.db] on host"), "{out}");
    assert!(out.contains("Successfully started [etcd-snapshot-once] container on host"), "{out}");
    assert!(out.contains("Finished saving snapshot [snapshot.db] on all etcd hosts"), "{out}");
    assert_saved_everywhere(&lab, "snapshot.db");

    let out = lab.ok(&["etcd", "snapshot-save"]);
    let warn = out
        .lines()
        .find(|l| l.contains("Name of the snapshot is not specified using ["))
        .unwrap_or_else(|| panic!("{out}"));
    let name = warn.split('[').nth(1).unwrap().trim_end_matches(']').to_string();
    assert!(name.starts_with("rke_etcd_snapshot_20"), "{name}");
    assert_saved_everywhere(&lab, &name);

    // A name that exists is never overwritten.
    let out = lab.rkectl(&["etcd", "snapshot-save", "--name", "snapshot.db"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn snapshot_save_to_s3_and_wrong_keys() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "k1", "v1");
    let mut args: Vec<String> =
        ["etcd", "snapshot-save", "--name", "s3snap.db"].iter().map(|s| s.to_string()).collect();
    args.extend(lab.s3_flags());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.ok(&a);
    assert!(out.contains("Uploaded snapshot [s3snap.db.zip]"), "{out}");
    // Without a passphrase of the user's, the state does not travel, and the plan says so.
    assert!(out.contains("The S3 copy will not carry the cluster state"), "{out}");
    let host_sum = assert_saved_everywhere(&lab, "s3snap.db");
    assert_eq!(s3_keys(&lab), ["s3snap.db.zip", "s3snap.db.zip.rkectl.json"]);
    let got = lab.lab(&["s3", "get", "s3snap.db.zip"]);
    assert!(got.status.success(), "{}", text(&got));
    let bytes = got.stdout;
    use sha2::Digest;
    let s3_sum: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(s3_sum, host_sum, "the object differs from the hosts' copies");
    let m: serde_json::Value =
        serde_json::from_slice(&lab.lab(&["s3", "get", "s3snap.db.zip.rkectl.json"]).stdout).unwrap();
    assert_eq!(m["checksum"], format!("blake3:{}", blake3::hash(&bytes).to_hex()));
    assert_eq!(m["size"], bytes.len());
    assert!(m.get("sealed_state").is_none() && m.get("pki").is_none(), "no state without a passphrase: {m}");

    // With one, it travels sealed: never readable without the passphrase, never keyed by S3's.
    let mut sealed_args = args.clone();
    sealed_args[3] = "sealed.db".into();
    let a: Vec<&str> = sealed_args.iter().map(String::as_str).collect();
    let out = lab.rkectl_env(&a, &[("RKECTL_STATE_PASSPHRASE", "lab passphrase, long enough")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the cluster state sealed beside it"), "{}", text(&out));
    let raw = lab.lab(&["s3", "get", "sealed.db.zip.rkectl.json"]).stdout;
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["sealed_state"]["kdf"], "argon2id", "{m}");
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("PRIVATE KEY") && !raw.contains("lab passphrase"), "{raw}");
    // A weak passphrase is refused before anything is dialed.
    let out = lab.rkectl_env(&a, &[("RKECTL_STATE_PASSPHRASE", "minioadmin")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("too weak"), "{}", text(&out));

    // Wrong secret key: a clear error that says so, and nothing new in the bucket.
    let wrong: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "s3snap.db" => "other.db".to_string(),
            x if x == lab.env["S3_SECRET_KEY"] => "not-the-secret".to_string(),
            x => x.to_string(),
        })
        .collect();
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let out = lab.rkectl(&wrong);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out).to_lowercase();
    assert!(t.contains("secret"), "{t}");
    assert!(
        !t.contains(&lab.env["S3_SECRET_KEY"].to_lowercase()) && !t.contains("not-the-secret"),
        "a key was printed: {t}"
    );
    assert_eq!(
        s3_keys(&lab),
        ["s3snap.db.zip", "s3snap.db.zip.rkectl.json", "sealed.db.zip", "sealed.db.zip.rkectl.json"]
    );
    assert!(!snapshots(&lab, "node1").iter().any(|s| s.starts_with("other.db")));
}

/// The lab's second S3 server (moto, an independent implementation): a save streamed from
/// the hosts, a verified listing, and a restore that can only take the snapshot from S3.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn snapshot_to_the_second_s3_server_and_restore_from_it() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.write("node1", "k1", "before");
    let flags = lab.s3b_flags();
    let with = |args: &[&str]| -> Vec<String> {
        args.iter().map(|s| s.to_string()).chain(flags.iter().cloned()).collect::<Vec<_>>()
    };
    let save = with(&["etcd", "snapshot-save", "--name", "moto.db"]);
    let out = lab.ok(&save.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Uploaded snapshot [moto.db.zip]"), "{out}");
    let host_sum = assert_saved_everywhere(&lab, "moto.db");
    let ls = lab.lab(&["s3", "--server", "moto", "ls"]);
    let keys: Vec<&str> =
        std::str::from_utf8(&ls.stdout).unwrap().lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(keys, ["moto.db.zip", "moto.db.zip.rkectl.json"]);
    let got = lab.lab(&["s3", "--server", "moto", "get", "moto.db.zip"]);
    assert!(got.status.success(), "{}", text(&got));
    use sha2::Digest;
    let s3_sum: String = sha2::Sha256::digest(&got.stdout).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(s3_sum, host_sum, "the object differs from the hosts' copies");

    let list = with(&["etcd", "snapshot-list", "--verify", "--json"]);
    let out = lab.rkectl(&list.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success() && text(&out).contains("moto.db"), "{}", text(&out));

    // The hosts lose their copies: the restore has only the one in S3.
    lab.write("node1", "k1", "after");
    for n in NODES {
        lab.sh(n, "rm -f /opt/rke/etcd-snapshots/moto.db.zip");
    }
    let restore = with(&["etcd", "snapshot-restore", "--name", "moto.db", "--yes"]);
    let out = lab.ok(&restore.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Downloading snapshot [moto.db.zip]"), "{out}");
    assert_eq!(lab.read("node1", "k1").as_deref(), Some("before"));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn recurring_snapshots_with_the_legacy_settings() {
    let lab = Lab::get();
    let yml = lab.cluster_text().replace(
        "    image: rkectl-lab/etcd:v3.4.23\n",
        "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: 10s\n    retention: 30s\n",
    );
    lab.write_cluster_yml(&yml);
    let out = lab.ok(&["up", "--yes", "--new-pki"]);
    assert!(out.contains("Successfully started [etcd-rolling-snapshots] container"), "{out}");
    std::thread::sleep(Duration::from_secs(55));
    for n in NODES {
        let snaps: Vec<String> = snapshots(&lab, n).into_iter().filter(|s| s.ends_with("_etcd.zip")).collect();
        assert!((2..=4).contains(&snaps.len()), "{n}: retention 30s and creation 10s keep 2-4, found {snaps:?}");
        // Every one left is younger than the retention (plus one interval of slack).
        let ages = lab.sh(
            n,
            "cd /opt/rke/etcd-snapshots && for f in *_etcd.zip; do echo $(( $(date +%s) - $(stat -c %Y \"$f\") )); done",
        );
        for a in ages.lines() {
            assert!(a.trim().parse::<u64>().unwrap() <= 40, "{n}: a snapshot {a}s old survived a 30s retention");
        }
    }
    let logs = lab.sh("node1", "docker logs etcd-rolling-snapshots 2>&1");
    assert!(logs.contains("msg=\"Initializing Rolling Backups\" creation=10s retention=30s"), "{logs}");
    assert!(logs.matches("msg=\"Created backup\" name=\"").count() >= 4, "{logs}");
    assert!(logs.contains("_etcd\" runtime="), "{logs}");
    assert!(logs.contains("msg=\"Removed backup\""), "{logs}");

    // Turned off in cluster.yml: the next up removes the service.
    lab.write_cluster_yml(&yml.replace("    snapshot: true\n", ""));
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("remove-rolling-snapshots"), "{plan}");
    lab.ok(&["up", "--yes"]);
    for n in NODES {
        assert_eq!(lab.containers(n), vec!["etcd".to_string()], "{n}");
    }
}

/// Issue 20, item 5: a member that cannot save (here its key file is broken, as a lost
/// certificate would leave it: etcdctl fails at once, where a stopped member makes it
/// wait for the stall limit, two minutes) keeps its newest
/// snapshot however long its saves fail; retention runs only after a save that succeeded,
/// and the service's log says it skipped. The members that still save go on pruning.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_node_whose_saves_fail_keeps_its_newest_snapshot() {
    let lab = Lab::get();
    let yml = lab.cluster_text().replace(
        "    image: rkectl-lab/etcd:v3.4.23\n",
        "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: 3s\n    retention: 6s\n",
    );
    lab.write_cluster_yml(&yml);
    lab.ok(&["up", "--yes", "--new-pki"]);
    let recurring =
        |n: &str| -> Vec<String> { snapshots(&lab, n).into_iter().filter(|s| s.ends_with("_etcd.zip")).collect() };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while recurring("node1").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no recurring snapshot on node1 after a minute");
        std::thread::sleep(Duration::from_millis(500));
    }
    // From now on node1's saves fail: the service cannot read its key (nor can node1's
    // member take new connections; the other two keep the quorum).
    lab.sh("node1", "for f in /etc/kubernetes/ssl/kube-etcd-*-key.pem; do echo broken > \"$f\"; done");
    let stopped = std::time::Instant::now();
    let newest = recurring("node1").pop().expect("node1's snapshots");
    // Well past the retention, with several failed saves after it passed.
    std::thread::sleep(Duration::from_secs(20));
    let logs = lab.sh("node1", "docker logs etcd-rolling-snapshots 2>&1");
    let left = recurring("node1");
    assert!(left.contains(&newest), "node1's newest snapshot {newest} was deleted; left: {left:?}\n{logs}");
    assert!(stopped.elapsed() > Duration::from_secs(6 + 3), "the retention passed");
    assert!(logs.contains("msg=\"Failed to create backup\""), "{logs}");
    assert!(logs.contains("msg=\"Skipped pruning: the last backup failed\""), "{logs}");
    let failed_at = logs.find("msg=\"Failed to create backup\"").unwrap();
    assert!(!logs[failed_at..].contains("msg=\"Removed backup\""), "pruned after a failed save:\n{logs}");
    // Where saves succeed, retention goes on: nothing older than it (and an interval) stays.
    let node2 = lab.sh("node2", "docker logs etcd-rolling-snapshots 2>&1");
    assert!(node2.contains("msg=\"Removed backup\""), "{node2}");
    let ages = lab.sh(
        "node2",
        "cd /opt/rke/etcd-snapshots && for f in *_etcd.zip; do echo $(( $(date +%s) - $(stat -c %Y \"$f\") )); done",
    );
    for a in ages.lines() {
        assert!(a.trim().parse::<u64>().unwrap() <= 6 + 3 + 5, "node2: a snapshot {a}s old survived a 6s retention");
    }
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn backup_config_becomes_the_agents_settings_and_keeps_exactly_retention_snapshots() {
    let lab = Lab::get();
    let bc = format!(
        "    image: rkectl-lab/etcd:v3.4.23\n    snapshot: true\n    creation: 5m0s\n    retention: 24h\n    backup_config:\n      interval_hours: 12\n      retention: 3\n      s3backupconfig:\n        access_key: {}\n        secret_key: {}\n        bucket_name: {}\n        region: \"\"\n        endpoint: {}\n",
        lab.env["S3_ACCESS_KEY"], lab.env["S3_SECRET_KEY"], lab.env["S3_BUCKET"], lab.env["S3_ENDPOINT"]
    );
    lab.write_cluster_yml(&lab.cluster_text().replace("    image: rkectl-lab/etcd:v3.4.23\n", &bc));
    let plan = lab.ok(&["plan", "up", "--new-pki"]);
    assert!(plan.contains("backup_config overrides the legacy creation=5m0s/retention=24h0m0s"), "{plan}");
    assert!(!plan.contains(&lab.env["S3_SECRET_KEY"]) && !plan.contains(&lab.env["S3_ACCESS_KEY"]), "keys in the plan");
    let json = json_line(&lab.rkectl(&["plan", "up", "--new-pki", "--json"]), "plan");
    let starts: Vec<&serde_json::Value> =
        json["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == "start-rolling-snapshots").collect();
    assert_eq!(starts.len(), 3);
    let s = &starts[0]["settings"];
    assert_eq!(
        (s["mode"].as_str(), s["interval_hours"].as_u64(), s["retention"].as_u64()),
        (Some("backup-config"), Some(12), Some(3))
    );
    assert_eq!(s["s3"]["bucket"], lab.env["S3_BUCKET"]);
    assert!(starts[1]["settings"]["s3"].is_null(), "only the first etcd host uploads");
    lab.ok(&["up", "--yes", "--new-pki"]);
    let cmd = lab.sh("node1", "docker inspect -f '{{join .Config.Cmd \" \"}}' etcd-rolling-snapshots");
    assert!(cmd.contains("--creation 12h --keep 3") && cmd.contains("--bucket rkectl-backups"), "{cmd}");

    // The same agent, run with a short interval: exactly `retention` snapshots stay, on the
    // host and in S3.
    let run = "set -e; c=etcd-rolling-snapshots; \
        img=$(docker inspect -f '{{.Config.Image}}' $c); \
        ep=$(docker inspect -f '{{index .Config.Entrypoint 0}}' $c); \
        envs=$(docker inspect -f '{{range .Config.Env}}-e {{.}} {{end}}' $c); \
        binds=$(docker inspect -f '{{range .HostConfig.Binds}}-v {{.}} {{end}}' $c); \
        cmd=$(docker inspect -f '{{join .Config.Cmd \" \"}}' $c | sed 's/--creation 12h/--creation 4s/'); \
        docker rm -f $c >/dev/null; \
        docker run -d --name rolling-fast --net host $envs $binds --entrypoint $ep $img agent $cmd";
    lab.sh("node1", run);
    std::thread::sleep(Duration::from_secs(26));
    let logs = lab.sh("node1", "docker logs rolling-fast 2>&1; docker rm -f rolling-fast >/dev/null");
    let local: Vec<String> = snapshots(&lab, "node1").into_iter().filter(|s| s.ends_with("_etcd.zip")).collect();
    assert_eq!(local.len(), 3, "host keeps exactly 3: {local:?}\n{logs}");
    let remote: Vec<String> = s3_keys(&lab).into_iter().filter(|k| k.ends_with("_etcd.zip")).collect();
    assert_eq!(remote.len(), 3, "S3 keeps exactly 3: {remote:?}\n{logs}");
    assert_eq!(local, remote);
    assert!(logs.contains("creation=4s retention=3"), "{logs}");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn snapshot_list_shows_every_copy_and_flags_one_that_differs() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    lab.ok(&["etcd", "snapshot-save", "--name", "a.db"]);
    let mut args: Vec<String> = ["etcd", "snapshot-save", "--name", "b.db"].iter().map(|s| s.to_string()).collect();
    args.extend(lab.s3_flags());
    lab.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Flip one byte of node2's copy of a.db, keeping its size.
    lab.sh("node2", "printf 'X' | dd of=/opt/rke/etcd-snapshots/a.db.zip bs=1 seek=100 conv=notrunc 2>/dev/null");
    let mut list = vec!["etcd".to_string(), "snapshot-list".into()];
    list.extend(lab.s3_flags().into_iter().skip(1).collect::<Vec<_>>());
    list.insert(2, "--s3".into());
    let out = lab.ok(&list.iter().map(String::as_str).collect::<Vec<_>>());
    let a = out.lines().find(|l| l.starts_with("a.db")).unwrap_or_else(|| panic!("{out}"));
    assert!(a.contains("DIFFER") && a.contains(&lab.addr("node2")), "{a}");
    let b = out.lines().find(|l| l.starts_with("b.db")).unwrap_or_else(|| panic!("{out}"));
    assert!(b.contains("agree") && b.contains("s3") && b.contains(&lab.addr("node3")), "{b}");
    let json = json_line(&lab.rkectl(&["etcd", "snapshot-list", "--verify", "--json"]), "snapshots");
    let a = json.as_array().unwrap().iter().find(|r| r["name"] == "a.db").unwrap();
    assert_eq!(a["consistent"], false);
    assert_eq!(a["copies"][lab.addr("node2")]["etcd_ok"], false, "the flipped byte breaks etcd's hash check");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn snapshot_delete_and_prune_on_hosts_and_in_s3() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    let s3 = lab.s3_flags();
    for name in [
        "keep-me.db",
        "rke_etcd_snapshot_2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z_etcd",
        "2026-01-02T00:00:00Z_etcd",
    ] {
        let mut a: Vec<String> = vec!["etcd".into(), "snapshot-save".into(), "--name".into(), name.into()];
        a.extend(s3.clone());
        lab.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let mut del: Vec<String> =
        vec!["etcd".into(), "snapshot-delete".into(), "--name".into(), "keep-me.db".into(), "--yes".into()];
    del.extend(s3.clone());
    let out = lab.ok(&del.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("DESTRUCTIVE"), "{out}");
    for n in NODES {
        assert!(!snapshots(&lab, n).iter().any(|s| s.starts_with("keep-me.db")), "{n}");
    }
    assert!(!s3_keys(&lab).iter().any(|k| k.starts_with("keep-me.db")));

    // Keep the newest recurring snapshot only; a one-time snapshot is never pruned, even with
    // RKE's default name.
    let mut prune: Vec<String> =
        vec!["etcd".into(), "snapshot-prune".into(), "--keep".into(), "1".into(), "--yes".into()];
    prune.extend(s3);
    let out = lab.ok(&prune.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("delete snapshot 2026-01-01T00:00:00Z_etcd"), "{out}");
    for n in NODES {
        let left = snapshots(&lab, n);
        assert!(left.contains(&"2026-01-02T00:00:00Z_etcd.zip".to_string()), "{n}: {left:?}");
        assert!(!left.contains(&"2026-01-01T00:00:00Z_etcd.zip".to_string()), "{n}: {left:?}");
        assert!(left.contains(&"rke_etcd_snapshot_2026-01-01T00:00:00Z.zip".to_string()), "{n}: {left:?}");
    }
    assert!(s3_keys(&lab).contains(&"rke_etcd_snapshot_2026-01-01T00:00:00Z.zip".to_string()));
}

/// No keys on the command line or in cluster.yml: the AWS credentials chain finds them (a
/// profile here), and the helpers on the nodes, which cannot run this workstation's chain,
/// get what it resolved.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn keys_from_an_aws_profile_reach_the_helpers_on_the_nodes() {
    let lab = Lab::get();
    lab.ok(&["up", "--yes", "--new-pki"]);
    let aws = lab.dir.path().join("aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[lab]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            lab.env["S3_ACCESS_KEY"], lab.env["S3_SECRET_KEY"]
        ),
    )
    .unwrap();
    std::fs::write(aws.join("config"), "[profile lab]\nregion = us-east-1\n").unwrap();
    let (creds, config) = (aws.join("credentials").display().to_string(), aws.join("config").display().to_string());
    let env = [
        ("AWS_SHARED_CREDENTIALS_FILE", creds.as_str()),
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_PROFILE", "lab"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let save = |name: &str| {
        vec![
            "etcd".to_string(),
            "snapshot-save".into(),
            "--name".into(),
            name.into(),
            "--s3".into(),
            "--s3-endpoint".into(),
            lab.env["S3_ENDPOINT"].clone(),
            "--bucket-name".into(),
            lab.env["S3_BUCKET"].clone(),
            "--yes".into(),
        ]
    };
    let args = save("profile.db");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.rkectl_env(&args, &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(s3_keys(&lab).contains(&"profile.db.zip".to_string()), "{:?}", s3_keys(&lab));
    // Without the profile there are no keys at all: refused before anything is saved.
    let args = save("none.db");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let no_keys = [("AWS_EC2_METADATA_DISABLED", "true"), ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")];
    let out = lab.rkectl_env(&args, &no_keys);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for n in NODES {
        assert!(!snapshots(&lab, n).iter().any(|s| s.starts_with("none.db")), "{n}");
    }
}
