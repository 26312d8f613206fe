//! Shared helpers of the engine tests: clusters, fake worlds, running a plan.
#![allow(dead_code)]

pub mod golden;

use rkectl::apply::{Applied, ApplyError, ApplyRequest, apply};
use rkectl::cluster_pki::PkiFlags;
use rkectl::config::{self, Cluster, HostAddr, LoadedConfig};
use rkectl::etcd::{names, paths};
use rkectl::exec::RunOptions;
use rkectl::exec::events::Reporter;
use rkectl::host::fake::{FakeConnector, FakeWorld};
use rkectl::host::{Connector, HostPool};
use rkectl::model::action::{ActionSpec, RestoreSearch};
use rkectl::model::observed::{ContainerFacts, HostFacts, MadeBy, Observed, Seen, SnapshotCopy, compare_env};
use rkectl::model::{Checksum, SnapshotFormat, SnapshotName};
use rkectl::plan::{self, Plan};
use rkectl::prepare::{PrepareInput, Prepared, prepare};
use rkectl::rke::pki::Pki;
use rkectl::rke::state::RkeState;
use rkectl::state::journal::JournalState;
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
                    env: compare_env(&c.env, &rkectl::etcd::expected_env(cluster, n, names::ETCD, &f.arch)),
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
    compile(cfg, &restore_spec(snapshot), &observed)
}

/// Compiles an action against what was seen.
pub fn compile(cfg: &LoadedConfig, action: &ActionSpec, seen: &Seen) -> Plan {
    let observed = &Observed::Online(seen.clone());
    plan::compile(&rkectl::steps::planning::CompileInput {
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

/// cluster.yml with `yaml` written in `dir` and parsed from there, as the CLI reads it:
/// rkectl's state, RKE's state and the journal live beside it.
pub fn config_in(dir: &Path, yaml: &str) -> LoadedConfig {
    let path = dir.join("cluster.yml");
    std::fs::write(&path, yaml).unwrap();
    config::parse(&path, yaml.to_string()).expect("valid cluster.yml")
}

/// Puts `pki` in RKE's state file beside cluster.yml: the PKI that actions placing
/// certificates then use (instead of a new one of their own).
pub fn give_pki(cfg: &LoadedConfig, pki: &Pki) {
    RkeState::new(&rkectl::rke::state::path_for(&cfg.path), pki).save().expect("state file written");
}

/// A connector to the fake world (each call, a new process's connections).
pub fn connector(world: &Arc<FakeWorld>) -> Arc<dyn Connector> {
    Arc::new(FakeConnector(world.clone()))
}

/// Prepares `spec` as the CLI does: rkectl's and RKE's state beside cluster.yml, the real
/// refresh over the fake world, the PKI, compile. An action that places certificates
/// without RKE's state file beside cluster.yml asks for a new PKI (fake hosts hold none).
pub async fn prepare_action(cfg: LoadedConfig, world: &Arc<FakeWorld>, spec: ActionSpec) -> Prepared {
    let places = matches!(spec, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. });
    let new_pki = places && !rkectl::rke::state::path_for(&cfg.path).exists();
    let input = PrepareInput {
        cfg,
        spec,
        s3: None,
        state_passphrase: None,
        pki_flags: PkiFlags { new_pki, use_local_state: false },
        offline: false,
        lock_nodes: Some(HOLDER.into()),
        connector: connector(world),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    prepare(input).await.unwrap_or_else(|e| panic!("prepare: {e}"))
}

/// Who the tests' applies lock the cluster for.
pub const HOLDER: &str = "engine test";

/// The request to apply `p` (or to finish `resume` with it) over the fake world.
pub fn request<'a>(
    p: Prepared,
    world: &Arc<FakeWorld>,
    resume: Option<JournalState>,
    rec: &'a dyn Reporter,
) -> ApplyRequest<'a> {
    ApplyRequest {
        prepared: p,
        resume,
        connector: connector(world),
        lock_holder: HOLDER.into(),
        reporter: rec,
        parallelism: None,
        stop: None,
        finish_with: "`rkectl apply`".into(),
    }
}

/// Applies a prepared plan with the library's `apply`.
pub async fn apply_prepared(p: Prepared, world: &Arc<FakeWorld>, rec: &dyn Reporter) -> Result<Applied, ApplyError> {
    apply(request(p, world, None, rec)).await
}

/// Prepares and applies `spec`, as `rkectl <action>` does.
pub async fn run_action(
    cfg: LoadedConfig,
    world: &Arc<FakeWorld>,
    spec: ActionSpec,
    rec: &dyn Reporter,
) -> Result<Applied, ApplyError> {
    let p = prepare_action(cfg, world, spec).await;
    apply_prepared(p, world, rec).await
}

/// Finishes the unfinished apply whose journal is beside cluster.yml, as `rkectl apply`
/// does in a new process: the library's resume (the journal's plan, the state files, the
/// PKI from RKE's state file), no refresh, a new pool.
pub async fn resume(cfg: LoadedConfig, world: &Arc<FakeWorld>, rec: &dyn Reporter) -> Result<Applied, ApplyError> {
    let j = rkectl::resume::read_unfinished(&cfg).unwrap_or_else(|e| panic!("unfinished apply: {e}"));
    let prepared = rkectl::resume::prepare_resume(cfg, &j, None, None).unwrap_or_else(|e| panic!("resume: {e}"));
    apply(request(prepared, world, Some(j), rec)).await
}

/// The journal beside cluster.yml (where an unfinished apply is recorded).
pub fn journal_path(cfg: &LoadedConfig) -> std::path::PathBuf {
    rkectl::state::StatePaths::beside(&cfg.dir(), &cfg.stem()).journal
}

/// A one-time snapshot save of `name` on the hosts.
pub fn save_spec(name: &str) -> ActionSpec {
    ActionSpec::EtcdSnapshotSave {
        name: SnapshotName::new(name).unwrap(),
        generated_name: false,
        s3: None,
        include_state: false,
        seal_state: false,
    }
}

/// A restore of `name` from the hosts.
pub fn restore_spec(name: &str) -> ActionSpec {
    ActionSpec::EtcdSnapshotRestore { name: SnapshotName::new(name).unwrap(), from: RestoreSearch::Hosts }
}

/// Addresses of the etcd nodes.
pub fn etcd_addrs(cluster: &Cluster) -> Vec<HostAddr> {
    cluster.etcd_nodes().map(|n| n.address.clone()).collect()
}
pub mod lab;
