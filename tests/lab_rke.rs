//! rkectl on a cluster that RKE built (`tests/lab/lab rke-up`: RKE's PKI and
//! cluster.rkestate, RKE's etcd and etcd-rolling-snapshots containers, rke-tools' per-host
//! zips, an S3 object as rke-tools uploads it), as its users have it.
//!
//! After every action: every file in /etc/kubernetes/ssl is byte-identical (same content,
//! same mode), and a client with RKE's kube-node certificate, which kube-apiserver uses,
//! still reads and writes etcd through every member.

mod common;

use common::lab::{Lab, json_line, text};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// What `lab rke-up` printed.
struct Rke {
    env: BTreeMap<String, String>,
}

impl Rke {
    fn get(&self, k: &str) -> &str {
        self.env.get(k).unwrap_or_else(|| panic!("rke-up printed no {k}"))
    }
}

/// Builds the RKE cluster into the lab's working folder (cluster.yml and cluster.rkestate).
fn rke_up(lab: &Lab, extra: &[&str]) -> Rke {
    let dir = lab.dir.path().display().to_string();
    let mut args =
        vec!["rke-up", "--dir", dir.as_str(), "--etcd", "node1,node2,node3", "--other", "node4:controlplane,worker"];
    args.extend(extra);
    let out = lab.lab(&args);
    assert!(out.status.success(), "rke-up failed:\n{}", text(&out));
    let env = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Rke { env }
}

/// Content and mode of every file in /etc/kubernetes/ssl on every node.
fn ssl(lab: &Lab) -> String {
    let mut s = String::new();
    for n in ["node1", "node2", "node3", "node4"] {
        s.push_str(&format!("== {n}\n"));
        s.push_str(&lab.sh(
            n,
            "cd /etc/kubernetes/ssl && for f in $(ls | sort); do echo \"$(stat -c %a $f) $(sha256sum < $f)  $f\"; done",
        ));
    }
    assert!(s.contains("kube-ca.pem") && s.contains("kube-node.pem"), "no certificates: {s}");
    s
}

/// etcdctl with RKE's kube-node client certificate through one member.
fn kube_node(rke: &Rke, endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", rke.get("KUBE_CA")))
        .arg(format!("--cert={}", rke.get("KUBE_NODE_CERT")))
        .arg(format!("--key={}", rke.get("KUBE_NODE_KEY")))
        .arg("--dial-timeout=5s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl on the lab's host");
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()) } else { Err(text(&out)) }
}

/// The kube-node client reads and writes through every member; returns what each read of
/// `key` gave.
fn kube_node_reads_and_writes(rke: &Rke, key: &str) -> Vec<String> {
    let mut values = Vec::new();
    for (i, ep) in rke.get("ETCD_ENDPOINTS").split(',').enumerate() {
        kube_node(rke, ep, &["put", &format!("/probe/{i}"), "ok"]).unwrap_or_else(|e| panic!("put via {ep}: {e}"));
        values.push(
            kube_node(rke, ep, &["get", key, "--print-value-only"]).unwrap_or_else(|e| panic!("get via {ep}: {e}")),
        );
    }
    values
}

