//! Every helper belongs to one invocation (issue 20, items 8 and 9 and the smaller ones on
//! what is left on nodes): a read-only look never removes another invocation's helper,
//! `cleanup` takes the node lock as any apply does, an apply sweeps what gone invocations
//! left (helpers, secrets, partial files) and nothing a living one uses, the helper binary
//! on a node is trusted by its checksum, and a partial file is no snapshot.

mod common;

use common::*;
use rkectl::config::HostAddr;
use rkectl::etcd::{names, paths};
use rkectl::exec::events::Recorder;
use rkectl::host::fake::{FakeContainer, FakeWorld};
use rkectl::host::{Connector, OWNER_LABEL, OwnerId};
use rkectl::model::action::ActionSpec;
use rkectl::prepare::{PrepareInput, prepare};
use std::sync::Arc;

/// A helper container of another invocation, at work.
fn helper_of(owner: &OwnerId, binds: Vec<String>) -> FakeContainer {
    FakeContainer {
        spec_image: ETCD_IMAGE.into(),
        cmd: vec!["snapshot-verify".into()],
        args: vec![],
        env: vec![],
        binds,
        service: false,
        labels: [(OWNER_LABEL.to_string(), owner.to_string())].into(),
        running: true,
        exit_code: None,
        logs: String::new(),
        id: format!("theirs-{owner}"),
    }
}

/// Gives `owner` a live claim on `host` (and its node lock when `apply`), as its
/// `rkectl agent hold-lock` would hold them.
fn claim(world: &FakeWorld, host: &HostAddr, owner: &OwnerId, agent: &str, apply: bool) {
    world.with_host(host, |s| {
        s.claims.insert(owner.to_string(), (agent.to_string(), 1));
        if apply {
            s.node_lock = Some(owner.to_string());
        }
    });
}

/// `rkectl plan <spec>`: prepared without the node locks, as a read-only look is.
async fn look(cfg: rkectl::config::LoadedConfig, world: &Arc<FakeWorld>, spec: ActionSpec) {
    let new_pki = matches!(spec, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. });
    let input = PrepareInput {
        cfg,
        spec,
        s3: None,
        state_passphrase: None,
        pki_flags: rkectl::cluster_pki::PkiFlags { new_pki, use_local_state: false },
        offline: false,
        lock_nodes: None,
        connector: connector(world),
        now: 1_800_000_000,
    };
    prepare(input).await.unwrap_or_else(|e| panic!("plan: {e}"));
}

#[tokio::test]
async fn a_read_only_look_beside_an_apply_removes_none_of_its_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot:data")));
    let h1 = HostAddr(addr(1));
    // A restore from another workstation, at work on node1: its checksum checker and the
    // health check it waits on are running there.
    let restore = OwnerId::new();
    claim(&world, &h1, &restore, "/opt/rke/rkectl/x/rkectl", true);
    world.with_host(&h1, |s| {
        for name in [names::CHECKSUM_CHECKER, names::HEALTH_CHECK] {
            s.containers.insert(name.into(), helper_of(&restore, vec![]));
        }
    });
    let before = world.host(&h1).containers;
    // `plan etcd snapshot-restore` checks the snapshot; `plan up` asks the members.
    look(config_in(dir.path(), &etcd_cluster_yaml(3)), &world, restore_spec("snap.db")).await;
    look(cfg, &world, ActionSpec::Up).await;
    let after = world.host(&h1).containers;
    assert_eq!(after, before, "the looks left the restore's helpers as they were, and none of their own");
}

#[tokio::test]
async fn cleanup_takes_the_node_locks_as_any_apply_and_keeps_a_binary_another_look_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data", None);
    let (old, looked) =
        ("/opt/rke/rkectl/0.0.1-00000000000000aa/rkectl", "/opt/rke/rkectl/0.0.2-00000000000000bb/rkectl");
    for h in &hosts {
        world.with_host(h, |s| {
            s.files.insert(old.into(), b"an old rkectl".to_vec());
            s.files.insert(looked.into(), b"the rkectl a plan runs".to_vec());
        });
    }
    // A restore from another workstation holds node1.
    let restore = OwnerId::new();
    claim(&world, &hosts[0], &restore, old, true);
    let input = |cfg: rkectl::config::LoadedConfig| PrepareInput {
        cfg,
        spec: ActionSpec::Cleanup,
        s3: None,
        state_passphrase: None,
        pki_flags: Default::default(),
        offline: false,
        lock_nodes: Some(HOLDER.into()),
        connector: connector(&world),
        now: 1_800_000_000,
    };
    let refused = match prepare(input(config_in(dir.path(), &etcd_cluster_yaml(3)))).await {
        Ok(_) => panic!("cleanup was planned on a node another apply holds"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("being changed by another rkectl apply"), "{refused}");
    assert!(world.host(&hosts[0]).files.contains_key(old), "nothing was removed");

    // Once it is gone, cleanup runs; a plan from a third workstation running one binary on
    // node2 keeps that one.
    world.with_host(&hosts[0], |s| {
        s.node_lock = None;
        s.claims.clear();
    });
    claim(&world, &hosts[1], &OwnerId::new(), looked, false);
    let p = prepare(input(cfg)).await.unwrap_or_else(|e| panic!("{e}"));
    apply_prepared(p, &world, &Recorder::default()).await.unwrap_or_else(|e| panic!("{e}"));
    for h in &hosts {
        let files = world.host(h).files;
        assert!(!files.contains_key(old), "{h}: the old binary is gone");
        assert_eq!(files.contains_key(looked), *h == hosts[1], "{h}: only the binary a look runs stays");
    }
}

