//! The layers stay layers. A module may use the modules of its own tier and of the tiers
//! below it, never one above; the shared words at the bottom (`src/model/`) use nothing of
//! rkectl at all. Tiers, bottom up:
//!
//! 0. words: `model`, `secret`, `local`: the vocabulary every layer shares, secrets that
//!    cannot leak by accident, and this machine's files and clock.
//! 1. inputs: `config`, `layout`, `rke`: cluster.yml, where files are on a node, RKE's own
//!    formats (its state file, certificates, archives).
//! 2. mechanisms: `s3`, `etcd`, `agent`, `agent_binary`, `host`: talking to buckets, nodes,
//!    containers and etcd; they carry out, they decide nothing about a plan.
//! 3. steps: `steps`: each kind of step, how it is planned and run, and the contexts it is
//!    planned and run in.
//! 4. planning: `plan`, `refresh`, `cluster_pki`: what was seen, which PKI is used, and
//!    the compiler that asks the kinds and wires their steps into a plan.
//! 5. running: `exec`, `state`: the scheduler and what it keeps (the journal holds the plan).
//! 6. driving: `invocation`, `prepare`, `inventory`, `resume`, `apply`: what was asked,
//!    decided once; inputs to a plan (or to the snapshot inventory); a plan to a finished run;
//!    one command's whole way through them (`session`).
//! 7. edge: `terminal`, `cli`: a session shown and confirmed at a terminal; arguments in.
//!
//! A plain reading of `use crate::…` and `crate::…::` paths in the source, which is what a
//! newcomer reads too. There is no list of exceptions: an arrow that runs up is a type in
//! the wrong place, and the fix is to move it down.

use std::path::{Path, PathBuf};

/// The tiers, bottom up: (tier, modules — folders or files under src/).
const TIERS: &[(&str, &[&str])] = &[
    ("words", &["model", "secret", "local"]),
    ("inputs", &["config", "layout", "rke"]),
    ("mechanisms", &["s3", "etcd", "agent", "agent_binary", "host"]),
    ("steps", &["steps"]),
    ("planning", &["plan", "refresh", "cluster_pki"]),
    ("running", &["exec", "state"]),
    ("driving", &["invocation", "prepare", "inventory", "resume", "apply", "session"]),
    ("edge", &["terminal", "cli"]),
];

/// The tier of a top-level module; `None` for one the list does not know.
fn tier(module: &str) -> Option<usize> {
    TIERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<module>` paths a file names, outside comments (`use crate::{a, b}` names
/// both).
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let module: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    found.push(module);
                }
                continue;
            }
            let module: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push(module);
        }
    }
    found
}

/// The top-level module a file under src/ belongs to (`src/plan/compile/mod.rs` → `plan`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().nth(1).unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn every_module_has_a_tier() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut unknown = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if !matches!(name.as_str(), "lib" | "main") && tier(&name).is_none() {
            unknown.push(name);
        }
    }
    for (_, ms) in TIERS {
        for m in *ms {
            assert!(src.join(m).is_dir() || src.join(format!("{m}.rs")).is_file(), "src/{m} is gone: update TIERS");
        }
    }
    assert!(unknown.is_empty(), "modules no tier names (add them to TIERS, where they belong): {unknown:?}");
}

#[test]
fn no_arrow_runs_from_a_lower_tier_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut up = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        let from = module_of(rel);
        let Some(from_tier) = tier(&from) else { continue };
        for m in uses(&std::fs::read_to_string(&f).unwrap()) {
            if let Some(to_tier) = tier(&m)
                && to_tier > from_tier
            {
                up.push(format!("{} ({}) uses crate::{m} ({})", rel.display(), TIERS[from_tier].0, TIERS[to_tier].0));
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "arrows that run up (move what they use down):\n{}", up.join("\n"));
}

#[test]
fn the_shared_words_use_nothing_of_rkectl() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/model"), &mut files);
    for f in files {
        for m in uses(&std::fs::read_to_string(&f).unwrap()) {
            assert!(m == "model", "{} uses crate::{m}", f.display());
        }
    }
}

#[test]
fn the_reading_sees_grouped_and_inline_paths() {
    let text = "use crate::{plan::Plan, steps::Step};\nlet x = crate::exec::run(); // crate::cli\n";
    assert_eq!(uses(text), vec!["plan", "steps", "exec"]);
}

#[test]
fn every_step_kind_lives_in_its_own_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/steps");
    let missing: Vec<String> = rkectl::steps::StepKind::ALL
        .iter()
        .map(|k| format!("{}.rs", k.name().replace('-', "_")))
        .filter(|file| !root.join(file).is_file())
        .collect();
    assert!(missing.is_empty(), "step kinds without their module in src/steps/: {missing:?}");
}
