//! `rkectl agent member-add` against a fake etcdctl (`RKECTL_ETCDCTL`): a cluster that is not
//! ready for a new member yet is a distinct exit code the workstation waits on, not a failure
//! it has to recognise from etcdctl's text.

use std::path::Path;
use std::process::Command;

/// Lists no member; refuses `member add` as etcd does right after members start, or, with
/// `FAKE_REFUSAL=other`, for another reason.
const FAKE_ETCDCTL: &str = r#"#!/bin/sh
case "$*" in
*"member list"*) echo '{"members":[]}' ;;
*"member add"*)
  if [ "$FAKE_REFUSAL" = other ]; then echo "Error: etcdserver: peerURL exists" >&2; exit 1; fi
  echo "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\"}" >&2
  echo "Error: etcdserver: unhealthy cluster" >&2; exit 1 ;;
*) exit 2 ;;
esac
"#;

fn member_add(dir: &Path, refusal: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("etcdctl");
    std::fs::write(&bin, FAKE_ETCDCTL).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rkectl"))
        .args(["agent", "member-add", "--member=etcd-node4", "--peer-url=https://10.0.0.4:2380"])
        .args(["--endpoint=https://127.0.0.1:2379", "--cacert=/x/ca.pem", "--cert=/x/c.pem", "--key=/x/k.pem"])
        .env("RKECTL_ETCDCTL", &bin)
        .env("FAKE_REFUSAL", refusal)
        .output()
        .expect("run rkectl agent")
}

#[test]
fn an_unhealthy_cluster_is_not_ready_and_other_refusals_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = member_add(dir.path(), "unhealthy");
    assert_eq!(out.status.code(), Some(i32::from(rkectl::agent::EXIT_NOT_READY)), "{out:?}");
    let out = member_add(dir.path(), "other");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("peerURL exists"), "{out:?}");
}