#[tokio::test]
async fn an_apply_sweeps_what_gone_invocations_left_and_keeps_what_living_ones_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data", None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (dead, alive) = (OwnerId::new(), OwnerId::new());
    let service_keys = paths::s3_credentials(names::ROLLING_SNAPSHOTS);
    let once_keys = paths::s3_credentials(names::SNAPSHOT_ONCE);
    let clear_state = format!("{}/before-upgrade.rkestate", rkectl::layout::RECORDS_DIR);
    let tmp_copy = format!("{}/other.zip.rkectl-tmp.00aa11bb22cc33dd", rkectl::layout::SNAPSHOT_DIR);
    let saving = format!("{}/20260101_etcd.zip.part", rkectl::layout::SNAPSHOT_DIR);
    let staged = format!("{}/snap.db.part", rkectl::layout::STAGING_DIR);
    let key_tmp = format!("{}/kube-etcd-key.pem.rkectl-tmp.0123456789abcdef", paths::CERT_DIR);
    let (dead_helper, live_helper) =
        (format!("{}-{dead}", names::CHECKSUM_CHECKER), format!("{}-{alive}", names::CHECKSUM_CHECKER));
    for h in &hosts {
        claim(&world, h, &alive, "/opt/rke/rkectl/x/rkectl", false);
        world.with_host(h, |s| {
            // Read-only looks' checkers: one whose look was killed, one whose look is at work.
            s.containers.insert(dead_helper.clone(), helper_of(&dead, vec![]));
            s.containers.insert(live_helper.clone(), helper_of(&alive, vec![]));
            // A one-shot save killed before it removed its keys and its clear state file.
            for f in [&once_keys, &service_keys, &clear_state, &tmp_copy, &staged, &key_tmp] {
                s.files.insert(f.clone(), b"secret or partial".to_vec());
            }
            // The recurring service writing its snapshot right now.
            s.files.insert(saving.clone(), b"being written".to_vec());
            s.modified.insert(saving.clone(), now);
        });
    }
    // node2 runs the recurring service with its S3 keys: they are in use.
    world.with_host(&hosts[1], |s| {
        let mut service = helper_of(&alive, vec![format!("{service_keys}:/run/s3.json:ro")]);
        service.labels.clear();
        service.service = true;
        s.containers.insert(names::ROLLING_SNAPSHOTS.into(), service);
    });
    let rec = Recorder::default();
    run_action(cfg, &world, save_spec("later"), &rec).await.unwrap_or_else(|e| panic!("{e}"));
    for h in &hosts {
        let s = world.host(h);
        assert!(!s.containers.contains_key(&dead_helper), "{h}: a killed look's helper is swept");
        assert!(s.containers.contains_key(&live_helper), "{h}: a look at work keeps its helper");
        for gone in [&once_keys, &clear_state, &tmp_copy, &staged, &key_tmp] {
            assert!(!s.files.contains_key(gone), "{h}: {gone} is swept");
        }
        assert!(s.files.contains_key(&saving), "{h}: a file being written stays");
        assert_eq!(s.files.contains_key(&service_keys), *h == hosts[1], "{h}: only the running service's keys stay");
    }
    let said: Vec<String> = rec.events().iter().map(|e| format!("{:?}", e.kind)).collect();
    assert!(said.iter().any(|l| l.contains("left by an earlier run") && l.contains(&once_keys)), "{said:?}");
}

#[tokio::test]
async fn a_helper_binary_of_the_right_size_but_other_bytes_is_replaced() {
    let cfg = load(&etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"data", None);
    let node = cfg.cluster.etcd_nodes().next().unwrap().clone();
    let agent = rkectl::agent_binary::AgentBinary::current().expect("this test program");
    let host = rkectl::host::fake::FakeConnector(world.clone()).connect(&node).await.unwrap();
    assert!(rkectl::host::ensure_agent(host.as_ref(), agent).await.unwrap(), "uploaded the first time");
    assert!(!rkectl::host::ensure_agent(host.as_ref(), agent).await.unwrap(), "the right one stays");
    world.with_host(&node.address, |s| {
        s.files.insert(agent.remote_path(), vec![0u8; agent.size as usize]);
    });
    assert!(rkectl::host::ensure_agent(host.as_ref(), agent).await.unwrap(), "a file of other bytes is replaced");
    let there = world.host(&node.address).files[&agent.remote_path()].clone();
    assert!(there == std::fs::read(&agent.local).unwrap(), "the binary on the node is this one again");
}

#[tokio::test]
async fn a_file_being_written_is_not_listed_as_a_snapshot() {
    use rkectl::refresh::{Hashing, Needs, SnapshotNeeds};
    let cfg = load(&etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot:data")));
    let h = HostAddr(addr(1));
    world.with_host(&h, |s| {
        for f in ["snap.db.rkectl-tmp.00aa11bb22cc33dd", "other.zip.rkectl-tmp.0011", "snap.db.part"] {
            s.files.insert(format!("{}/{f}", rkectl::layout::SNAPSHOT_DIR), b"half".to_vec());
        }
    });
    let pool = rkectl::prepare::pool(connector(&world), &cfg.cluster, &[], None).unwrap();
    let needs = Needs { snapshots: Some(SnapshotNeeds::All { hash: Hashing::Checksum }), ..Default::default() };
    let seen = rkectl::refresh::refresh(&cfg.cluster, &pool, &needs, None, &[]).await.unwrap();
    let listed: Vec<&str> = seen.hosts[&h].snapshots.keys().map(|n| n.as_str()).collect();
    assert_eq!(listed, ["snap.db"]);
}
