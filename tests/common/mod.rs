//! Shared helpers of the engine tests: clusters, fake worlds, running a plan.
#![allow(dead_code)]

pub mod golden;

use rkectl::config::{self, Cluster, HostAddr, LoadedConfig};
use rkectl::etcd::{names, paths};
use rkectl::exec::events::Recorder;
use rkectl::exec::{self, RunOptions, RunOutcome};
use rkectl::host::HostPool;
use rkectl::host::fake::{FakeConnector, FakeWorld};
use rkectl::plan::observed::{ContainerFacts, HostFacts, MadeBy, Observed, Seen, SnapshotCopy, hashed_env};
use rkectl::plan::step::{Checksum, SnapshotFormat, SnapshotName};
use rkectl::plan::{self, ActionSpec, Plan, RestoreSearch};
use rkectl::rke::pki::Pki;
use rkectl::state::journal::JournalWriter;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const ETCD_IMAGE: &str = "rancher/mirrored-coreos-etcd:v3.5.16";

/// cluster.yml with `n` etcd nodes at 10.1.x.y.
pub fn etcd_cluster_yaml(n: usize) -> String {
    let mut s = String::from("cluster_name: test\nnodes:\n");
    for i in 1..=n {
        s.push_str(&format!(
            "  - address: {}\n    hostname_override: node{i}\n    user: root\n    role: [etcd]\n",
            addr(i)
        ));
    }
    s
}

/// The address of node `i` (1-based).
pub fn addr(i: usize) -> String {
    format!("10.1.{}.{}", i / 250, i % 250 + 1)
}

/// Parses cluster.yml text.
pub fn load(yaml: &str) -> LoadedConfig {
    config::parse(Path::new("cluster.yml"), yaml.to_string()).expect("valid cluster.yml")
}

/// A world where every etcd node runs etcd with `data` and holds snapshot `name`.
pub fn running_world(cluster: &Cluster, data: &[u8], snapshot: Option<(&str, &[u8])>) -> Arc<FakeWorld> {
    let world = FakeWorld::new(cluster.etcd_nodes().map(|n| n.address.clone()), &[ETCD_IMAGE]);
    for n in cluster.etcd_nodes() {
        world.with_host(&n.address, |h| {
            h.files.insert(format!("{}/member/db", paths::DATA_DIR), data.to_vec());
            h.containers.insert(
                names::ETCD.into(),
                rkectl::host::fake::FakeContainer {
                    spec_image: ETCD_IMAGE.into(),
                    cmd: vec![],
                    args: vec![],
                    env: vec![],
                    binds: vec![],
                    service: true,
                    labels: [(rkectl::etcd::containers::MANAGED_LABEL.to_string(), "true".to_string())].into(),
                    running: true,
                    exit_code: None,
                    logs: String::new(),
                    id: "old".into(),
                },
            );
            if let Some((name, content)) = snapshot {
                h.files.insert(format!("{}/{name}", paths::SNAPSHOT_DIR), content.to_vec());
            }
        });
    }
    world
}

/// What refresh would observe in such a world (without dialing it).
pub fn observed_for(cluster: &Cluster, world: &FakeWorld, snapshot: &str) -> Seen {
    let mut o = Seen::default();
    for n in cluster.etcd_nodes() {
        let h = world.host(&n.address);
        let mut f = HostFacts { docker_version: "24.0.7".into(), ..Default::default() };
        if let Some(c) = h.containers.get(names::ETCD) {
            f.containers.insert(
                names::ETCD.into(),
                ContainerFacts {
                    image: c.spec_image.clone(),
                    running: c.running,
                    spec_hash: None,
                    made_by: MadeBy::of(&c.labels, &c.args),
                    args: c.args.clone(),
                    env: hashed_env(&c.env),
                    binds: c.binds.clone(),
                },
            );
        }
        f.has_etcd_data = Some(h.etcd_data().is_some());
        if let Some(d) = h.files.get(&format!("{}/{snapshot}", paths::SNAPSHOT_DIR)) {
            let corrupt = d.starts_with(b"CORRUPT");
            f.snapshots.insert(
                SnapshotName::new(snapshot).unwrap(),
                SnapshotCopy {
                    format: SnapshotFormat::Raw,
                    size: d.len() as u64,
                    modified: 0,
                    checksum: Some(Checksum::of(d)),
                    etcd_ok: Some(!corrupt),
                    problem: None,
                    db: None,
                    has_state: false,
                    identical_everywhere: true,
                },
            );
        }
        o.hosts.insert(n.address.clone(), f);
    }
    o
}

/// A restore plan of `snapshot` for the world as it is.
pub fn restore_plan(cfg: &LoadedConfig, world: &FakeWorld, snapshot: &str) -> Plan {
    let observed = observed_for(&cfg.cluster, world, snapshot);
    let action =
        ActionSpec::EtcdSnapshotRestore { name: SnapshotName::new(snapshot).unwrap(), from: RestoreSearch::Hosts };
    compile(cfg, &action, &observed)
}

/// Compiles an action against what was seen.
pub fn compile(cfg: &LoadedConfig, action: &ActionSpec, seen: &Seen) -> Plan {
    let observed = &Observed::Online(seen.clone());
    plan::compile(&plan::CompileInput {
        cluster: &cfg.cluster,
        cluster_hash: &cfg.hash,
        action,
        observed,
        removed_members: &[],
        pki_ca: None,
        now: 1_800_000_000,
    })
    .expect("plan compiles")
}

/// An executor over the fake world (a new process's: its own connections).
pub fn executor(cfg: &LoadedConfig, world: &Arc<FakeWorld>, pki: &Pki) -> rkectl::steps::Executor {
    let cluster = Arc::new(cfg.cluster.clone());
    let pool = Arc::new(HostPool::new(Arc::new(FakeConnector(world.clone())), cfg.cluster.nodes.clone()));
    rkectl::steps::Executor {
        cluster,
        pool,
        pki: Some(pki.clone()),
        state_text: None,
        state_passphrase: None,
        s3: None,
        helper_attempts: 1,
    }
}

/// Options for fast tests: no real backoff.
pub fn fast() -> RunOptions {
    RunOptions { parallelism: None, max_attempts: 3, backoff: Duration::from_millis(1), stop: None }
}

/// Applies `plan` with a new journal at `journal`, or resumes it when `done` is given.
pub async fn apply(
    cfg: &LoadedConfig,
    world: &Arc<FakeWorld>,
    pki: &Pki,
    plan: &Plan,
    journal: &Path,
    done: Option<HashSet<rkectl::plan::StepId>>,
    rec: &Recorder,
) -> RunOutcome {
    let ex = executor(cfg, world, pki);
    let mut jw = match &done {
        Some(_) => JournalWriter::append(journal).unwrap(),
        None => JournalWriter::create(journal, "cluster.yml", plan).unwrap(),
    };
    let done = done.unwrap_or_default();
    exec::run(plan, &ex, &mut jw, &done, &fast(), rec, &|s: &str| s.to_string()).await.unwrap()
}

/// Addresses of the etcd nodes.
pub fn etcd_addrs(cluster: &Cluster) -> Vec<HostAddr> {
    cluster.etcd_nodes().map(|n| n.address.clone()).collect()
}
pub mod lab;
