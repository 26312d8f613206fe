//! The library's own path from inputs to an applied plan, as the CLI takes it: `prepare`
//! (state files, the real refresh through the hosts, the PKI, compile) then `apply` (pool,
//! journal, run, state, verdict), on fake hosts.

mod common;

use common::*;
use rkectl::apply::ApplyError;
use rkectl::config::{HostAddr, LoadedConfig};
use rkectl::etcd::names;
use rkectl::exec::events::{ApplyEventKind, Recorder};
use rkectl::host::fake::FakeWorld;
use rkectl::model::SnapshotName;
use rkectl::model::action::ActionSpec;
use rkectl::prepare::Prepared;
use std::path::Path;
use std::sync::Arc;

fn config_of(dir: &Path, nodes: usize) -> LoadedConfig {
    config_in(dir, &etcd_cluster_yaml(nodes))
}

#[tokio::test]
async fn a_save_prepared_and_applied_through_the_library_reaches_every_host_and_counts_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(dir.path(), 3);
    let world = running_world(&cfg.cluster, b"the cluster's data", None);
    let p = prepare_action(cfg, &world, save_spec("lib.db")).await;
    let journal = p.paths.journal.clone();
    assert!(p.plan.has_changes());
    let rec = Recorder::default();
    let applied = apply_prepared(p, &world, &rec).await.unwrap_or_else(|e| panic!("apply: {e}"));
    let file = "/opt/rke/etcd-snapshots/lib.db.zip";
    let size = world.host(&HostAddr(addr(1))).files[file].len() as u64;
    for i in 1..=3 {
        assert_eq!(world.host(&HostAddr(addr(i))).files[file].len() as u64, size, "host {i}");
    }
    // Fake hosts cannot reach each other: both copies went through the workstation.
    assert_eq!((applied.traffic.workstation_bytes, applied.traffic.host_to_host_bytes), (4 * size, 0));
    assert!(!journal.exists(), "a finished apply sets its journal aside");
    assert!(rec.events().iter().any(|e| matches!(e.kind, ApplyEventKind::RunFinished { ok: true, .. })));
}

/// A restore of `snap.db`, which every one of 3 running hosts holds, prepared in a new
/// folder (kept alive by the first value).
async fn restore_of_snap_db() -> (tempfile::TempDir, Arc<FakeWorld>, Prepared) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(dir.path(), 3);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    let p = prepare_action(cfg, &world, restore_spec("snap.db")).await;
    (dir, world, p)
}

#[tokio::test]
async fn a_failure_before_any_change_is_a_refusal_and_leaves_no_journal() {
    let (_dir, world, p) = restore_of_snap_db().await;
    let journal = p.paths.journal.clone();
    world.fail_container(&HostAddr(addr(2)), names::CHECKSUM_CHECKER, 100);
    let rec = Recorder::default();
    let err = apply_prepared(p, &world, &rec).await.expect_err("the pre-flight fails");
    assert!(matches!(err, ApplyError::PreflightFailed { .. }), "{err:?}");
    assert!(!err.changed_cluster());
    assert!(!journal.exists(), "nothing changed, so nothing to resume");
    for i in 1..=3 {
        assert_eq!(world.host(&HostAddr(addr(i))).etcd_data(), Some(&b"data"[..]), "host {i}");
    }
}

#[tokio::test]
async fn a_failure_after_a_change_keeps_the_journal_for_the_next_apply() {
    let (_dir, world, p) = restore_of_snap_db().await;
    let journal = p.paths.journal.clone();
    world.fail_container(&HostAddr(addr(2)), names::RESTORE, 100);
    let rec = Recorder::default();
    let err = apply_prepared(p, &world, &rec).await.expect_err("the restore fails");
    assert!(matches!(err, ApplyError::Failed { .. }), "{err:?}");
    assert!(err.changed_cluster());
    assert!(journal.exists(), "the journal says where it stopped");
}

