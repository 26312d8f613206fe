//! The engine on fake hosts: plan shape, barriers, crash and resume, failures, locking.
//!
//! Tests that run an action end to end take the library's path, as the CLI does: the plan
//! is made by `rkectl::prepare::prepare` (state files, the real refresh over the fake
//! world, the PKI, compile) and applied, or resumed from the journal, by
//! `rkectl::apply::apply` (see `common::prepare_action`, `apply_prepared`, `resume`).
//!
//! Some tests stay below that path, on purpose:
//! - the plan-shape tests (`restore_plan_of_*`, `every_template_*`) compile a plan from a
//!   hand-built observation (`common::restore_plan`): they check what compile makes of it,
//!   against golden files recorded from that observation;
//! - the journal-format test writes and reads a journal of a hand-compiled plan;
//! - the redaction test calls `rkectl::exec::run` with a `StepRunner` of its own (the
//!   scheduler's retries and log lines, without any host).
//!
//! (`journal_full.rs`, a binary of its own, also calls `exec::run`: it needs the journal
//! writer in hand to fill the disk under it.)

mod common;

use common::*;
use rkectl::apply::ApplyError;
use rkectl::config::HostAddr;
use rkectl::etcd::names;
use rkectl::exec::events::{ApplyEventKind, Recorder};
use rkectl::host::fake::{ContainerBehaviour, FakeHostState, FakeWorld};
use rkectl::model::action::ActionSpec;
use rkectl::plan::Plan;
use rkectl::plan::render::{RenderOptions, render};
use rkectl::state::journal;
use rkectl::steps::StepKind;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// For each step, every step it transitively waits for.
fn ancestors(plan: &Plan) -> HashMap<String, HashSet<String>> {
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for s in &plan.steps {
        let mut set = HashSet::new();
        for a in &s.after {
            set.insert(a.0.clone());
            set.extend(out.get(&a.0).cloned().unwrap_or_default());
        }
        out.insert(s.id.0.clone(), set);
    }
    out
}

fn assert_restore_shape(plan: &Plan, etcd_hosts: &[HostAddr]) {
    plan.graph().expect("acyclic");
    let anc = ancestors(plan);
    let order = [
        StepKind::Dial,
        StepKind::CleanHost,
        StepKind::Restore,
        StepKind::StartEtcd,
        StepKind::LogLinker,
        StepKind::RemoveLogLinker,
    ];
    for h in etcd_hosts {
        let mine: Vec<&rkectl::steps::Step> = plan.steps.iter().filter(|s| s.host.as_ref() == Some(h)).collect();
        let mut prev: Option<&rkectl::steps::Step> = None;
        for kind in order {
            let found: Vec<_> = mine.iter().filter(|s| s.kind() == kind).collect();
            assert_eq!(found.len(), 1, "{kind} appears {} times on {h}", found.len());
            if let Some(p) = prev {
                assert!(anc[&found[0].id.0].contains(&p.id.0), "{} must wait for {} on {h}", found[0].id, p.id);
            }
            prev = Some(found[0]);
        }
    }
    // No host is cleaned before every host passed its pre-flight.
    let preflight: Vec<&rkectl::steps::Step> = plan
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.kind(),
                StepKind::Dial | StepKind::VerifySnapshot | StepKind::PullImages | StepKind::FetchSnapshot
            )
        })
        .collect();
    for clean in plan.steps.iter().filter(|s| s.kind() == StepKind::CleanHost) {
        for p in &preflight {
            assert!(anc[&clean.id.0].contains(&p.id.0), "{} does not wait for {}", clean.id, p.id);
        }
    }
}

#[test]
fn restore_plan_of_the_reference_two_node_example() {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-node.yml")).unwrap();
    let cfg = load(&yaml);
    let world = running_world(&cfg.cluster, b"data-before", Some(("snapshot.db", b"snapshot-bytes")));
    let plan = restore_plan(&cfg, &world, "snapshot.db");
    assert_restore_shape(&plan, &etcd_addrs(&cfg.cluster));
    assert!(
        plan.steps.iter().all(|s| s.host.as_ref().is_none_or(|h| h.as_str() == "10.0.0.2")),
        "node1 is not an etcd host"
    );
    common::golden::check("restore-two-node.txt", &render(&plan, RenderOptions::default()));
}

/// A resumed restore asks only about what is left: the hosts not cleaned yet, and nothing
/// once every host's data is gone (there is nothing left to protect; finishing is the way
/// back to a cluster).
#[test]
fn a_resumes_confirmation_names_only_the_hosts_it_has_not_cleaned_yet() {
    let cfg = load(&etcd_cluster_yaml(3));
    let world = running_world(&cfg.cluster, b"data-before", Some(("snap.db", b"snapshot-bytes")));
    let plan = restore_plan(&cfg, &world, "snap.db");
    assert!(plan.destruction_summary().contains("on 3 hosts will be deleted"), "{}", plan.destruction_summary());
    let hosts = etcd_addrs(&cfg.cluster);
    // The destructive steps (cleaning, restoring) done on the first `n` hosts.
    let done_on = |n: usize| -> HashSet<_> {
        let on = |s: &&rkectl::steps::Step| s.host.as_ref().is_some_and(|h| hosts[..n].contains(h));
        plan.steps.iter().filter(|s| s.kind().is_destructive()).filter(on).map(|s| s.id.clone()).collect()
    };
    // Interrupted after every host was cleaned, before any restored: nothing is left to
    // delete, and the confirmation does not say there is.
    let cleaned: HashSet<_> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind(), StepKind::CleanHost | StepKind::RemoveEtcd))
        .map(|s| s.id.clone())
        .collect();
    let summary = plan.left(&cleaned).destruction_summary();
    assert!(
        summary.contains("onto 3 hosts, whose etcd data was already removed") && !summary.contains("deleted"),
        "{summary}"
    );
    let left = plan.left(&done_on(2));
    assert!(left.needs_confirmation());
    assert!(left.destruction_summary().contains("on 1 host will be deleted"), "{}", left.destruction_summary());
    let left = plan.left(&done_on(3));
    assert!(!left.needs_confirmation(), "nothing left to delete: {}", left.destruction_summary());
    assert!(left.has_changes(), "the restore itself is left");
}

