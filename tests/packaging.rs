//! What Cargo.toml promises its packagers holds for the locked dependencies.

use std::process::Command;

/// A `major.minor.patch` version as numbers, for comparing.
fn version(v: &str) -> (u32, u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The platform rkectl is built for only: a fresh machine's registry holds the crates a
    // Linux build downloaded, never the Windows-only ones, and offline metadata of every
    // platform would need those.
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages.iter().find(|p| p["name"] == "rkectl").unwrap();
    let promised = ours["rust_version"].as_str().expect("Cargo.toml sets rust-version");
    let needed = packages
        .iter()
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?.to_string())))
        .max()
        .unwrap();
    assert!(
        version(promised) >= needed.0,
        "rust-version is {promised}, but the locked {} needs {:?}",
        needed.1,
        needed.0
    );
    assert!(
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .unwrap()
            .contains(&format!("Rust {promised}")),
        "the README's install section does not say Rust {promised}"
    );
}
