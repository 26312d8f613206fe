//! Secrets never leak: every action runs in the lab with known S3 keys and PKI, and
//! everything rkectl wrote (stdout, stderr, plan files, `--json`, journals, its files next
//! to cluster.yml) is searched for them.

mod common;

use common::lab::{Lab, text};
use std::os::unix::fs::PermissionsExt;

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn no_secret_appears_in_anything_rkectl_writes() {
    let lab = Lab::get();
    let mut written = String::new();
    let passphrase = "the state passphrase of this test";
    let mut run = |args: Vec<String>, expect_ok: bool| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lab.rkectl_env(&a, &[("RKECTL_STATE_PASSPHRASE", passphrase)]);
        if expect_ok {
            assert!(out.status.success(), "rkectl {} failed:\n{}", a.join(" "), text(&out));
        }
        written.push_str(&text(&out));
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let s3 = lab.s3_flags();
    let with_s3 = |v: &[&str]| {
        let mut a = s(v);
        a.extend(s3.clone());
        a
    };
    // S3 keys in cluster.yml too, and recurring snapshots that use them.
    let bc = format!(
        "    image: rkectl-lab/etcd:v3.4.23\n    backup_config:\n      interval_hours: 6\n      retention: 2\n      s3backupconfig:\n        access_key: {}\n        secret_key: {}\n        bucket_name: {}\n        endpoint: {}\n",
        lab.env["S3_ACCESS_KEY"], lab.env["S3_SECRET_KEY"], lab.env["S3_BUCKET"], lab.env["S3_ENDPOINT"]
    );
    lab.write_cluster_yml(&lab.cluster_text().replace("    image: rkectl-lab/etcd:v3.4.23\n", &bc));
    run(s(&["up", "--yes", "--json", "--new-pki"]), true);
    run(s(&["plan", "up", "--json", "--out", "up-plan.json"]), true);
    run(s(&["up", "--yes"]), true);
    run(with_s3(&["etcd", "snapshot-save", "--name", "s.db"]), true);
    run(with_s3(&["plan", "etcd", "snapshot-restore", "--name", "s.db", "--json", "--out", "restore-plan.json"]), true);
    run(with_s3(&["etcd", "snapshot-list", "--json"]), true);
    run(with_s3(&["etcd", "snapshot-restore", "--name", "s.db", "--yes", "--json"]), true);
    run(with_s3(&["etcd", "snapshot-restore", "--name", "s.db", "--yes"]), true);
    run(s(&["apply", "restore-plan.json", "--yes"]), false);
    // Failures quote what they can: a wrong secret key, a wrong access key.
    let wrong: Vec<String> = with_s3(&["etcd", "snapshot-save", "--name", "t.db"])
        .into_iter()
        .map(|a| if a == lab.env["S3_SECRET_KEY"] { "WRONG-secret-123456".into() } else { a })
        .collect();
    run(wrong, false);
    let wrong: Vec<String> = with_s3(&["etcd", "snapshot-list"])
        .into_iter()
        .map(|a| if a == lab.env["S3_ACCESS_KEY"] { "WRONG-access-123456".into() } else { a })
        .collect();
    run(wrong, false);
    // What Docker shows of every container (the rolling-snapshot service runs, with keys),
    // and the modes of the files on the nodes that hold secrets: keys and snapshots.
    let mut inspected = String::new();
    for node in ["node1", "node2", "node3"] {
        inspected.push_str(&lab.sh(node, "docker inspect $(docker ps -aq)"));
        let modes = lab.sh(
            node,
            "stat -c '%a %n' /etc/kubernetes/rkectl/* /opt/rke/etcd-snapshots/*.zip /opt/rke/etcd-snapshots/*.db 2>/dev/null",
        );
        // The first etcd host's service uploads (the others keep local copies only).
        if node == "node1" {
            assert!(modes.contains("etcd-rolling-snapshots-s3.json"), "the rolling service's keys file: {modes}");
        }
        for line in modes.lines() {
            assert!(line.starts_with("600 "), "{node}: {line} should be mode 600 (modes: {modes})");
        }
    }
    assert!(inspected.contains("/run/secrets/rkectl-s3.json"), "the rolling service reads its keys from a file");
    for key in [&lab.env["S3_ACCESS_KEY"], &lab.env["S3_SECRET_KEY"]] {
        assert!(!inspected.contains(key.as_str()), "an S3 key shows in `docker inspect`");
    }
    // A failed apply writes the journal with its error.
    lab.sh("node3", "mv /var/run/docker.sock /var/run/docker.sock.off");
    run(with_s3(&["etcd", "snapshot-save", "--name", "u.db", "--yes"]), false);
    lab.sh("node3", "mv /var/run/docker.sock.off /var/run/docker.sock");

    // What counts as a secret: the S3 keys and every private key of the PKI.
    let mut secrets: Vec<String> = vec![
        lab.env["S3_ACCESS_KEY"].clone(),
        lab.env["S3_SECRET_KEY"].clone(),
        "WRONG-secret-123456".into(),
        "WRONG-access-123456".into(),
        passphrase.into(),
    ];
    let body = |pem: &str| pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
    for entry in lab.bundle().values() {
        secrets.push(body(entry["keyPEM"].as_str().unwrap()));
    }
    for key in &secrets {
        assert!(key.len() > 10);
    }
    // Everything rkectl wrote: outputs, plan files, journals (finished and not), lock.
    let mut files = Vec::new();
    for e in std::fs::read_dir(lab.dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "cluster.yml" || name == "cluster.rkectl-state" || name == "cluster.rkestate" {
            continue;
        }
        files.push(name.clone());
        written.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
    }
    assert!(files.iter().any(|f| f.contains("journal")), "no journal was written: {files:?}");
    assert!(files.iter().any(|f| f == "up-plan.json") && files.iter().any(|f| f == "restore-plan.json"));
    for (i, secret) in secrets.iter().enumerate() {
        // PEM bodies are long: any 24-character piece of one counts.
        let probes: Vec<&str> = if secret.len() > 48 {
            secret.as_bytes().chunks(24).filter(|c| c.len() == 24).map(|c| std::str::from_utf8(c).unwrap()).collect()
        } else {
            vec![secret.as_str()]
        };
        for p in probes {
            assert!(!written.contains(p), "secret #{i} appears in rkectl's output or files ({files:?})");
        }
    }
    // The state and the journal hold what must stay private: mode 0600.
    for f in ["cluster.rkectl-state", "cluster.rkestate", "cluster.rkectl-journal"] {
        let p = lab.dir.path().join(f);
        if p.exists() {
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
    }
    let journal_last = lab.dir.path().join("cluster.rkectl-journal.last");
    assert_eq!(std::fs::metadata(journal_last).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_secret_key_file_s3_refuses_is_named_in_the_error_and_its_key_is_not() {
    let lab = Lab::get();
    let file = lab.dir.path().join("s3-secret");
    std::fs::write(&file, "WRONG-secret-in-a-file-123\n").unwrap();
    let file = file.display().to_string();
    let mut args: Vec<String> = lab.s3_flags();
    let at = args.iter().position(|a| a == "--secret-key").unwrap();
    args.splice(at..at + 2, ["--secret-key-file".to_string(), file.clone()]);
    let mut all = vec!["etcd".to_string(), "snapshot-list".into()];
    all.extend(args);
    let out = lab.rkectl(&all.iter().map(String::as_str).collect::<Vec<_>>());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    let squashed: String = said.chars().filter(|c| !c.is_whitespace() && *c != '│').collect();
    let named = format!("theS3accesskeycamefrom--access-key,thesecretkeyfrom--secret-key-file{file}");
    assert!(squashed.contains(&named.replace(' ', "")), "the help does not say where the keys came from:\n{said}");
    assert!(!said.contains("WRONG-secret-in-a-file-123"), "{said}");
    assert!(!said.contains("--secret-key puts"), "a file is the safe way, and warns of nothing:\n{said}");
}
