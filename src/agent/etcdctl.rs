//! etcdctl, run directly (never through a shell) for health, status and membership.

use super::report::{self, Done, HealthReport, MemberHealth};
use super::{AgentError, Tls};
use serde_json::Value;
use std::process::Stdio;
use tokio::process::Command;

/// The etcdctl binary (the tools image has it at /usr/local/bin/etcdctl).
pub fn etcdctl_bin() -> String {
    std::env::var("RKECTL_ETCDCTL").unwrap_or_else(|_| "/usr/local/bin/etcdctl".into())
}

/// An etcdctl command with TLS flags for `endpoints`, for calls that answer at once
/// (health, status, membership): each is cut off after 30 s.
pub fn command(endpoints: &str, tls: &Tls) -> Command {
    let mut c = connected(endpoints, tls);
    c.arg("--command-timeout=30s");
    c
}

/// `etcdctl snapshot save` from `endpoint` into `path`, with no time limit: etcdctl applies
/// `--command-timeout` to the whole transfer, and leaves it unbounded only when the flag is
/// absent, so a database that takes longer to stream than any fixed limit still gets
/// saved. Its caller watches for a stall instead ([`super::stall`]).
pub fn snapshot_save(endpoint: &str, tls: &Tls, path: &std::path::Path) -> Command {
    let mut c = connected(endpoint, tls);
    c.arg("snapshot").arg("save").arg(path);
    c
}

fn connected(endpoints: &str, tls: &Tls) -> Command {
    let mut c = Command::new(etcdctl_bin());
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", tls.cacert.display()))
        .arg(format!("--cert={}", tls.cert.display()))
        .arg(format!("--key={}", tls.key.display()))
        .arg("--dial-timeout=5s")
        .stdin(Stdio::null());
    c
}

/// Runs etcdctl and returns stdout, or an error with its stderr.
pub async fn output(mut c: Command) -> Result<String, AgentError> {
    let out = c.output().await.map_err(|e| AgentError::new(format!("cannot run {}: {e}", etcdctl_bin())))?;
    if !out.status.success() {
        return Err(AgentError::new(format!(
            "etcdctl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn revision(status: &Value) -> Option<i64> {
    // etcdctl prints `[{"Endpoint":…,"Status":{"header":{"revision":N,…}}}]`.
    status.get(0)?.get("Status")?.get("header")?.get("revision")?.as_i64()
}

/// Health and revision of each endpoint, and the member names the cluster lists.
pub async fn health(endpoints: &str, tls: &Tls) -> Result<HealthReport, AgentError> {
    let mut members = Vec::new();
    for ep in endpoints.split(',').filter(|e| !e.is_empty()) {
        let mut c = command(ep, tls);
        c.args(["endpoint", "status", "-w", "json"]);
        match output(c).await {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
                members.push(MemberHealth {
                    endpoint: ep.to_string(),
                    healthy: true,
                    revision: revision(&v),
                    error: None,
                });
            }
            Err(e) => members.push(MemberHealth {
                endpoint: ep.to_string(),
                healthy: false,
                revision: None,
                error: Some(e.message),
            }),
        }
    }
    let mut member_names = Vec::new();
    for ep in endpoints.split(',') {
        if let Ok(list) = member_list(ep, tls).await {
            member_names = list.into_iter().map(|(_, name, _)| name).collect();
            break;
        }
    }
    Ok(HealthReport { members, member_names })
}

/// `(id, name, peer urls)` of every member.
pub async fn member_list(endpoint: &str, tls: &Tls) -> Result<Vec<(u64, String, Vec<String>)>, AgentError> {
    let mut c = command(endpoint, tls);
    c.args(["member", "list", "-w", "json"]);
    let v: Value = serde_json::from_str(&output(c).await?).map_err(|e| AgentError::new(format!("member list: {e}")))?;
    Ok(v.get("members")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let id = m.get("ID").and_then(Value::as_u64).unwrap_or(0);
                    let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    let peers = m
                        .get("peerURLs")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    (id, name, peers)
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Adds a member unless its peer URL is already in the cluster.
pub async fn member_add(endpoint: &str, tls: &Tls, member: &str, peer_url: &str) -> Result<(), AgentError> {
    let list = member_list(endpoint, tls).await?;
    if list.iter().any(|(_, _, peers)| peers.iter().any(|p| p == peer_url)) {
        println!("{}", report::line(&Done { changed: false, detail: format!("{member} is already a member") }));
        return Ok(());
    }
    let mut c = command(endpoint, tls);
    c.args(["member", "add", member, &format!("--peer-urls={peer_url}")]);
    // etcd refuses a new member until every current one has been connected for a few
    // seconds; etcdctl says so only in text, so it is told apart here, next to etcdctl.
    output(c).await.map_err(|e| match e.message.contains("unhealthy cluster") {
        true => AgentError::not_ready(e.message),
        false => e,
    })?;
    println!("{}", report::line(&Done { changed: true, detail: format!("added {member}") }));
    Ok(())
}

/// Removes the member called `member`, if it is there.
pub async fn member_remove(endpoint: &str, tls: &Tls, member: &str) -> Result<(), AgentError> {
    let list = member_list(endpoint, tls).await?;
    let Some((id, _, _)) = list.iter().find(|(_, name, _)| name == member) else {
        println!("{}", report::line(&Done { changed: false, detail: format!("{member} is not a member") }));
        return Ok(());
    };
    let mut c = command(endpoint, tls);
    c.args(["member", "remove", &format!("{id:x}")]);
    output(c).await?;
    println!("{}", report::line(&Done { changed: true, detail: format!("removed {member}") }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn args(c: &Command) -> Vec<String> {
        c.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn only_snapshot_save_runs_without_a_command_timeout() {
        let tls = Tls { cacert: PathBuf::from("/ca"), cert: PathBuf::from("/c"), key: PathBuf::from("/k") };
        let save = args(&snapshot_save("https://10.0.0.1:2379", &tls, Path::new("/s/snap")));
        assert!(!save.iter().any(|a| a.starts_with("--command-timeout")), "{save:?}");
        assert!(save.ends_with(&["snapshot".into(), "save".into(), "/s/snap".into()]), "{save:?}");
        assert!(save.contains(&"--dial-timeout=5s".to_string()), "{save:?}");
        let status = args(&command("https://10.0.0.1:2379", &tls));
        assert!(status.contains(&"--command-timeout=30s".to_string()), "{status:?}");
    }
}
