//! Telling a stalled `etcdctl snapshot save` from a slow one.
//!
//! etcdctl writes the snapshot into `<name>.part` as it streams in, so a file that stops
//! changing means the stream stopped. A save gets no total time limit (a large database
//! on a slow link takes as long as it takes), only this one: no change for too long.

use crate::config::GoDuration;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// How long the snapshot file may stay unchanged before the save is taken for stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallLimit(pub Duration);

impl StallLimit {
    /// Two minutes. etcd streams a snapshot from a read transaction of its own backend as
    /// fast as the link takes it (no consensus round is involved), so a healthy save grows
    /// the file many times a second however big the database. What can pause it for a
    /// while: Linux's TCP retransmission backoff after a link outage of about a minute
    /// (its timer doubles up to 120 s), and etcdctl's final fsync. Anything longer is a
    /// member that no longer answers, and is reported within minutes instead of never.
    pub const DEFAULT: StallLimit = StallLimit(Duration::from_secs(120));

    /// Parses a Go duration (`2m`, `90s`); zero is refused, as it would stop every save.
    pub fn parse(text: &str) -> Result<StallLimit, String> {
        let d = GoDuration::parse(text).map_err(|e| e.to_string())?;
        if d.0.is_zero() {
            return Err("the stall limit must be longer than zero".into());
        }
        Ok(StallLimit(d.0))
    }
}

impl Default for StallLimit {
    fn default() -> Self {
        StallLimit::DEFAULT
    }
}

/// What the file looked like when it stopped changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    /// Its size then (0 when it was never created).
    pub bytes: u64,
}

/// Returns once `file` has not changed (its size, or whether it exists) for `limit`; never
/// while it keeps changing. The file appearing, growing and being renamed away (etcdctl's
/// last act) all count as change.
pub async fn watch(file: &Path, limit: StallLimit) -> Stalled {
    // Fine enough to notice a change well within the limit, coarse enough to cost nothing.
    let poll = (limit.0 / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut seen = size(file);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        let now = size(file);
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= limit.0 {
            return Stalled { bytes: seen.unwrap_or(0) };
        }
    }
}

fn size(file: &Path) -> Option<u64> {
    std::fs::metadata(file).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn limits_parse_as_go_durations() {
        assert_eq!(StallLimit::parse("2m").unwrap(), StallLimit::DEFAULT);
        assert_eq!(StallLimit::parse("1.5s").unwrap(), StallLimit(Duration::from_millis(1500)));
        assert!(StallLimit::parse("0s").is_err());
        assert!(StallLimit::parse("10").is_err());
    }

    /// A file that grows every 100 s for ten minutes is never taken for stalled under a
    /// 2-minute limit; once it stops, it is, with its size. (Tokio's paused clock: minutes
    /// pass in no time, and no real timing is involved.)
    #[tokio::test(start_paused = true)]
    async fn a_slow_file_is_not_stalled_a_silent_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("snap.part");
        let watcher = tokio::spawn({
            let part = part.clone();
            async move { watch(&part, StallLimit::DEFAULT).await }
        });
        let start = Instant::now();
        // Not there yet for 100 s: no change, but within the limit.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let mut f = std::fs::File::create(&part).unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(100)).await;
            assert!(!watcher.is_finished(), "stopped while the file was growing");
            f.write_all(&[0u8; 1000]).unwrap();
        }
        let stalled = watcher.await.unwrap();
        assert_eq!(stalled, Stalled { bytes: 6000 });
        assert!(start.elapsed() >= Duration::from_secs(700 + 120), "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_that_never_appears_is_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let stalled = watch(&dir.path().join("never.part"), StallLimit(Duration::from_secs(5))).await;
        assert_eq!(stalled, Stalled { bytes: 0 });
    }
}
