//! `rkectl agent snapshot-save` against a fake etcdctl (a shell script named by
//! `RKECTL_ETCDCTL`): how the save calls etcdctl, and what it does when etcdctl stalls.
//! No lab needed; the lab tests (`lab_snapshot_waits`) do the same with a real etcd.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fake etcdctl: `snapshot save` writes `SAVE_BYTES` bytes into `<path>.part` (and then
/// hangs when `HANG` is set, else renames it into place); `snapshot status` answers with a
/// fixed status. Every call's arguments are appended to `calls`, one call a line.
const FAKE_ETCDCTL: &str = r#"#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
for last; do :; done
case "$*" in
  *"snapshot save"*)
    head -c "${SAVE_BYTES:-4096}" /dev/zero > "$last.part"
    # exec: the process the agent kills is the one that hangs, no orphan is left.
    [ -n "$HANG" ] && exec sleep 600
    mv "$last.part" "$last"
    echo "Snapshot saved at $last" ;;
  *"snapshot status"*)
    echo '{"hash":1,"revision":2,"totalKey":3,"totalSize":4096}' ;;
  *) echo "fake etcdctl: unexpected call: $*" >&2; exit 1 ;;
esac
"#;

/// Far beyond what either test needs (the stall limit is 1 s), far below the fake's hang.
const AGENT_DEADLINE: Duration = Duration::from_secs(30);

fn fake_etcdctl(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("etcdctl");
    std::fs::write(&bin, FAKE_ETCDCTL).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn save(bin: &Path, out_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rkectl"));
    c.args(["agent", "snapshot-save", "--endpoint=https://127.0.0.1:2379", "--name=snap.db"])
        .arg(format!("--dir={}", out_dir.display()))
        .args(["--cacert=/nonexistent/ca.pem", "--cert=/nonexistent/c.pem", "--key=/nonexistent/k.pem"])
        .args(extra)
        .env("RKECTL_ETCDCTL", bin)
        .env_remove("RKECTL_S3_CREDENTIALS_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run rkectl agent");
    // Bounded, so that an agent that waits without end fails the test instead of hanging it.
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > AGENT_DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the agent was still running after {AGENT_DEADLINE:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The save runs etcdctl without `--command-timeout`, which etcdctl applies to the whole
/// transfer (30 s before: any larger database failed); the calls that answer at once
/// keep theirs.
#[test]
fn snapshot_save_is_called_without_a_command_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_etcdctl(tmp.path());
    let out_dir = tmp.path().join("out");
    let out = save(&bin, &out_dir, &[], &[]);
    let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap_or_default();
    let saves: Vec<&str> = calls.lines().filter(|l| l.contains("snapshot save")).collect();
    assert_eq!(saves.len(), 1, "one save call: {calls}\n{}", text(&out));
    assert!(!saves[0].contains("--command-timeout"), "the save is cut off after a fixed time: {}", saves[0]);
    assert!(saves[0].contains("--dial-timeout=5s"), "connecting is still bounded: {}", saves[0]);
    assert!(out_dir.join("snap.db.zip").exists(), "no archive: {}", text(&out));
}

/// etcdctl that writes part of the snapshot and then nothing is stopped once the file has
/// not grown for the stall limit (1 s here), the save fails saying so, and nothing partial
/// is left behind. Without the detector the agent waits on etcdctl for as long as it hangs
/// (the fake's 600 s; [`AGENT_DEADLINE`] fails the test long before).
#[test]
fn a_stalled_etcdctl_is_stopped_and_the_save_fails_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_etcdctl(tmp.path());
    let out_dir = tmp.path().join("out");
    let out = save(&bin, &out_dir, &["--stall-limit=1s"], &[("HANG", "1"), ("SAVE_BYTES", "12345")]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            "etcdctl snapshot save made no progress for 1 s (endpoint https://127.0.0.1:2379, 12345 bytes received)"
        ),
        "{said}"
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the stalled save left files: {left:?}");
}
