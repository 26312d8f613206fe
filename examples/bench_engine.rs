//! Engine benchmark: plan compile + render for 1,000 hosts, and apply on 1,000 fake hosts
//! with a fixed per-step delay, compared with the ideal (critical path × delay at the
//! parallelism limit). Prints figures and ratios measured in one run; asserts nothing.
//!
//!     cargo run --release --example bench_engine

use async_trait::async_trait;
use rkectl::config;
use rkectl::exec::events::Recorder;
use rkectl::exec::{self, RunOptions};
use rkectl::model::action::ActionSpec;
use rkectl::model::observed::{ContainerFacts, HostFacts, Observed, SnapshotCopy};
use rkectl::model::{Checksum, SnapshotName};
use rkectl::plan::render::{RenderOptions, render};
use rkectl::plan::{self, Plan};
use rkectl::state::journal::JournalWriter;
use rkectl::steps::context::{StepCtx, StepError, StepRunner};
use rkectl::steps::{Step, StepKind};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

fn cluster_yaml(n: usize) -> String {
    let mut s = String::from("nodes:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - address: 10.{}.{}.{}\n    user: root\n    role: [etcd]\n    hostname_override: n{i}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    s
}

fn restore_plan(n: usize) -> Plan {
    let cfg = config::parse(Path::new("cluster.yml"), cluster_yaml(n)).expect("valid");
    restore_plan_for(&cfg)
}

fn restore_plan_for(cfg: &config::LoadedConfig) -> Plan {
    let name = SnapshotName::new("snap.db").unwrap();
    let sum = Checksum::of(b"snapshot");
    let mut observed = rkectl::model::observed::Seen::default();
    for node in cfg.cluster.etcd_nodes() {
        let mut f = HostFacts::default();
        f.containers.insert(
            "etcd".into(),
            ContainerFacts {
                image: cfg.cluster.etcd.image.clone(),
                running: true,
                spec_hash: None,
                made_by: rkectl::model::observed::MadeBy::Rkectl,
                args: Vec::new(),
                env: Default::default(),
                binds: Vec::new(),
            },
        );
        f.snapshots.insert(
            name.clone(),
            SnapshotCopy {
                format: rkectl::model::SnapshotFormat::Raw,
                size: 8,
                modified: 0,
                checksum: Some(sum.clone()),
                etcd_ok: Some(true),
                problem: None,
                db: None,
                has_state: false,
                identical_everywhere: true,
            },
        );
        observed.hosts.insert(node.address.clone(), f);
    }
    let action = ActionSpec::EtcdSnapshotRestore { name, from: rkectl::model::action::RestoreSearch::Hosts };
    plan::compile(&rkectl::steps::planning::CompileInput {
        cluster: &cfg.cluster,
        cluster_hash: &cfg.hash,
        action: &action,
        observed: &Observed::Online(observed),
        removed_members: &[],
        pki_ca: None,
        now: 0,
    })
    .expect("compiles")
}

/// Every step takes exactly `delay`.
struct Delay(Duration);

#[async_trait]
impl StepRunner for Delay {
    async fn run(&self, _step: &Step, _ctx: &StepCtx<'_>) -> Result<(), StepError> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// Length, in steps that take time, of the longest chain of the plan.
fn critical_path(plan: &Plan) -> usize {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for s in &plan.steps {
        let own = usize::from(s.kind() != StepKind::Barrier);
        let d = s.after.iter().map(|a| depth[a.0.as_str()]).max().unwrap_or(0) + own;
        depth.insert(&s.id.0, d);
    }
    depth.values().copied().max().unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn apply(plan: &Plan, delay: Duration, parallelism: Option<usize>) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut jw = JournalWriter::create(&dir.path().join("journal"), "cluster.yml", plan).unwrap();
    let opts = RunOptions { parallelism, ..RunOptions::default() };
    let t = Instant::now();
    let out =
        exec::run(plan, &Delay(delay), &mut jw, &HashSet::new(), &opts, &Recorder::default(), &|s: &str| s.to_string())
            .await
            .unwrap();
    assert!(out.ok());
    t.elapsed()
}

#[tokio::main]
async fn main() {
    println!("== plan compile + render, restore action ==");
    for n in [10, 100, 1000] {
        let mut compile_t = Vec::new();
        let mut render_t = Vec::new();
        let mut parse_t = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let cfg = config::parse(Path::new("cluster.yml"), cluster_yaml(n)).expect("valid");
            parse_t.push(t.elapsed());
            let t = Instant::now();
            let plan = restore_plan_for(&cfg);
            compile_t.push(t.elapsed());
            let t = Instant::now();
            let text = render(&plan, RenderOptions::default());
            render_t.push(t.elapsed());
            std::hint::black_box(text);
        }
        println!(
            "{n:>5} hosts: parse cluster.yml {:>8.2?}  compile {:>8.2?}  render {:>8.2?}  (median of 5)",
            median(parse_t),
            median(compile_t),
            median(render_t)
        );
    }

    println!("\n== apply on fake hosts, every step takes a fixed delay ==");
    let delay = Duration::from_millis(50);
    let mut per_step_overhead = Vec::new();
    for (n, par) in [(100, None), (1000, None), (1000, Some(250))] {
        let plan = restore_plan(n);
        let steps = plan.steps.iter().filter(|s| s.kind() != StepKind::Barrier).count();
        let cp = critical_path(&plan);
        // No schedule beats the longest chain, nor `steps / limit` rounds of the limit.
        let ideal = match par {
            None => delay * cp as u32,
            Some(p) => delay * (cp as u32).max((steps as u32).div_ceil(p as u32)),
        };
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(apply(&plan, delay, par).await);
        }
        let got = median(runs);
        let ratio = got.as_secs_f64() / ideal.as_secs_f64();
        let overhead = got.saturating_sub(ideal);
        per_step_overhead.push((n, par, overhead.as_secs_f64() * 1e6 / steps as f64));
        println!(
            "{n:>5} hosts, parallelism {:<9}: {steps} steps, critical path {cp} × {delay:?} = ideal {ideal:.2?}; measured {got:.2?} (median of 3); ratio {ratio:.3}",
            par.map(|p| p.to_string()).unwrap_or_else(|| "unbounded".into())
        );
    }
    println!("\n== overhead per step (scheduler + journal with fsync) ==");
    for (n, par, us) in &per_step_overhead {
        println!("{n:>5} hosts, parallelism {:?}: {us:.1} µs per step", par);
    }
    if let (Some(a), Some(b)) = (per_step_overhead.first(), per_step_overhead.get(1)) {
        println!("ratio of per-step overhead, 1000 vs 100 hosts: {:.2}", b.2 / a.2.max(0.001));
    }
}