#[test]
fn restore_plan_of_five_etcd_nodes() {
    let cfg = load(&etcd_cluster_yaml(5));
    let world = running_world(&cfg.cluster, b"data-before", Some(("snap.db", b"snapshot-bytes")));
    // node4 lost its copy: it gets one from a host that has it, before anything is cleaned.
    world.with_host(&HostAddr(addr(4)), |h| {
        h.files.remove("/opt/rke/etcd-snapshots/snap.db");
    });
    let plan = restore_plan(&cfg, &world, "snap.db");
    assert_restore_shape(&plan, &etcd_addrs(&cfg.cluster));
    assert_eq!(plan.steps.iter().filter(|s| s.kind() == StepKind::FetchSnapshot).count(), 1);
    common::golden::check("restore-five-node.txt", &render(&plan, RenderOptions::default()));
    let json = serde_json::to_value(&plan).unwrap();
    let kinds: HashSet<&str> = json["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    for k in ["dial", "clean-host", "restore", "start-etcd", "log-linker", "remove-log-linker"] {
        assert!(kinds.contains(k), "--json lacks {k}");
    }
    for s in json["steps"].as_array().unwrap() {
        assert!(s["id"].is_string() && s["after"].is_array() && (s["host"].is_string() || s["host"].is_null()));
    }
}

#[test]
fn every_template_names_known_kinds_and_compiles_to_an_acyclic_graph() {
    use rkectl::plan::template::{self, TEMPLATES};
    let cfg = load(&etcd_cluster_yaml(3));
    for (file, text) in TEMPLATES {
        let t = template::parse(file, text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.phases.is_empty(), "{file} has no phases");
    }
    let world = running_world(&cfg.cluster, b"d", Some(("s.db", b"x")));
    let observed = observed_for(&cfg.cluster, &world, "s.db");
    let name = rkectl::model::SnapshotName::new("s.db").unwrap();
    use rkectl::model::action::{ActionSpec, PrunePolicy};
    for action in [
        ActionSpec::Up,
        ActionSpec::EtcdSnapshotSave {
            name: rkectl::model::SnapshotName::new("new.db").unwrap(),
            generated_name: false,
            s3: None,
            include_state: false,
            seal_state: false,
        },
        ActionSpec::EtcdSnapshotRestore { name: name.clone(), from: rkectl::model::action::RestoreSearch::Hosts },
        ActionSpec::EtcdSnapshotDelete { name: name.clone(), s3: None },
        ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Count { keep: 1 }, s3: None },
    ] {
        let plan = compile(&cfg, &action, &observed);
        plan.graph().unwrap_or_else(|e| panic!("{}: {e}", action.template_name()));
    }
}

/// The hosts' states to compare runs by, without rkectl's helper binary: every apply
/// uploads it when it first dials a host, and it is this test program (tens of MB, which
/// copying at every crash point would make slow).
fn final_states(world: &FakeWorld, hosts: &[HostAddr]) -> Vec<FakeHostState> {
    let all = world.hosts.lock().unwrap();
    hosts
        .iter()
        .map(|h| {
            let s = &all[h];
            let files = s.files.iter().filter(|(path, _)| !path.starts_with("/opt/rke/rkectl/"));
            FakeHostState {
                reachable: s.reachable,
                docker_up: s.docker_up,
                images: s.images.clone(),
                containers: s.containers.clone(),
                files: files.map(|(p, c)| (p.clone(), c.clone())).collect(),
                ..Default::default()
            }
            .comparable()
        })
        .collect()
}

/// What the hosts hold of the cluster: their states without temporary helpers (refresh
/// runs the checksum checker; a process that dies while it runs cannot remove it).
fn cluster_part(mut states: Vec<FakeHostState>) -> Vec<FakeHostState> {
    for s in &mut states {
        s.containers.retain(|name, _| !names::TEMPORARY.contains(&name.as_str()));
    }
    states
}

/// The first step that failed for good, as the run reported it: kind, host, error.
fn first_failure(rec: &Recorder) -> (StepKind, Option<HostAddr>, String) {
    rec.events()
        .into_iter()
        .find_map(|e| match e.kind {
            ApplyEventKind::StepFailed { kind, host, error, .. } => Some((kind, host, error)),
            _ => None,
        })
        .expect("a step failed")
}

/// The message of the first failure an apply reports.
fn first_of(err: &ApplyError) -> &str {
    match err {
        ApplyError::PreflightFailed { first } | ApplyError::Failed { first, .. } => first,
        other => panic!("not a failed step: {other:?}"),
    }
}

