//! A journal that can no longer be written (a full disk): the run starts no new step, lets
//! the running ones finish instead of dropping them half-way, and says what happened. A
//! test binary of its own: it limits the process's file size (RLIMIT_FSIZE), which would
//! hit any test running beside it.

mod common;

use common::*;
use rkectl::exec::events::{ApplyEventKind, Recorder};
use rkectl::state::journal::{self, JournalWriter};
use rkectl::steps::StepKind;
use std::collections::HashSet;

/// Limits the size of files this process writes; `None` lifts the limit.
fn limit_file_size(bytes: Option<u64>) {
    // SAFETY: plain libc calls with valid arguments; the signal is ignored so that a write
    // past the limit fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.unwrap_or(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_stops_new_steps_and_lets_running_ones_finish() {
    let cfg = load(&etcd_cluster_yaml(3));
    let pki = rkectl::rke::pki::Pki::generate(&cfg.cluster).unwrap();
    let world = running_world(&cfg.cluster, b"data-after-snapshot", Some(("snap.db", b"snapshot-bytes")));
    let plan = restore_plan(&cfg, &world, "snap.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut jw = JournalWriter::create(&path, "cluster.yml", &plan).unwrap();
    let header = std::fs::metadata(&path).unwrap().len();
    let ex = executor(&cfg, &world, &pki);
    let rec = Recorder::default();
    // Room for the run's first record and part of the next: the first flush fails.
    limit_file_size(Some(header + 100));
    let out = rkectl::exec::run(&plan, &ex, &mut jw, &HashSet::new(), &fast(), &rec, &|s: &str| s.to_string()).await;
    limit_file_size(None);
    let out = out.expect("a journal write error is an outcome, after the running steps finished");

    assert!(out.journal_error.is_some() && !out.ok(), "{:?}", out.journal_error);
    // Every step that had started finished; nothing past the pre-flight began.
    let started: Vec<_> = rec
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            ApplyEventKind::StepStarted { id, kind, .. } => Some((id.clone(), *kind)),
            _ => None,
        })
        .collect();
    let ended = rec
        .events()
        .iter()
        .filter(|e| matches!(e.kind, ApplyEventKind::StepFinished { .. } | ApplyEventKind::StepFailed { .. }))
        .count();
    assert!(!started.is_empty());
    assert_eq!(ended, started.len(), "a running step was dropped: {started:?}");
    assert!(started.iter().all(|(_, k)| !k.changes_cluster()), "{started:?}");
    assert!(!started.iter().any(|(_, k)| *k == StepKind::CleanHost));
    for n in cfg.cluster.etcd_nodes() {
        assert_eq!(world.host(&n.address).etcd_data(), Some(&b"data-after-snapshot"[..]), "{}", n.address);
    }
    // What was written is still a journal (a torn last line is cut): resume can read it.
    let state = journal::read(&path).unwrap();
    assert_eq!(state.plan, plan);
}