#[tokio::test]
async fn a_drill_reports_through_an_event_and_leaves_the_hosts_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(dir.path(), 3);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    // The third host has no copy: the drill there gets one staged, and removes it.
    world.with_host(&HostAddr(addr(3)), |h| {
        h.files.remove("/opt/rke/etcd-snapshots/snap.db");
    });
    // What the cluster holds, rkectl's own helper binary (uploaded once per version) aside.
    let cluster_state = |world: &FakeWorld| -> Vec<_> {
        (1..=3)
            .map(|i| {
                let mut h = world.host(&HostAddr(addr(i))).comparable();
                h.files.retain(|path, _| !path.starts_with("/opt/rke/rkectl/"));
                h
            })
            .collect()
    };
    let before = cluster_state(&world);
    let spec = ActionSpec::EtcdSnapshotDrill {
        name: SnapshotName::new("snap.db").unwrap(),
        from: rkectl::model::action::RestoreSearch::Hosts,
        host: Some(HostAddr(addr(3))),
        compare_live: false,
    };
    let p = prepare_action(cfg, &world, spec).await;
    assert!(!p.plan.needs_confirmation(), "a drill changes nothing, so it asks nothing");
    let rec = Recorder::default();
    apply_prepared(p, &world, &rec).await.unwrap_or_else(|e| panic!("apply: {e}"));
    let reports: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ApplyEventKind::DrillReport { host, report, .. } => Some((host, report)),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, Some(HostAddr(addr(3))));
    assert_eq!(reports[0].1.snapshot.size, b"snapshot-bytes".len() as u64);
    let after = cluster_state(&world);
    let files = |v: &[rkectl::host::fake::FakeHostState]| -> Vec<Vec<String>> {
        v.iter().map(|h| h.files.keys().cloned().chain(h.containers.keys().cloned()).collect()).collect()
    };
    assert!(before == after, "the drill changed a host: {:?} became {:?}", files(&before), files(&after));
}

#[tokio::test]
async fn the_apply_counts_the_steps_the_plan_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(dir.path(), 3);
    let world = running_world(&cfg.cluster, b"the cluster's data", None);
    let p = prepare_action(cfg, &world, save_spec("count.db")).await;
    let rendered = rkectl::plan::render::render(&p.plan, Default::default());
    let numbered = rendered
        .lines()
        .filter(|l| l.trim_start().split_once(". ").is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
        .count();
    assert!(rendered.contains(&format!("Steps ({numbered}):")), "{rendered}");
    assert!(rendered.contains("── barrier"), "the plan has barriers, which are not steps: {rendered}");
    let rec = Recorder::default();
    apply_prepared(p, &world, &rec).await.unwrap_or_else(|e| panic!("apply: {e}"));
    let started = rec.events().into_iter().find_map(|e| match e.kind {
        ApplyEventKind::RunStarted { steps, .. } => Some(steps),
        _ => None,
    });
    assert_eq!(started, Some(numbered), "the apply says it runs as many steps as the plan numbered");
}

#[tokio::test]
async fn a_new_pki_plan_shows_no_fingerprint_the_apply_would_not_deploy_and_the_apply_names_the_one_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(dir.path(), 3);
    let world = running_world(&cfg.cluster, b"the cluster's data", None);
    let p = prepare_action(cfg, &world, ActionSpec::Up).await;
    let ca = p.pki.as_ref().expect("a new PKI").pki.ca_fingerprint().to_string();
    let notes = p.plan.notes.join("\n");
    assert!(notes.contains("A new CA and new certificates are generated (--new-pki)"), "{notes}");
    let rendered = rkectl::plan::render::render(&p.plan, Default::default());
    assert!(!rendered.contains(&ca), "the plan shows a CA that is made again at apply:\n{rendered}");
    let rec = Recorder::default();
    apply_prepared(p, &world, &rec).await.unwrap_or_else(|e| panic!("apply: {e}"));
    let wrote = rec.events().into_iter().find_map(|e| match e.kind {
        ApplyEventKind::RunNote { message, .. } if message.starts_with("Wrote the cluster's PKI") => Some(message),
        _ => None,
    });
    assert!(wrote.as_deref().is_some_and(|m| m.contains(&ca)), "{wrote:?}");
}