/// A restore, prepare included, crashed at each host operation in turn (the refresh's
/// too), then finished by a new process from the journal (or, crashed before there was
/// one, run again) reaches the uninterrupted run's end state. Tokio's clock is paused: the
/// apply's waits pass at once.
#[tokio::test(start_paused = true)]
async fn restore_interrupted_at_every_operation_resumes_to_the_same_end_state() {
    let yaml = etcd_cluster_yaml(3);
    let cluster = load(&yaml).cluster;
    let hosts = etcd_addrs(&cluster);
    // Every run places the same certificates: the same PKI in RKE's state file.
    let pki = rkectl::rke::pki::Pki::generate(&cluster).unwrap();
    let root = tempfile::tempdir().unwrap();
    // Each run in a folder of its own: cluster.yml, RKE's state, the journal beside them.
    let folder = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        give_pki(&config_in(&dir, &yaml), &pki);
        dir
    };
    let world_before = || running_world(&cluster, b"data-after-snapshot", Some(("snap.db", b"snapshot-bytes")));

    // The uninterrupted run, refresh included.
    let world = world_before();
    let initial = cluster_part(final_states(&world, &hosts));
    let dir = folder("reference");
    let start_ops = world.op_count();
    let out = run_action(config_in(&dir, &yaml), &world, restore_spec("snap.db"), &Recorder::default()).await;
    out.unwrap_or_else(|e| panic!("{e}"));
    let total_ops = world.op_count() - start_ops;
    eprintln!("a 3-host restore, prepare included, is {total_ops} host operations; crashing at each of them");
    let reference = final_states(&world, &hosts);
    for (h, s) in hosts.iter().zip(&reference) {
        let data = String::from_utf8_lossy(s.etcd_data().expect("restored data"));
        assert!(data.starts_with("snapshot-bytes|member=etcd-node"), "{h}: {data}");
        assert!(s.containers.get(names::ETCD).is_some_and(|c| c.running));
        for t in names::TEMPORARY {
            assert!(!s.containers.contains_key(*t), "{t} left on {h}");
        }
    }

    let mut during_prepare = 0;
    for crash_at in 1..=total_ops {
        let world = world_before();
        let dir = folder(&format!("crash-{crash_at}"));
        let cfg = config_in(&dir, &yaml);
        let journal = journal_path(&cfg);
        world.crash_after(crash_at);
        {
            let rec = Recorder::default();
            let run = run_action(cfg, &world, restore_spec("snap.db"), &rec);
            tokio::select! {
                r = run => panic!("crash point {crash_at} not reached: {:?}", r.map(|_| ())),
                _ = world.crashed.notified() => {}
            }
        }
        // The process "dies": a journal write already handed to the disk lands (or not);
        // nothing else runs.
        std::thread::sleep(Duration::from_millis(20));
        world.no_crash();
        // A new process: only the files beside cluster.yml survive.
        let cfg = config_in(&dir, &yaml);
        let out = if journal.exists() {
            resume(cfg, &world, &Recorder::default()).await
        } else {
            // Crashed while preparing: nothing of the cluster changed, nothing to resume; the
            // action is simply run again (and removes a checker the dead process left).
            during_prepare += 1;
            let now = cluster_part(final_states(&world, &hosts));
            assert!(now == initial, "crash point {crash_at}, while preparing, changed a host");
            run_action(cfg, &world, restore_spec("snap.db"), &Recorder::default()).await
        };
        out.unwrap_or_else(|e| panic!("crash point {crash_at}: {e}"));
        assert!(!journal.exists(), "crash point {crash_at}: the finished apply left its journal");
        assert_eq!(final_states(&world, &hosts), reference, "crash point {crash_at} of {total_ops}");
    }
    eprintln!("{during_prepare} of the crash points were while preparing");
    assert!(during_prepare > 0 && during_prepare < total_ops, "refresh's operations are crash points too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_preflight_on_one_host_of_fifty_stops_everything_before_the_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(50));
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    let p = prepare_action(cfg, &world, restore_spec("snap.db")).await;
    // Refresh runs the same checker: the failure is injected once the plan is made.
    let bad = HostAddr(addr(17));
    world.fail_container(&bad, names::CHECKSUM_CHECKER, 100);
    let rec = Recorder::default();
    let err = apply_prepared(p, &world, &rec).await.expect_err("the pre-flight fails");
    assert!(matches!(err, ApplyError::PreflightFailed { .. }), "{err:?}");
    let (kind, host, _) = first_failure(&rec);
    assert_eq!(host.as_ref(), Some(&bad));
    assert_eq!(kind, StepKind::VerifySnapshot);
    let msg = first_of(&err);
    assert!(msg.contains(bad.as_str()) && msg.contains("verify-snapshot"), "{msg}");
    for e in rec.events() {
        if let ApplyEventKind::StepStarted { kind, id, .. } = &e.kind {
            assert!(!kind.is_destructive(), "{id} started after a pre-flight failure");
        }
    }
    for h in hosts {
        let s = world.host(&h);
        assert_eq!(s.etcd_data(), Some(&b"data"[..]), "{h} data changed");
        assert!(s.containers.get(names::ETCD).is_some_and(|c| c.running), "{h} etcd stopped");
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_a_helper_failure_reports_its_logs() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = etcd_cluster_yaml(3);
    let cfg = config_in(dir.path(), &yaml);
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    // etcd-restore fails twice on node2, then works: within the bounded retries.
    world.fail_container(&HostAddr(addr(2)), names::RESTORE, 2);
    let rec = Recorder::default();
    run_action(cfg, &world, restore_spec("snap.db"), &rec).await.unwrap_or_else(|e| panic!("{e}"));
    let retries = rec.events().iter().filter(|e| matches!(e.kind, ApplyEventKind::StepRetrying { .. })).count();
    assert_eq!(retries, 2);

    // Failing for good: reported with the helper's output, and no helper container remains.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &yaml);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    world.fail_container(&HostAddr(addr(2)), names::RESTORE, 100);
    let err = run_action(cfg, &world, restore_spec("snap.db"), &Recorder::default()).await.expect_err("it fails");
    let msg = first_of(&err);
    assert!(msg.contains("injected failure"), "{msg}");
    for h in hosts {
        for t in names::TEMPORARY {
            assert!(!world.host(&h).containers.contains_key(*t), "{t} left on {h}");
        }
    }
}

/// A behaviour of one's own replaces the agent simulator in every container that ends:
/// wrapping the default, it fails one helper on one host with its own words, and the apply
/// stops on that helper saying them, while the other helpers are still played underneath.
#[tokio::test]
async fn a_plugged_container_behaviour_plays_the_helpers_in_place_of_the_default() {
    struct RestoreFailsOn {
        host: HostAddr,
        inner: Arc<dyn ContainerBehaviour>,
        played: Mutex<Vec<String>>,
    }
    impl ContainerBehaviour for RestoreFailsOn {
        fn run(
            &self,
            world: &FakeWorld,
            addr: &HostAddr,
            hosts: &mut BTreeMap<HostAddr, FakeHostState>,
            name: &str,
            cmd: &[String],
        ) -> (i64, String) {
            self.played.lock().unwrap().push(name.to_string());
            if *addr == self.host && name == names::RESTORE {
                return (1, "Error: write /var/lib/etcd: no space left on device (plugged)".into());
            }
            self.inner.run(world, addr, hosts, name, cmd)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    let bad = HostAddr(addr(2));
    let plugged = Arc::new(RestoreFailsOn { host: bad.clone(), inner: world.behaviour(), played: Mutex::default() });
    world.set_behaviour(plugged.clone());
    let rec = Recorder::default();
    let err = run_action(cfg, &world, restore_spec("snap.db"), &rec).await.expect_err("the plugged failure was played");
    let (_, host, _) = first_failure(&rec);
    assert_eq!(host.as_ref(), Some(&bad));
    let msg = first_of(&err);
    assert!(msg.contains("no space left on device (plugged)"), "{msg}");
    let played = plugged.played.lock().unwrap();
    assert!(played.iter().any(|n| n == names::CHECKSUM_CHECKER), "the checker did not go through it: {played:?}");
}

#[test]
fn a_second_concurrent_apply_is_refused_and_says_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.rkectl-lock");
    let first = rkectl::state::lock::ApplyLock::acquire(&path, "rkectl apply one").unwrap();
    let err = rkectl::state::lock::ApplyLock::acquire(&path, "rkectl apply two").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()) && msg.contains("rkectl apply one"), "{msg}");
    drop(first);
    let again = rkectl::state::lock::ApplyLock::acquire(&path, "rkectl apply three").unwrap();
    assert!(again.previous.is_none(), "a clean release leaves no record");
}

