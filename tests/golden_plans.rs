//! Golden plans: every template's plan, as text and as JSON, for a fake cluster observed by
//! the real refresh (through the fake hosts). A change to what any action plans, or to how a
//! plan reads, shows up here as a diff; `UPDATE_GOLDEN=1 cargo test --test golden_plans`
//! rewrites the files after a change that is meant.

mod common;

use common::*;
use rkectl::config::{HostAddr, LoadedConfig};
use rkectl::etcd::paths;
use rkectl::host::HostPool;
use rkectl::host::fake::{FakeConnector, FakeWorld, archive};
use rkectl::model::SnapshotName;
use rkectl::model::action::{ActionSpec, PrunePolicy, RestoreSearch};
use rkectl::plan::render::{RenderOptions, render};
use rkectl::refresh::{self, Needs};
use std::sync::Arc;

/// Observes the world with the real refresh, compiles `action`, and checks both renderings.
fn check(name: &str, cfg: &LoadedConfig, world: &Arc<FakeWorld>, action: ActionSpec) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let observed = rt.block_on(async {
        let pool = HostPool::new(Arc::new(FakeConnector(world.clone())), cfg.cluster.nodes.clone());
        refresh::refresh(&cfg.cluster, &pool, &Needs::for_action(&action), None, &[]).await.expect("refresh")
    });
    let plan = compile(cfg, &action, &observed);
    plan.graph().expect("acyclic");
    common::golden::check(&format!("{name}.txt"), &render(&plan, RenderOptions::default()));
    // The restore's plan also as `-v` shows it: every line, the unchanged ones too.
    if name == "restore" {
        let verbose = render(&plan, RenderOptions { verbose: true, ..Default::default() });
        common::golden::check(&format!("{name}-verbose.txt"), &verbose);
    }
    common::golden::check(&format!("{name}.json"), &(serde_json::to_string_pretty(&plan).unwrap() + "\n"));
}

fn three() -> LoadedConfig {
    load(&etcd_cluster_yaml(3))
}

fn name(s: &str) -> SnapshotName {
    SnapshotName::new(s).unwrap()
}

/// Puts `files` (name → bytes) in every etcd host's snapshot folder.
fn with_snapshots(cfg: &LoadedConfig, world: &FakeWorld, files: &[(&str, &[u8])]) {
    for n in cfg.cluster.etcd_nodes() {
        world.with_host(&n.address, |h| {
            for (f, bytes) in files {
                h.files.insert(format!("{}/{f}", paths::SNAPSHOT_DIR), bytes.to_vec());
            }
        });
    }
}

#[test]
fn up_on_empty_hosts() {
    let cfg = three();
    let world = FakeWorld::new(cfg.cluster.etcd_nodes().map(|n| n.address.clone()), &[ETCD_IMAGE]);
    check("up-new", &cfg, &world, ActionSpec::Up);
}

#[test]
fn up_on_a_running_cluster() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    check("up-running", &cfg, &world, ActionSpec::Up);
}

#[test]
fn snapshot_save() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    let action = ActionSpec::EtcdSnapshotSave {
        name: name("before-upgrade"),
        generated_name: false,
        s3: None,
        include_state: false,
        seal_state: false,
    };
    check("save", &cfg, &world, action);
}

#[test]
fn snapshot_restore_with_one_copy_missing() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    world.with_host(&HostAddr(addr(3)), |h| {
        h.files.remove(&format!("{}/snap.db", paths::SNAPSHOT_DIR));
    });
    let action = ActionSpec::EtcdSnapshotRestore { name: name("snap.db"), from: RestoreSearch::Hosts };
    check("restore", &cfg, &world, action);
}

#[test]
fn snapshot_drill_on_a_host_that_lacks_the_snapshot() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    world.with_host(&HostAddr(addr(3)), |h| {
        h.files.remove(&format!("{}/snap.db", paths::SNAPSHOT_DIR));
    });
    let action = ActionSpec::EtcdSnapshotDrill {
        name: name("snap.db"),
        from: RestoreSearch::Hosts,
        host: Some(HostAddr(addr(3))),
        compare_live: true,
    };
    check("drill", &cfg, &world, action);
}

#[test]
fn snapshot_delete() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    let (old, keep) = (archive("old", b"db-1", None), archive("keep", b"db-2", None));
    with_snapshots(&cfg, &world, &[("old.zip", &old), ("keep.zip", &keep)]);
    check("delete", &cfg, &world, ActionSpec::EtcdSnapshotDelete { name: name("old"), s3: None });
}

#[test]
fn snapshot_prune_keeps_the_newest_recurring_ones() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    with_snapshots(
        &cfg,
        &world,
        &[
            ("2026-11-27T00:00:00Z_etcd.zip", &archive("2026-11-27T00:00:00Z_etcd", b"a", None)),
            ("2026-11-28T00:00:00Z_etcd.zip", &archive("2026-11-28T00:00:00Z_etcd", b"b", None)),
            ("2026-11-29T00:00:00Z_etcd.zip", &archive("2026-11-29T00:00:00Z_etcd", b"c", None)),
            ("before-upgrade.zip", &archive("before-upgrade", b"d", None)),
        ],
    );
    check("prune", &cfg, &world, ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Count { keep: 1 }, s3: None });
}

#[test]
fn a_prune_with_nothing_due_says_so_and_what_it_never_prunes() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    with_snapshots(
        &cfg,
        &world,
        &[
            ("2026-11-29T00:00:00Z_etcd.zip", &archive("2026-11-29T00:00:00Z_etcd", b"c", None)),
            ("before-upgrade.zip", &archive("before-upgrade", b"d", None)),
            ("manual.zip", &archive("manual", b"e", None)),
        ],
    );
    let action = ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Count { keep: 1 }, s3: None };
    check("prune-nothing-due", &cfg, &world, action);
}

#[test]
fn cleanup_of_helper_binaries() {
    let cfg = three();
    let world = running_world(&cfg.cluster, b"data", None);
    for n in cfg.cluster.etcd_nodes() {
        world.with_host(&n.address, |h| {
            h.files.insert("/opt/rke/rkectl/0.0.9-0123456789abcdef/rkectl".into(), b"old helper".to_vec());
        });
    }
    check("cleanup", &cfg, &world, ActionSpec::Cleanup);
}
