//! The layers stay layers: no module below the planner imports the planner, the executor or
//! the CLI, and the shared words (`src/model/`) import nothing of rkectl but a host address.
//!
//! A plain reading of `use crate::…` and `crate::…::` paths in the source, which is what a
//! newcomer reads too. The few arrows that still run up are listed with the reason they are
//! there; a new one fails this test until it is moved down or argued for here.

use std::path::{Path, PathBuf};

/// Modules that decide or drive: nothing below them may use them.
const UPPER: &[&str] = &["plan", "steps", "exec", "refresh", "prepare", "resume", "apply", "cli", "cluster_pki"];

/// Modules (folders or files under src/) below the planner.
const LOWER: &[&str] =
    &["model", "config", "secret.rs", "layout.rs", "rke", "s3", "host", "etcd", "agent", "agent_binary.rs", "state"];

/// Arrows that still run up, with why: (file, module it uses).
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "src/etcd/containers.rs",
        "plan",
        "compares a running container with its spec through plan::observed's ContainerFacts",
    ),
    ("src/etcd/member.rs", "plan", "same: RKE's etcd flags are judged against plan::observed's ContainerFacts"),
    ("src/state/journal.rs", "plan", "the journal's header holds the plan it records"),
];

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

/// The `crate::<module>` paths a file names, outside comments.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let module: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push(module);
        }
    }
    found
}

#[test]
fn no_arrow_runs_from_a_lower_module_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut up = Vec::new();
    for lower in LOWER {
        let mut files = Vec::new();
        rust_files(&root.join("src").join(lower), &mut files);
        assert!(!files.is_empty(), "src/{lower} is gone: update this test's layers");
        for f in files {
            let rel = f.strip_prefix(root).unwrap().display().to_string();
            for m in uses(&std::fs::read_to_string(&f).unwrap()) {
                if UPPER.contains(&m.as_str()) && !KNOWN.iter().any(|(file, module, _)| *file == rel && *module == m) {
                    up.push(format!("{rel} uses crate::{m}"));
                }
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "arrows that run up (move the shared type down to src/model/):\n{}", up.join("\n"));
}

#[test]
fn the_shared_words_use_nothing_but_a_host_address() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/model"), &mut files);
    for f in files {
        for m in uses(&std::fs::read_to_string(&f).unwrap()) {
            assert!(m == "model" || m == "config", "{} uses crate::{m}", f.display());
        }
    }
}

#[test]
fn every_known_exception_is_still_needed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, module, why) in KNOWN {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            uses(&text).iter().any(|m| m == module),
            "{file} no longer uses crate::{module} ({why}): drop it from KNOWN"
        );
    }
}

#[test]
fn every_step_kind_lives_in_its_own_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/steps");
    let missing: Vec<String> = rkectl::plan::StepKind::ALL
        .iter()
        .map(|k| format!("{}.rs", k.name().replace('-', "_")))
        .filter(|file| !root.join(file).is_file())
        .collect();
    assert!(missing.is_empty(), "step kinds without their module in src/steps/: {missing:?}");
}