#[test]
fn journal_tolerates_a_torn_last_line_and_refuses_corruption_and_newer_formats() {
    let cfg = load(&etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"d", Some(("s.db", b"x")));
    let plan = restore_plan(&cfg, &world, "s.db");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("j");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut jw = journal::JournalWriter::create(&p, "cluster.yml", &plan).unwrap();
        jw.push(&journal::Record::Finished { step: plan.steps[0].id.clone() });
        jw.sync().await.unwrap();
    });
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"type\":\"finished\",\"st");
    std::fs::write(&p, &text).unwrap();
    let st = journal::read(&p).unwrap();
    assert_eq!(st.finished.len(), 1);

    let corrupt = text.replacen("\"type\":\"finished\"", "\"type\":\"bogus\"", 1) + "\n";
    std::fs::write(&p, corrupt).unwrap();
    assert!(matches!(journal::read(&p), Err(journal::JournalError::Corrupt { line: 2, .. })));

    let newer = text.replacen(&format!("\"format\":{}", rkectl::plan::FORMAT), "\"format\":99", 1);
    std::fs::write(&p, newer).unwrap();
    assert!(matches!(journal::read(&p), Err(journal::JournalError::OtherFormat { found: 99, .. })));
}

/// Fails its first attempt of every step with a transient error quoting a secret.
struct QuotesASecret(std::sync::Mutex<HashSet<String>>);