/// The sha256 of each snapshot file on a node.
fn snapshot_files(lab: &Lab, node: &str) -> String {
    lab.sh(node, "cd /opt/rke/etcd-snapshots && find . -maxdepth 1 -type f | sort | xargs -r sha256sum")
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn up_on_a_cluster_rke_built_plans_no_change_and_the_listing_shows_rkes_zips() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    let before = ssl(&lab);
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("No changes"), "{plan}");
    assert!(plan.contains("RKE's etcd-rolling-snapshots already takes snapshots as cluster.yml asks"), "{plan}");
    assert!(!plan.contains("DESTRUCTIVE"), "{plan}");
    // `up` itself does nothing, and leaves RKE's containers as they are.
    let ids = lab.sh("node1", "docker ps -q --no-trunc | sort");
    let out = lab.ok(&["up", "--yes"]);
    assert!(out.contains("No changes"), "{out}");
    assert_eq!(lab.sh("node1", "docker ps -q --no-trunc | sort"), ids);

    let list = lab.rkectl(&["etcd", "snapshot-list", "--json"]);
    assert!(list.status.success(), "{}", text(&list));
    let rows = json_line(&list, "snapshots");
    for name in [rke.get("ONE_TIME_SNAPSHOT"), rke.get("RECURRING_SNAPSHOT")] {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {rows}"));
        assert_eq!(row["format"], "zip", "{row}");
        assert_eq!(row["has_state"], true, "{row}");
        assert_eq!(row["per_host"], true, "RKE's copies are each host's own: {row}");
        assert_eq!(
            row["copies"].as_object().unwrap().len(),
            if name == rke.get("ONE_TIME_SNAPSHOT") { 4 } else { 3 },
            "{row}"
        );
    }
    // Listed once each, by name: no `.zip` row.
    assert!(!rows.as_array().unwrap().iter().any(|r| r["name"].as_str().unwrap().ends_with(".zip")), "{rows}");
    assert_eq!(ssl(&lab), before);
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/before"), ["1", "1", "1"]);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn save_on_a_cluster_rke_built_writes_archives_rke_restores_and_uploads_them_as_rke_does() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    let before = ssl(&lab);
    let out = lab.ok(&["etcd", "snapshot-save", "--name", "mine", "--include-state", "--yes"]);
    assert!(out.contains("Finished saving snapshot [mine]"), "{out}");
    let entries = "python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print(\" \".join(z.namelist()))' ";
    for n in ["node1", "node2", "node3"] {
        let mode = lab.sh(n, "stat -c %a /opt/rke/etcd-snapshots/mine.zip");
        assert_eq!(mode.trim(), "600", "{n}");
        assert!(
            !lab.sh(n, "ls /opt/rke/etcd-snapshots").lines().any(|l| l == "mine"),
            "the plain file is removed, as rke-tools does"
        );
        let zip = lab.lab(&["exec", n, "cat", "/opt/rke/etcd-snapshots/mine.zip"]).stdout;
        let local = lab.dir.path().join(format!("mine-{n}.zip"));
        std::fs::write(&local, &zip).unwrap();
        let names = Command::new("sh").arg("-c").arg(format!("{entries} {}", local.display())).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&names.stdout).trim(), "/backup/mine /etc/kubernetes/mine.rkestate", "{n}");
    }
    // cluster.yml's s3backupconfig: uploaded to its folder, as `rke etcd snapshot-save` does.
    let ls = String::from_utf8_lossy(&lab.lab(&["s3", "ls", "rke-snapshots/"]).stdout).into_owned();
    assert!(ls.contains("rke-snapshots/mine.zip"), "{ls}");
    // Without --include-state the archive holds only the database.
    lab.ok(&["etcd", "snapshot-save", "--name", "nostate", "--yes"]);
    let zip = lab.lab(&["exec", "node2", "cat", "/opt/rke/etcd-snapshots/nostate.zip"]).stdout;
    let local = lab.dir.path().join("nostate.zip");
    std::fs::write(&local, &zip).unwrap();
    let names = Command::new("sh").arg("-c").arg(format!("{entries} {}", local.display())).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&names.stdout).trim(), "/backup/nostate");
    assert_eq!(ssl(&lab), before);
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/before"), ["1", "1", "1"]);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn restore_from_the_hosts_with_internal_addresses_uses_the_first_hosts_copy_and_keeps_the_others() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &["--internal"]);
    assert!(rke.get("ETCD_ENDPOINTS").contains("10.78.0."), "members listen on the internal network");
    // The hosts are the source: take S3 out of cluster.yml.
    let yml = lab.cluster_text();
    let cut = yml.find("      s3backupconfig:").expect("s3backupconfig in rke-up's cluster.yml");
    let end = yml[cut..].find("  kube-api:").map(|i| cut + i).unwrap_or(yml.len());
    lab.write_cluster_yml(&format!("{}{}", &yml[..cut], &yml[end..]));
    let name = rke.get("RECURRING_SNAPSHOT").to_string();
    let before = ssl(&lab);
    let own: Vec<String> = ["node1", "node2", "node3"].iter().map(|n| snapshot_files(&lab, n)).collect();
    kube_node(&rke, rke.get("ETCD_ENDPOINTS").split(',').next().unwrap(), &["put", "/rke-lab/after", "x"]).unwrap();

    let plan = lab.ok(&["plan", "etcd", "snapshot-restore", "--name", &name]);
    assert!(plan.contains("differ from host to host") && plan.contains("10.77.0.11's copy"), "{plan}");
    assert!(plan.contains("staged apart from the host's snapshot folder"), "{plan}");
    assert!(!plan.contains("deploy-certs"), "the hosts' certificates stay: {plan}");
    let out = lab.ok(&["etcd", "snapshot-restore", "--name", &name, "--yes"]);
    assert!(out.contains("Finished restoring on all etcd hosts"), "{out}");

    // Every member holds node1's snapshot; each host kept its own copy, untouched.
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/taken-on"), ["node1", "node1", "node1"]);
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/after"), ["", "", ""]);
    let after: Vec<String> = ["node1", "node2", "node3"].iter().map(|n| snapshot_files(&lab, n)).collect();
    assert_eq!(after, own, "no snapshot file changed");
    for n in ["node1", "node2", "node3"] {
        assert_eq!(
            lab.sh(n, "ls -A /opt/rke/etcd-snapshots/.rkectl/restore 2>/dev/null"),
            "",
            "{n}: staged files left"
        );
    }
    assert_eq!(ssl(&lab), before);
    // RKE's etcd container came back as RKE runs it: nothing for `up` to change in etcd.
    // (cluster.yml lost its S3 settings above, so RKE's snapshot service no longer matches
    // it, and `up` says it would replace that, with the reason.)
    let plan = lab.ok(&["plan", "up"]);
    assert!(!plan.contains("start-etcd") && !plan.contains("deploy-certs"), "{plan}");
    assert!(
        plan.contains(
            "replaces etcd-rolling-snapshots that RKE made: it uploads to S3, cluster.yml does not ask it to"
        ),
        "{plan}"
    );
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn restore_from_s3_on_a_new_workstation_with_only_cluster_yml_takes_the_state_inside_the_zip() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    let name = rke.get("ONE_TIME_SNAPSHOT").to_string();
    let before = ssl(&lab);
    let state = std::fs::read_to_string(lab.dir.path().join("cluster.rkestate")).unwrap();
    // The hosts lost their snapshots; S3 has rke-tools' object.
    for n in ["node1", "node2", "node3"] {
        lab.sh(n, "rm -f /opt/rke/etcd-snapshots/*");
    }
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("cluster.yml"), lab.cluster_text()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rkectl"))
            .args(args)
            .current_dir(ws.path())
            .env("RKECTL_KNOWN_HOSTS", &lab.env["KNOWN_HOSTS"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let (ok, plan) = run(&["plan", "etcd", "snapshot-restore", "--name", &name]);
    assert!(ok, "{plan}");
    assert!(plan.contains("from the cluster state stored with the snapshot (the snapshot's archive in S3)"), "{plan}");
    let (ok, out) = run(&["etcd", "snapshot-restore", "--name", &name, "--yes"]);
    assert!(ok, "{out}");
    // The state came out of the zip and is now the workstation's, as RKE writes it.
    let written = std::fs::read_to_string(ws.path().join("cluster.rkestate")).unwrap();
    let a: serde_json::Value = serde_json::from_str(&written).unwrap();
    let b: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(a["desiredState"]["certificatesBundle"], b["desiredState"]["certificatesBundle"]);
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/taken-on"), ["node1", "node1", "node1"]);
    assert_eq!(ssl(&lab), before);
    let (ok, plan) = run(&["plan", "up"]);
    assert!(ok && plan.contains("No changes"), "{plan}");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_changed_setting_on_a_cluster_rke_built_is_shown_as_a_replacement_and_asks_first() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    lab.write_cluster_yml(
        &lab.cluster_text().replace("  etcd:\n", "  etcd:\n    extra_args:\n      election-timeout: \"6000\"\n"),
    );
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("replaces the etcd container that RKE made"), "{plan}");
    assert!(plan.contains("adds --election-timeout=6000") && plan.contains("drops --election-timeout=5000"), "{plan}");
    // No terminal, no --yes: refused, nothing changed.
    let ids = lab.sh("node1", "docker ps -q --no-trunc | sort");
    let out = lab.rkectl(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("this plan needs confirmation"), "{}", text(&out));
    assert_eq!(lab.sh("node1", "docker ps -q --no-trunc | sort"), ids);
    let out = lab.ok(&["up", "--yes"]);
    assert!(out.contains("Finished building up the etcd plane"), "{out}");
    assert!(lab.sh("node2", "docker inspect -f '{{.Config.Cmd}}' etcd").contains("--election-timeout=6000"));
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/before"), ["1", "1", "1"]);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn the_most_verbose_log_never_shows_the_s3_keys_of_rkes_recurring_service() {
    let lab = Lab::get();
    let _rke = rke_up(&lab, &[]);
    // RKE hands its etcd-rolling-snapshots the S3 keys in its environment, base64 encoded.
    let env = lab.sh("node1", "docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' etcd-rolling-snapshots");
    let encoded = env
        .lines()
        .find_map(|l| l.strip_prefix("S3_SECRET_KEY="))
        .unwrap_or_else(|| panic!("RKE's service has no S3_SECRET_KEY: {env}"))
        .to_string();
    let secret = lab.env["S3_SECRET_KEY"].clone();
    for args in [vec!["-vvv", "etcd", "snapshot-list"], vec!["-vvv", "plan", "up"]] {
        let out = lab.rkectl(&args);
        let said = text(&out);
        assert!(out.status.success(), "{args:?}: {said}");
        assert!(!said.contains(&secret) && !said.contains(&encoded), "{args:?} shows the S3 secret key");
    }
}

