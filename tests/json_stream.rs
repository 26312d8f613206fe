//! `--json`: stdout is one stream of JSON lines, each an object with one key that says what
//! it is (`plan`, `event`, `snapshots`, then `result` or `error`).

use std::process::Command;

fn lines(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_rkectl")).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{text}")))
        .collect();
    (out.status.code(), parsed)
}

fn key(v: &serde_json::Value) -> String {
    let o = v.as_object().expect("each line is an object");
    assert_eq!(o.len(), 1, "one key per line: {v}");
    o.keys().next().unwrap().clone()
}

#[test]
fn a_plan_then_its_result_and_a_refusal_as_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let yml = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";
    std::fs::write(dir.path().join("cluster.yml"), yml).unwrap();
    let (code, out) = lines(dir.path(), &["plan", "up", "--offline", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.iter().map(key).collect::<Vec<_>>(), ["plan", "result"]);
    assert!(out[0]["plan"]["steps"].as_array().is_some_and(|s| !s.is_empty()));
    assert_eq!(out[1]["result"]["exit"], 0);

    std::fs::write(dir.path().join("cluster.yml"), "nodes:\n  - address: 10.0.0.1\n    role: [etcd, nonsense]\n")
        .unwrap();
    let (code, out) = lines(dir.path(), &["plan", "up", "--offline", "--json"]);
    assert_eq!(code, Some(2));
    assert_eq!(out.iter().map(key).collect::<Vec<_>>(), ["error"]);
    assert_eq!(out[0]["error"]["exit"], 2);
    assert_eq!(out[0]["error"]["code"], "rkectl::config::invalid");
    assert!(out[0]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}