#[async_trait::async_trait]
impl rkectl::steps::context::StepRunner for QuotesASecret {
    async fn run(
        &self,
        step: &rkectl::steps::Step,
        ctx: &rkectl::steps::context::StepCtx<'_>,
    ) -> Result<(), rkectl::steps::context::StepError> {
        ctx.log("test", "the server said: bad key AKIASECRET1234");
        if self.0.lock().unwrap().insert(step.id.0.clone()) {
            return Err(rkectl::steps::context::StepError::transient("S3 refused access key AKIASECRET1234"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn retries_and_log_lines_are_redacted_like_failures() {
    let cfg = load(&etcd_cluster_yaml(2));
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    let plan = restore_plan(&cfg, &world, "snap.db");
    let dir = tempfile::tempdir().unwrap();
    let mut jw = rkectl::state::journal::JournalWriter::create(&dir.path().join("j"), "cluster.yml", &plan).unwrap();
    let rec = Recorder::default();
    let redact = |s: &str| s.replace("AKIASECRET1234", "***");
    let runner = QuotesASecret(Default::default());
    let out = rkectl::exec::run(&plan, &runner, &mut jw, &HashSet::new(), &fast(), &rec, &redact).await.unwrap();
    assert!(out.ok(), "{:?}", out.failures);
    let events = serde_json::to_string(&rec.events()).unwrap();
    assert!(events.contains("step-retrying") && events.contains("***"), "{events}");
    assert!(!events.contains("AKIASECRET1234"), "a secret reached the reporter");
}

#[tokio::test]
async fn the_etcd_image_is_pulled_with_its_registrys_credentials_and_a_wrong_password_stops_before_any_change() {
    let registries = "private_registries:\n  - url: reg.example.com:5000\n    user: ci\n    password: right-horse-battery\n    is_default: true\n";
    let cfg = load(&format!("{}{registries}", etcd_cluster_yaml(3)));
    let image = cfg.cluster.etcd.image.clone();
    assert_eq!(image, format!("reg.example.com:5000/{ETCD_IMAGE}"), "the default registry renames the default image");
    let login = ("ci".to_string(), "right-horse-battery".to_string());

    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &format!("{}{registries}", etcd_cluster_yaml(3)));
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    world.registry_logins.lock().unwrap().insert("reg.example.com:5000".into(), login.clone());
    // The hosts hold the image under its own name only: refresh finds the renamed one
    // missing. An `up`, not a restore: a restore's refresh hashes the snapshot with a
    // helper in that image, which cannot run before the image is there.
    let p = prepare_action(cfg, &world, ActionSpec::Up).await;
    assert_eq!(p.plan.steps.iter().filter(|s| s.kind() == StepKind::PullImages).count(), 3);
    apply_prepared(p, &world, &Recorder::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let pulls = world.pulls.lock().unwrap().clone();
    assert_eq!(pulls.len(), 3, "{pulls:?}");
    assert!(pulls.iter().all(|(_, i, user)| i == &image && user.as_deref() == Some("ci")), "{pulls:?}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = registries.replace("right-horse-battery", "wrong-horse");
    let cfg = config_in(dir.path(), &format!("{}{wrong}", etcd_cluster_yaml(3)));
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data", Some(("snap.db", b"snapshot-bytes")));
    world.registry_logins.lock().unwrap().insert("reg.example.com:5000".into(), login);
    let rec = Recorder::default();
    let err = run_action(cfg, &world, ActionSpec::Up, &rec).await.expect_err("the pull is refused");
    assert!(matches!(err, ApplyError::PreflightFailed { .. }), "{err:?}");
    let msg = first_of(&err);
    assert!(msg.contains("unauthorized") && msg.contains(&image), "{msg}");
    assert!(!msg.contains("wrong-horse"), "the password never shows: {msg}");
    for e in rec.events() {
        if let ApplyEventKind::StepStarted { kind, id, .. } = &e.kind {
            assert!(!kind.is_destructive(), "{id} started after the pull failed");
        }
    }
    for h in hosts {
        assert_eq!(world.host(&h).etcd_data(), Some(&b"data"[..]), "{h} changed");
    }
}

/// A record left behind by a snapshot whose files were deleted (by hand, by RKE's
/// retention, by `rke etcd snapshot-remove`) does not stand in for a file: saving that
/// name again takes a new snapshot and gives every host a copy.
#[tokio::test]
async fn a_record_whose_file_is_gone_does_not_stand_in_for_it() {
    use rkectl::model::{SnapshotFormat, SnapshotName};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let hosts = etcd_addrs(&cfg.cluster);
    let world = running_world(&cfg.cluster, b"data-now", None);
    let name = SnapshotName::new("nightly").unwrap();
    let old = rkectl::host::fake::archive("nightly", b"snapshot:data-before", None);
    let stale = rkectl::agent::report::SnapshotReport {
        name: "nightly".into(),
        format: SnapshotFormat::Zip,
        size: old.len() as u64,
        checksum: rkectl::model::Checksum::of(&old),
        etcd_ok: true,
        problem: None,
        etcd: None,
        uploaded: false,
        db: None,
        has_state: false,
        identical_everywhere: true,
    };
    for h in &hosts {
        world.with_host(h, |s| {
            s.files.insert(rkectl::layout::record(&name), serde_json::to_vec(&stale).unwrap());
        });
    }
    // Refresh reads the records too: a record alone does not make the name taken.
    run_action(cfg, &world, save_spec("nightly"), &Recorder::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let source = world.host(&HostAddr(addr(1))).files[&format!("{}/nightly.zip", rkectl::layout::SNAPSHOT_DIR)].clone();
    assert_ne!(source, old, "a new snapshot was taken");
    for h in hosts {
        let s = world.host(&h);
        assert_eq!(s.files.get(&format!("{}/nightly.zip", rkectl::layout::SNAPSHOT_DIR)), Some(&source), "{h}");
        let r: rkectl::agent::report::SnapshotReport =
            serde_json::from_slice(&s.files[&rkectl::layout::record(&SnapshotName::new("nightly").unwrap())]).unwrap();
        assert_eq!(r.checksum, rkectl::model::Checksum::of(&source), "{h}: the record describes the new file");
    }
}

/// Issue 11, item 13: a member whose certificate file does not name it (an old
/// certificate, from before its hostname_override changed) gets the cluster's certificate,
/// the plan says it replaces the file, and etcd, whose container stays as it is, restarts
/// to load it.
#[tokio::test]
async fn a_certificate_file_without_the_members_names_is_replaced_and_etcd_restarts_to_load_it() {
    use rkectl::etcd::member::{spec, tls_files};
    use rkectl::model::{ClusterState, InitialCluster};
    use rkectl::rke::pki::Pki;
    use rkectl::steps::StepAction;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let cluster = cfg.cluster.clone();
    let pki = Pki::generate(&cluster).unwrap();
    // The cluster's PKI is RKE's state file beside cluster.yml.
    give_pki(&cfg, &pki);
    // The same CA and keys, the certificates signed when node2 was called node2-old.
    let mut old = pki.clone();
    old.reissue_stale(&load(&etcd_cluster_yaml(3).replace("node2\n", "node2-old\n")).cluster).unwrap();
    let world = running_world(&cluster, b"data", None);
    let ic = rkectl::etcd::resolve_initial_cluster(&cluster, &InitialCluster::AllEtcdNodes);
    for n in cluster.etcd_nodes() {
        let s = spec(&cluster, n, &ic, ClusterState::Existing, "x86_64");
        let on_host = if n.address.as_str() == addr(2) { &old } else { &pki };
        world.with_host(&n.address, |h| {
            let c = h.containers.get_mut(names::ETCD).unwrap();
            c.spec_image = s.image.clone();
            c.cmd = s.cmd.clone();
            c.args = s.entrypoint.iter().flatten().chain(&s.cmd).cloned().collect();
            c.env = s.env.clone();
            c.binds = s.binds.clone();
            c.labels = s.labels.clone();
            for (path, content, _) in on_host.member_files(n).unwrap() {
                h.files.insert(path, content.expose().as_bytes().to_vec());
            }
        });
    }
    // Refresh reads the certificates on each host and the members etcd knows.
    let p = prepare_action(cfg, &world, rkectl::model::action::ActionSpec::Up).await;
    let plan = &p.plan;
    let node2 = HostAddr(addr(2));
    let on = |kind: StepKind| plan.steps.iter().filter(|s| s.kind() == kind).collect::<Vec<_>>();
    let deploys = on(StepKind::DeployCerts);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0].host.as_ref(), Some(&node2));
    assert!(deploys[0].action.replaces().unwrap().why.contains("does not name node2"), "{deploys:?}");
    assert!(plan.needs_confirmation());
    let starts = on(StepKind::StartEtcd);
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(
        matches!(starts[0].action, StepAction::StartEtcd(rkectl::steps::StartEtcd { restart: true, .. })),
        "{starts:?}"
    );

    let rec = Recorder::default();
    apply_prepared(p, &world, &rec).await.unwrap_or_else(|e| panic!("{e}"));
    let h = world.host(&node2);
    let n2 = cluster.node(&node2).unwrap();
    let placed = String::from_utf8(h.files[&tls_files(n2).cert].clone()).unwrap();
    assert_eq!(placed, pki.member(n2).unwrap().cert, "the cluster's certificate, naming node2");
    let etcd = &h.containers[names::ETCD];
    assert!(etcd.running && etcd.id == "old", "restarted, not recreated: {etcd:?}");
    let events = serde_json::to_string(&rec.events()).unwrap();
    assert!(events.contains(&format!("Restarted [etcd] container on host [{node2}]")), "{events}");
    assert!(!events.contains("PRIVATE KEY"), "a key reached the reporter");
    for i in [1, 3] {
        assert_eq!(world.host(&HostAddr(addr(i))).containers[names::ETCD].id, "old");
    }
}

fn progress_counts(rec: &Recorder) -> Vec<u64> {
    rec.events()
        .iter()
        .filter_map(|e| match e.kind {
            ApplyEventKind::BytesTransferred { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect()
}

/// A helper that prints a line and then nothing is stopped and removed once it has been
/// silent for the helper limit, and the step fails saying so (retried: it may pass).
/// Tokio's paused clock lets the minutes pass at once; no real time is measured.
#[tokio::test(start_paused = true)]
async fn a_silent_helper_is_stopped_and_the_step_fails_saying_so() {
    use rkectl::host::fake::Pace;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"data", None);
    let node = HostAddr(addr(1));
    let hang = Pace { chunks: vec![(Duration::from_secs(1), "RKECTL-PROGRESS 1024\n".into())], then_hang: true };
    world.pace(&node, names::SNAPSHOT_ONCE, hang);
    let p = prepare_action(cfg, &world, save_spec("silent.db")).await;
    let rec = Recorder::default();
    let t0 = tokio::time::Instant::now();
    // A hang here (the wait no longer bounded) fails the test instead of stalling it.
    let out = tokio::time::timeout(Duration::from_secs(24 * 3600), async { apply_prepared(p, &world, &rec).await })
        .await
        .expect("the silent helper was waited for without end");
    let err = out.expect_err("the silent helper fails the save");
    let msg = first_of(&err);
    assert!(
        msg.contains(&format!(
            "container etcd-snapshot-once on {node} printed nothing for 600 s, so it was taken for hung; it was stopped and removed"
        )),
        "{msg}"
    );
    assert_eq!(first_failure(&rec).0, StepKind::SaveSnapshot);
    let retries = rec.events().iter().filter(|e| matches!(e.kind, ApplyEventKind::StepRetrying { .. })).count();
    assert_eq!(retries, 2, "a silent helper is a transient failure, tried again within the bounds");
    assert!(t0.elapsed() >= Duration::from_secs(3 * 600), "{:?} of tokio time", t0.elapsed());
    let s = world.host(&node);
    assert!(!s.containers.contains_key(names::SNAPSHOT_ONCE), "the hung helper is still there");
    assert!(!s.files.keys().any(|f| f.contains("silent.db")), "a hung save left files");
    assert_eq!(progress_counts(&rec), vec![1024, 1024, 1024], "its progress was forwarded");
}

/// A helper that prints something every 500 s is waited for as long as it takes (here
/// 2,500 s, over four times the silence limit) and its progress is forwarded.
#[tokio::test(start_paused = true)]
async fn a_slow_helper_that_keeps_printing_is_waited_for() {
    use rkectl::host::fake::Pace;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"data", None);
    let node = HostAddr(addr(1));
    let chunks = (1..=5).map(|i| (Duration::from_secs(500), format!("RKECTL-PROGRESS {}\n", i * 1000))).collect();
    world.pace(&node, names::SNAPSHOT_ONCE, Pace { chunks, then_hang: false });
    let p = prepare_action(cfg, &world, save_spec("slow.db")).await;
    let rec = Recorder::default();
    let t0 = tokio::time::Instant::now();
    let out = apply_prepared(p, &world, &rec).await;
    out.unwrap_or_else(|e| panic!("{e}"));
    assert!(t0.elapsed() >= Duration::from_secs(2500), "{:?} of tokio time", t0.elapsed());
    assert_eq!(progress_counts(&rec), vec![1000, 2000, 3000, 4000, 5000]);
    let s = world.host(&node);
    assert!(s.files.contains_key("/opt/rke/etcd-snapshots/slow.db.zip"), "{:?}", s.files.keys());
    assert!(!s.containers.contains_key(names::SNAPSHOT_ONCE));
}

/// Following a helper that prints four progress lines a second for 25 minutes reads its
/// output once: every byte is handed out one time, and each line reaches the watcher once
/// (re-reading the whole log twice a second would hand out about 1,500 times as much).
#[tokio::test(start_paused = true)]
async fn a_long_helpers_output_is_read_once() {
    use rkectl::host::fake::Pace;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(1));
    let world = running_world(&cfg.cluster, b"data", None);
    let node = HostAddr(addr(1));
    let lines = 6000u64;
    let chunks: Vec<(Duration, String)> =
        (1..=lines).map(|i| (Duration::from_millis(250), format!("RKECTL-PROGRESS {}\n", i * 65536))).collect();
    let printed: usize = chunks.iter().map(|(_, t)| t.len()).sum();
    world.pace(&node, names::SNAPSHOT_ONCE, Pace { chunks, then_hang: false });
    let p = prepare_action(cfg, &world, save_spec("long.db")).await;
    let rec = Recorder::default();
    let before = world.log_bytes_read();
    let out = apply_prepared(p, &world, &rec).await;
    out.unwrap_or_else(|e| panic!("{e}"));
    let read = world.log_bytes_read() - before;
    // The progress lines and the report line (well under 4 KiB), each once.
    assert!(read as usize >= printed, "{read} < {printed}");
    assert!((read as usize) < printed + 4096, "read {read} bytes of output for {printed} printed");
    // Every line, once and in order: none skipped between two reads, none seen twice.
    let want: Vec<u64> = (1..=lines).map(|i| i * 65536).collect();
    assert!(progress_counts(&rec) == want, "the watcher did not see each progress line once");
    println!("MEASURE a 25-minute helper printing {printed} bytes: {read} bytes of output read");
}

/// Where two hosts cannot reach each other (fake hosts share no network), a save's copies
/// go through the workstation, say so, and are counted as such: twice the snapshot's size
/// per copy (down from the source, up to the destination), nothing host to host.
#[tokio::test]
async fn copies_that_cannot_go_host_to_host_go_through_the_workstation_and_are_counted() {
    use rkectl::exec::events::{DataPath, Reporter, TrafficCounter};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), &etcd_cluster_yaml(3));
    let world = running_world(&cfg.cluster, b"the data of the cluster", None);
    let p = prepare_action(cfg, &world, save_spec("copied.db")).await;
    let rec = Recorder::default();
    let out = apply_prepared(p, &world, &rec).await;
    let applied = out.unwrap_or_else(|e| panic!("{e}"));
    let size = world.host(&HostAddr(addr(1))).files["/opt/rke/etcd-snapshots/copied.db.zip"].len() as u64;
    let counter = TrafficCounter::default();
    let mut moved = Vec::new();
    let mut warned = 0;
    for e in rec.events() {
        counter.event(&e);
        match &e.kind {
            ApplyEventKind::BytesMoved { via, bytes, .. } => moved.push((*via, *bytes)),
            ApplyEventKind::StepLog { message, .. } if message.contains("copying it through this workstation") => {
                warned += 1
            }
            _ => {}
        }
    }
    assert_eq!(moved, vec![(DataPath::Workstation, 2 * size); 2]);
    assert_eq!(warned, 2);
    let total = counter.total();
    assert_eq!((total.workstation_bytes, total.host_to_host_bytes), (4 * size, 0));
    assert_eq!(applied.traffic, total, "the apply counts the same");
    for i in 2..=3 {
        let s = world.host(&HostAddr(addr(i)));
        assert_eq!(s.files["/opt/rke/etcd-snapshots/copied.db.zip"].len() as u64, size);
        assert!(!s.containers.keys().any(|c| c.contains("snapshot")), "{:?}", s.containers.keys());
    }
}

/// The source's copy of a save is damaged on its disk after the save (its record says
/// other bytes): its copies, through the workstation here, fail, and at no host operation
/// where the apply may die does another host hold a file of other bytes under the
/// snapshot's name, where it would later count as that host's own copy. The bytes are
/// checked before the file is renamed into place, not after.
#[tokio::test(start_paused = true)]
async fn a_copy_that_is_not_the_pinned_bytes_never_lands_under_the_snapshots_name() {
    /// Damages the saved file once the save ends; notes when each copy began.
    struct DamagedAfterSave {
        inner: Arc<dyn ContainerBehaviour>,
        copies: Mutex<Vec<(String, usize)>>,
    }
    impl ContainerBehaviour for DamagedAfterSave {
        fn run(
            &self,
            world: &FakeWorld,
            addr: &HostAddr,
            hosts: &mut BTreeMap<HostAddr, FakeHostState>,
            name: &str,
            cmd: &[String],
        ) -> (i64, String) {
            let out = self.inner.run(world, addr, hosts, name, cmd);
            if name == names::SNAPSHOT_ONCE && out.0 == 0 {
                let file = hosts.get_mut(addr).and_then(|s| s.files.get_mut(FILE)).expect("the saved file");
                *file.last_mut().expect("not empty") ^= 0xff;
            }
            if name.starts_with(names::SERVE_SNAPSHOT) {
                self.copies.lock().unwrap().push((name.to_string(), world.op_count()));
            }
            out
        }
    }
    const FILE: &str = "/opt/rke/etcd-snapshots/damaged.db.zip";
    let yaml = etcd_cluster_yaml(3);
    let root = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut attempt = || {
        n += 1;
        let dir = root.path().join(format!("run-{n}"));
        std::fs::create_dir(&dir).unwrap();
        let cfg = config_in(&dir, &yaml);
        let world = running_world(&cfg.cluster, b"the data of the cluster", None);
        let damage = Arc::new(DamagedAfterSave { inner: world.behaviour(), copies: Mutex::default() });
        world.set_behaviour(damage.clone());
        (cfg, world, damage)
    };
    let others = [HostAddr(addr(2)), HostAddr(addr(3))];
    let no_damaged_copy = |world: &FakeWorld, when: &str| {
        for h in &others {
            assert!(!world.host(h).files.contains_key(FILE), "{when}: {h} holds the damaged bytes as its own copy");
        }
    };

    // Uninterrupted: the copies fail, saying why, and leave nothing.
    let (cfg, world, damage) = attempt();
    let p = prepare_action(cfg, &world, save_spec("damaged.db")).await;
    let start = world.op_count();
    let err = apply_prepared(p, &world, &Recorder::default()).await.expect_err("damaged copies are refused");
    let total = world.op_count() - start;
    let msg = first_of(&err);
    assert!(msg.contains("arrived damaged") && msg.contains("it was not kept"), "{msg}");
    no_damaged_copy(&world, "after the apply");

    // Killed at each host operation of the copies' first attempt in turn (the save's are
    // crash points of the restore test's kind; the retries do the same again; each point
    // costs a prepare).
    let copies = damage.copies.lock().unwrap().clone();
    let first = copies.first().expect("a copy was tried").1 - start;
    let retried = copies.iter().enumerate().find(|(i, (c, _))| copies[..*i].iter().any(|(d, _)| d == c));
    let last = retried.map_or(total, |(_, (_, at))| at - start);
    eprintln!("crashing the failing save ({total} host operations) at each of its operations {first} to {last}");
    for crash_at in first..=last {
        let (cfg, world, _) = attempt();
        let p = prepare_action(cfg, &world, save_spec("damaged.db")).await;
        world.crash_after(crash_at);
        let rec = Recorder::default();
        tokio::select! {
            _ = apply_prepared(p, &world, &rec) => {}
            _ = world.crashed.notified() => {}
        }
        no_damaged_copy(&world, &format!("crash point {crash_at} of {total}"));
    }
}

/// A cluster RKE built, with RKE's `etcd-rolling-snapshots` uploading to S3 with the keys
/// of `rolling_secret` (cluster.yml's secret key is `weak-secret`).
fn rke_cluster_with_rolling_keys(dir: &Path, rolling_secret: &str) -> (rkectl::config::LoadedConfig, Arc<FakeWorld>) {
    use base64::Engine;
    use rkectl::etcd::member::spec;
    use rkectl::model::{ClusterState, InitialCluster};
    let yaml = format!(
        "{}services:\n  etcd:\n    backup_config:\n      interval_hours: 12\n      retention: 6\n      s3backupconfig:\n        access_key: AKIATESTACCESS\n        secret_key: weak-secret\n        bucket_name: b\n        endpoint: s3.example.com\n",
        etcd_cluster_yaml(3)
    );
    let cfg = config_in(dir, &yaml);
    let cluster = cfg.cluster.clone();
    let pki = rkectl::rke::pki::Pki::generate(&cluster).unwrap();
    give_pki(&cfg, &pki);
    let world = running_world(&cluster, b"data", None);
    let ic = rkectl::etcd::resolve_initial_cluster(&cluster, &InitialCluster::AllEtcdNodes);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for n in cluster.etcd_nodes() {
        let s = spec(&cluster, n, &ic, ClusterState::Existing, "x86_64");
        world.with_host(&n.address, |h| {
            let c = h.containers.get_mut(names::ETCD).unwrap();
            c.spec_image = s.image.clone();
            c.cmd = s.cmd.clone();
            c.args = s.cmd.clone();
            c.env = s.env.clone();
            c.binds = s.binds.clone();
            c.labels = s.labels.clone();
            for (path, content, _) in pki.member_files(n).unwrap() {
                h.files.insert(path, content.expose().as_bytes().to_vec());
            }
            let mut rolling = c.clone();
            rolling.args = [
                "/opt/rke-tools/rke-etcd-backup",
                "etcd-backup",
                "save",
                "--creation=12h",
                "--retention=72h",
                "--s3-backup=true",
                "--s3-endpoint=s3.example.com",
                "--s3-bucketName=b",
            ]
            .map(String::from)
            .to_vec();
            rolling.cmd = rolling.args.clone();
            rolling.env = vec![
                format!("S3_ACCESS_KEY={}", b64("AKIATESTACCESS")),
                format!("S3_SECRET_KEY={}", b64(rolling_secret)),
                "PATH=/usr/bin".into(),
            ];
            rolling.labels = BTreeMap::new();
            rolling.binds = vec![];
            h.containers.insert(names::ROLLING_SNAPSHOTS.into(), rolling);
        });
    }
    (cfg, world)
}

#[tokio::test]
async fn rkes_rolling_service_keys_are_compared_without_a_trace_of_them_in_the_plan() {
    use base64::Engine;
    for (on_nodes, replaced) in [("weak-secret", false), ("another-weak-one", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, world) = rke_cluster_with_rolling_keys(dir.path(), on_nodes);
        let p = prepare_action(cfg, &world, ActionSpec::Up).await;
        let rolling: Vec<_> = p.plan.steps.iter().filter(|s| s.kind() == StepKind::StartRollingSnapshots).collect();
        if replaced {
            assert_eq!(rolling.len(), 3, "{rolling:?}");
            let why = &rolling[0].action.replaces().expect("replaces RKE's service").why;
            assert_eq!(why, "its S3_SECRET_KEY is not the key in cluster.yml");
        } else {
            assert!(rolling.is_empty(), "RKE's service with cluster.yml's keys stays: {rolling:?}");
        }
        // Neither key, nor anything derived from one that a guess could be checked against
        // offline (the unsalted BLAKE3 prefix plans used to carry), is in the plan (which is
        // also what the journal and --json carry).
        let plan = serde_json::to_string(&p.plan).unwrap();
        for secret in ["weak-secret", on_nodes, "AKIATESTACCESS"] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
            for value in [secret.to_string(), b64.clone()] {
                let hash = blake3::hash(value.as_bytes()).to_hex();
                assert!(!plan.contains(&value), "{value} is in the plan");
                assert!(!plan.contains(&hash[..8]), "a hash of {value} is in the plan");
            }
        }
        let env = &p.plan.observed.host(&HostAddr(addr(1))).unwrap().containers[names::ROLLING_SNAPSHOTS].env;
        let secret_seen = if replaced { "differs" } else { "matches" };
        assert_eq!(
            serde_json::to_value(env).unwrap(),
            serde_json::json!({"PATH": "not-compared", "S3_ACCESS_KEY": "matches", "S3_SECRET_KEY": secret_seen})
        );
    }
}

/// With cluster.yml's `s3backupconfig` (saves upload there), a delete without `--s3` says
/// that the S3 copy stays; a restore of a name in neither place does not advise the `--s3`
/// that cluster.yml already stands for, and offers the names of both places.
#[test]
fn with_s3backupconfig_a_delete_says_the_s3_copy_stays_and_a_missing_restore_names_both_places() {
    let yaml = format!(
        "{}services:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        access_key: AKIATESTACCESS\n        secret_key: weak-secret\n        bucket_name: b\n        endpoint: s3.example.com\n",
        etcd_cluster_yaml(3)
    );
    let cfg = load(&yaml);
    let world = running_world(&cfg.cluster, b"d", Some(("s.db", b"x")));
    let mut seen = observed_for(&cfg.cluster, &world, "s.db");
    let target = cfg.cluster.configured_s3().unwrap().target();
    let in_bucket = rkectl::model::SnapshotName::new("s.db2").unwrap();
    seen.s3 = Some(rkectl::model::observed::S3Facts {
        target: target.clone(),
        snapshots: Default::default(),
        other_snapshots: vec![in_bucket],
    });
    let name = rkectl::model::SnapshotName::new("s.db").unwrap();
    let delete = ActionSpec::EtcdSnapshotDelete { name, s3: None };
    let plan = compile(&cfg, &delete, &seen);
    let says = format!("a copy in {target} stays. Add --s3 to delete it too.");
    assert!(plan.notes.iter().any(|n| n.contains(&says)), "{:?}", plan.notes);

    // Near a name on the hosts and one in the bucket: both are offered.
    let missing = rkectl::model::SnapshotName::new("s.db3").unwrap();
    let restore = ActionSpec::EtcdSnapshotRestore {
        name: missing,
        from: rkectl::model::action::RestoreSearch::S3ThenHosts { target },
    };
    let observed = rkectl::model::observed::Observed::Online(seen.clone());
    let refused = rkectl::plan::compile(&rkectl::steps::planning::CompileInput {
        cluster: &cfg.cluster,
        cluster_hash: &cfg.hash,
        action: &restore,
        observed: &observed,
        removed_members: &[],
        pki_ca: None,
        now: 1_800_000_000,
    })
    .expect_err("no such snapshot");
    let help = miette::Diagnostic::help(&refused).map(|h| h.to_string()).unwrap_or_default();
    assert!(help.contains("(cluster.yml's s3backupconfig) either") && !help.contains("add --s3"), "{help}");
    assert!(help.contains("did you mean s.db, s.db2?"), "both places' names: {help}");
}