/// `id name` of each member, as the kube-node client sees them.
fn member_names(rke: &Rke) -> Vec<String> {
    let ep = rke.get("ETCD_ENDPOINTS").split(',').next().unwrap().to_string();
    let list = kube_node(rke, &ep, &["member", "list"]).unwrap_or_else(|e| panic!("member list: {e}"));
    let mut names: Vec<String> =
        list.lines().map(|l| l.split(", ").take(3).collect::<Vec<_>>()).map(|f| format!("{} {}", f[0], f[2])).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_misspelt_hostname_override_renames_the_member_in_place_after_a_warning_and_a_confirmation() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    let (certs, members) = (ssl(&lab), member_names(&rke));
    assert!(members.iter().any(|m| m.ends_with(" etcd-node2")), "{members:?}");
    let right = lab.cluster_text();
    lab.write_cluster_yml(&right.replace("hostname_override: node2", "hostname_overide: node2"));
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("did you mean `hostname_override`?"), "{plan}");
    assert!(
        plan.contains("they change the names of members: etcd-node2 on 10.77.0.12 becomes etcd-10.77.0.12"),
        "{plan}"
    );
    // The member stays: it is not added a second time beside itself.
    assert!(!plan.contains("member-add"), "{plan}");
    assert!(plan.contains("replaces the etcd container that RKE made and its member's name etcd-node2"), "{plan}");
    let ids = lab.sh("node2", "docker ps -q --no-trunc | sort");
    let out = lab.rkectl(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("this plan needs confirmation"), "{}", text(&out));
    assert_eq!(lab.sh("node2", "docker ps -q --no-trunc | sort"), ids, "nothing changed before the confirmation");

    let out = lab.ok(&["up", "--yes"]);
    assert!(out.contains("3 healthy members"), "{out}");
    let renamed = member_names(&rke);
    let expected: Vec<String> = members.iter().map(|m| m.replace(" etcd-node2", " etcd-10.77.0.12")).collect();
    assert_eq!(renamed, expected, "the same members (same ids), node2's under its address");
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/before"), ["1", "1", "1"]);

    // The key spelt right: the member takes its name back, as `rke up` would give it.
    lab.write_cluster_yml(&right);
    let out = lab.ok(&["up", "--yes"]);
    assert!(out.contains("3 healthy members"), "{out}");
    assert_eq!(member_names(&rke), members);
    assert_eq!(ssl(&lab), certs, "every certificate on the hosts already named its member");
    assert!(lab.ok(&["plan", "up"]).contains("No changes."));
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_host_that_trusts_another_ca_is_refused_naming_it_and_both_fingerprints() {
    let lab = Lab::get();
    let _rke = rke_up(&lab, &[]);
    lab.sh(
        "node2",
        "cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -subj /CN=kube-ca -days 1 -out c.pem 2>/dev/null \
         && cp c.pem /etc/kubernetes/ssl/kube-ca.pem",
    );
    let before = lab.world_fingerprint(&["node1", "node2", "node3"]);
    for args in [vec!["up", "--yes"], vec!["etcd", "snapshot-restore", "--name", "x", "--yes", "--use-local-state"]] {
        let out = lab.rkectl(&args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains("10.77.0.12") && t.contains("trusts another CA"), "{t}");
        assert_eq!(t.matches("SHA256:").count(), 2, "both fingerprints: {t}");
    }
    // Without RKE's state, nothing is made up: rkectl asks for it, or for --new-pki.
    std::fs::remove_file(lab.dir.path().join("cluster.rkestate")).unwrap();
    let out = lab.rkectl(&["up", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("already trusts the CA") && text(&out).contains("--new-pki"), "{}", text(&out));
    assert_eq!(lab.world_fingerprint(&["node1", "node2", "node3"]), before, "nothing changed");
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn prune_and_delete_remove_rkes_zips_as_rke_does() {
    let lab = Lab::get();
    let rke = rke_up(&lab, &[]);
    let before = ssl(&lab);
    let (one_time, recurring) = (rke.get("ONE_TIME_SNAPSHOT"), rke.get("RECURRING_SNAPSHOT"));
    // Pruning by age takes RKE's recurring snapshots (`…_etcd.zip`) and never a one-time one,
    // however old, nor the newest recurring one (an older one is made beside it).
    let older = "2020-01-01T00:00:00Z_etcd";
    for n in ["node1", "node2", "node3"] {
        lab.sh(n, &format!("cd /opt/rke/etcd-snapshots && cp -p {recurring}.zip {older}.zip"));
    }
    let out = lab.ok(&["etcd", "snapshot-prune", "--retention", "1s", "--yes"]);
    assert!(out.contains(&format!("delete snapshot {older}")), "{out}");
    assert!(out.contains(&format!("Kept snapshot {recurring} on")), "{out}");
    for n in ["node1", "node2", "node3"] {
        let files = snapshot_files(&lab, n);
        assert!(!files.contains(&format!("{older}.zip")), "{n}: {files}");
        assert!(files.contains(&format!("{recurring}.zip")), "{n}: the newest recurring snapshot: {files}");
        assert!(files.contains(&format!("{one_time}.zip")), "{n}: {files}");
    }
    // Deleting a one-time snapshot removes the zip on every etcd host and rke-tools' object
    // in S3 (cluster.yml's s3backupconfig, with --s3).
    let s3_key = rke.get("S3_SNAPSHOT_KEY");
    assert!(String::from_utf8_lossy(&lab.lab(&["s3", "ls", "rke-snapshots/"]).stdout).contains(s3_key));
    // A name one letter off is refused (exit 2), naming where it looked and the real one.
    let typo = &one_time[..one_time.len() - 1];
    let refused = lab.rkectl(&["etcd", "snapshot-delete", "--name", typo, "--s3", "--yes"]);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    let squashed: String = said.chars().filter(|c| !c.is_whitespace() && *c != '│').collect();
    assert!(squashed.contains(&format!("nosnapshot{typo}todelete")), "{said}");
    assert!(squashed.contains(&format!("didyoumean{one_time}")), "{said}");
    for n in ["node1", "node2", "node3"] {
        assert!(snapshot_files(&lab, n).contains(one_time), "{n}: a refused delete deleted");
    }
    let out = lab.ok(&["etcd", "snapshot-delete", "--name", one_time, "--s3", "--yes"]);
    assert!(out.contains(&format!("Deleted snapshot [{one_time}]")), "{out}");
    for n in ["node1", "node2", "node3"] {
        let files = snapshot_files(&lab, n);
        assert!(!files.contains(one_time), "{n}: {files}");
    }
    let ls = String::from_utf8_lossy(&lab.lab(&["s3", "ls", "rke-snapshots/"]).stdout).into_owned();
    assert!(!ls.contains(s3_key), "{ls}");
    assert_eq!(ssl(&lab), before);
    assert_eq!(kube_node_reads_and_writes(&rke, "/rke-lab/before"), ["1", "1", "1"]);
}
