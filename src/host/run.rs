//! Running a temporary helper container to completion: its output followed as it comes,
//! and a deadline that moves with that output.
//!
//! No total time limit: a helper that keeps printing (progress lines, log lines) is given
//! all the time it needs. One that prints nothing for too long is taken for hung, stopped
//! and removed, and the error names the host, the container and how long it was silent.
//! The output is read once, as a stream, so following a long helper costs what it prints
//! and no more.

use super::{ContainerSpec, Host, HostError, HostResult, create_container, remove_secret_files};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// How long a helper may print nothing before it is taken for hung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence(pub Duration);

impl Silence {
    /// Ten minutes, for every helper. rkectl's own helpers print progress while they move
    /// data (both ends of a host-to-host copy too), several times a second, and the snapshot save gives up on a silent etcd by
    /// itself after two minutes; the ones that cannot report progress (etcd's `snapshot
    /// restore`, `etcdctl snapshot status` inside the checks) read the database once or
    /// twice in silence, which for etcd's 8 GiB quota at 40 MB/s is about seven minutes.
    pub const HELPER: Silence = Silence(Duration::from_secs(600));
}

/// What a temporary container printed and how it ended.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub exit_code: i64,
    pub logs: String,
}

/// Runs a temporary container to completion and removes it, on success and on failure.
///
/// A container of the same name left by an earlier, crashed run is removed first: its
/// output must never be mistaken for ours (RKE's stale checksum checker made every later
/// restore fail for exactly this reason).
pub async fn run_once(host: &dyn Host, spec: &ContainerSpec) -> HostResult<RunOutput> {
    run_watched(host, spec, Silence::HELPER, &mut |_| {}).await
}

/// [`run_once`], handing `watch` the lines the container prints as they come (each batch
/// of new, whole lines once; helpers report progress that way), and giving up on it once
/// it printed nothing for `silence`: it is then stopped and removed, and the error says so.
pub async fn run_watched(
    host: &dyn Host,
    spec: &ContainerSpec,
    silence: Silence,
    watch: &mut (dyn FnMut(&str) + Send),
) -> HostResult<RunOutput> {
    host.remove_container(&spec.name).await?;
    let result = async {
        create_container(host, spec).await?;
        host.start_container(&spec.name).await?;
        follow(host, &spec.name, silence, watch).await
    }
    .await;
    // Removal is forced: it also stops a helper that was given up on.
    let removed = host.remove_container(&spec.name).await;
    // Only once the container is gone: it may still be reading them.
    let files_removed = if removed.is_ok() { remove_secret_files(host, spec).await } else { Ok(()) };
    let out = result?;
    removed?;
    files_removed?;
    Ok(out)
}

/// Follows a started container's output until it stops, then takes its exit code.
async fn follow(
    host: &dyn Host,
    name: &str,
    silence: Silence,
    watch: &mut (dyn FnMut(&str) + Send),
) -> HostResult<RunOutput> {
    let silent =
        || HostError::HelperSilent { host: host.addr().clone(), container: name.to_string(), silent: silence.0 };
    let mut deadline = Instant::now() + silence.0;
    let mut stream = tokio::time::timeout_at(deadline, host.follow_logs(name)).await.map_err(|_| silent())??;
    let mut lines = LineBuffer::default();
    let mut logs = String::new();
    let mut hand_on = |text: String, logs: &mut String| {
        watch(&text);
        logs.push_str(&text);
    };
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(silent()),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk?,
        };
        deadline = Instant::now() + silence.0;
        if let Some(text) = lines.push(&chunk) {
            hand_on(text, &mut logs);
        }
    }
    if let Some(text) = lines.finish() {
        hand_on(text, &mut logs);
    }
    // The output ends when the container stops, so the exit code is there to take; the
    // deadline still holds should Docker not give it.
    let exit_code = tokio::time::timeout_at(deadline, host.wait_container(name)).await.map_err(|_| silent())??;
    Ok(RunOutput { exit_code, logs })
}

/// Cuts a byte stream into whole lines, so that nobody sees half a line (or half a
/// UTF-8 character) of it.
#[derive(Debug, Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds bytes; returns the lines they complete (newlines included), if any.
    fn push(&mut self, bytes: &[u8]) -> Option<String> {
        let before = self.pending.len();
        self.pending.extend_from_slice(bytes);
        // Only the new bytes are searched: a long unfinished line is not scanned again.
        let end = before + bytes.iter().rposition(|b| *b == b'\n')? + 1;
        let done: Vec<u8> = self.pending.drain(..end).collect();
        Some(String::from_utf8_lossy(&done).into_owned())
    }

    /// What is left after the last newline, when the stream has ended.
    fn finish(self) -> Option<String> {
        (!self.pending.is_empty()).then(|| String::from_utf8_lossy(&self.pending).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_whole_whatever_the_chunks() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"RKECTL-PROGRESS 12"), None);
        assert_eq!(b.push(b"34\nRKECTL-PR").as_deref(), Some("RKECTL-PROGRESS 1234\n"));
        // A character split between chunks is not mangled.
        let e = "é".as_bytes();
        assert_eq!(b.push(&[b"OGRESS 5\ncaf".as_slice(), &e[..1]].concat()).as_deref(), Some("RKECTL-PROGRESS 5\n"));
        assert_eq!(b.push(&[&e[1..], b"\nlast".as_slice()].concat()).as_deref(), Some("café\n"));
        assert_eq!(b.finish().as_deref(), Some("last"));
        assert_eq!(LineBuffer::default().finish(), None);
    }
}
