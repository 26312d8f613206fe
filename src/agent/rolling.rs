//! The recurring snapshot service (`etcd-rolling-snapshots`): a snapshot every `creation`,
//! pruned by age (legacy `retention`) or by count (`backup_config.retention`), on the node
//! and in S3. Its log lines are the reference's:
//! `level=info msg="Initializing Rolling Backups" creation=1m0s retention=24h0m0s` and
//! `level=info msg="Created backup" name="2018-05-04T18:40:16Z_etcd" runtime=108.332814ms`.
//!
//! Retention runs only after a backup that succeeded, and never takes the newest backup of
//! the node (nor the newest in S3): a member that cannot save (expired certificates, a
//! full disk, etcd down) would otherwise see every backup it has age past `retention` and
//! be deleted, the last good one with them. After a failed backup the log says
//! `level=info msg="Skipped pruning: the last backup failed"`.

use super::stall::StallLimit;
use super::{AgentError, Tls, snapshot};
use crate::config::{GoDuration, S3Settings};
use crate::model::{SnapshotFormat, SnapshotName};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The service's settings.
pub struct Settings {
    pub endpoint: String,
    pub dir: PathBuf,
    pub tls: Tls,
    pub creation: String,
    pub retention: Option<String>,
    pub keep: Option<u32>,
    /// How long etcdctl may write nothing before a snapshot is given up.
    pub stall_limit: StallLimit,
    pub s3: Option<S3Settings>,
    /// Drill each snapshot right after it is taken.
    pub drill: bool,
}

fn now_rfc3339() -> String {
    crate::local::now_rfc3339()
}

fn log(level: &str, msg: &str, fields: &str) {
    println!("time=\"{}\" level={level} msg=\"{msg}\"{fields}", now_rfc3339());
}

/// Runs forever.
pub async fn run(s: Settings) -> Result<(), AgentError> {
    let creation = GoDuration::parse(&s.creation).map_err(|e| AgentError::new(e.to_string()))?;
    if creation.0.is_zero() {
        return Err(AgentError::new("creation must be longer than zero"));
    }
    let retention = match &s.retention {
        Some(r) => Some(GoDuration::parse(r).map_err(|e| AgentError::new(e.to_string()))?),
        None => None,
    };
    let fields = match (&retention, s.keep) {
        (Some(r), _) => format!(" creation={creation} retention={r}"),
        (None, Some(k)) => format!(" creation={creation} retention={k}"),
        (None, None) => format!(" creation={creation}"),
    };
    log("info", "Initializing Rolling Backups", &fields);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + creation.0, creation.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let name = format!("{}_etcd", now_rfc3339());
        let t0 = std::time::Instant::now();
        let req = snapshot::SaveRequest {
            endpoint: &s.endpoint,
            tls: &s.tls,
            dir: &s.dir,
            name: &name,
            s3: s.s3.as_ref(),
            state_file: None,
            copied_to_every_host: false,
            stall_limit: s.stall_limit,
            // The service's log is rke-tools' format; progress lines have no place in it.
            progress: std::sync::Arc::new(crate::s3::NoProgress),
        };
        let saved = match snapshot::save(req).await {
            Ok(r) if r.etcd_ok => {
                let runtime = GoDuration(t0.elapsed());
                log("info", "Created backup", &format!(" name=\"{name}\" runtime={runtime}"));
                if s.drill {
                    drill(&s, &name).await;
                }
                true
            }
            Ok(r) => {
                let problem = r.problem.unwrap_or_default();
                log("error", "Backup failed its integrity check", &format!(" name=\"{name}\" error=\"{problem}\""));
                false
            }
            Err(e) => {
                let problem = e.message.replace('"', "'");
                log("error", "Failed to create backup", &format!(" name=\"{name}\" error=\"{problem}\""));
                false
            }
        };
        if !saved {
            // The backups there are may be all this member has until it saves again.
            log("info", "Skipped pruning: the last backup failed", &format!(" name=\"{name}\""));
        } else if let Err(e) = prune(&s, retention).await {
            log("error", "Failed to prune backups", &format!(" error=\"{}\"", e.message.replace('"', "'")));
        }
    }
}

/// Drills the snapshot just taken; its outcome is a log line like the others, a failure
/// at level error.
async fn drill(s: &Settings, name: &str) {
    let file = s.dir.join(format!("{name}.zip"));
    let req = super::drill::DrillRequest { file: &file, live_endpoint: None, tls: &s.tls };
    match super::drill::drill(req).await {
        Ok(r) => log(
            "info",
            "Drilled backup",
            &format!(
                " name=\"{name}\" keys={} revision={} restore={}",
                r.restored.keys,
                r.restored.revision,
                GoDuration(std::time::Duration::from_millis(r.restore_millis))
            ),
        ),
        Err(e) => log(
            "error",
            "Backup failed its restore drill",
            &format!(" name=\"{name}\" error=\"{}\"", e.message.replace('"', "'")),
        ),
    }
}

/// Recurring snapshots in `dir` (`<time>_etcd`, as a plain file or an archive): (file
/// name, when it was taken), oldest first. The time is the one in the name, as rke-tools
/// reads it, else the file's.
fn local_backups(dir: &Path) -> Result<Vec<(String, i64)>, AgentError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let file = e.file_name().to_string_lossy().into_owned();
        let Some((name, _)) = SnapshotFormat::parse_file_name(&file) else { continue };
        if !crate::model::is_recurring_name(&name) || !e.file_type()?.is_file() {
            continue;
        }
        let m = e.metadata()?.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        out.push((file, crate::model::name_time(&name).unwrap_or(m)));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// What retention deletes of `list` (oldest first, as [`local_backups`] sorts it): past
/// `retention`, or all but the newest `keep`; never the newest one, whatever its age.
fn expired(list: &[(String, i64)], retention: Option<GoDuration>, keep: Option<u32>, now: i64) -> Vec<String> {
    let Some((_newest, older)) = list.split_last() else { return Vec::new() };
    match (retention, keep) {
        (Some(r), _) => {
            let keep_for = i64::try_from(r.0.as_secs()).unwrap_or(i64::MAX);
            older.iter().filter(|(_, m)| now.saturating_sub(*m) > keep_for).map(|(n, _)| n.clone()).collect()
        }
        (None, Some(k)) => {
            let extra = list.len().saturating_sub(k as usize).min(older.len());
            older[..extra].iter().map(|(n, _)| n.clone()).collect()
        }
        (None, None) => Vec::new(),
    }
}

async fn prune(s: &Settings, retention: Option<GoDuration>) -> Result<(), AgentError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let local = local_backups(&s.dir)?;
    for file in expired(&local, retention, s.keep, now) {
        let _ = std::fs::remove_file(s.dir.join(&file));
        if let Some((name, _)) = SnapshotFormat::parse_file_name(&file) {
            let _ = std::fs::remove_file(snapshot::records_dir(&s.dir).join(format!("{name}.json")));
        }
        log("info", "Removed backup", &format!(" name=\"{file}\""));
    }
    if let Some(settings) = &s.s3 {
        let client = crate::s3::S3Client::new(settings).await.map_err(|e| AgentError::new(e.to_string()))?;
        let mut remote: Vec<(String, i64)> = client
            .list()
            .await
            .map_err(|e| AgentError::new(e.to_string()))?
            .into_iter()
            .filter_map(|o| {
                let (name, _) = SnapshotFormat::parse_file_name(o.name.as_str())?;
                crate::model::is_recurring_name(&name)
                    .then(|| (o.name.to_string(), crate::model::name_time(&name).unwrap_or(o.modified)))
            })
            .collect();
        remote.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        for name in expired(&remote, retention, s.keep, now) {
            if let Ok(n) = SnapshotName::new(name.as_str()) {
                client.delete(&n).await.map_err(|e| AgentError::new(e.to_string()))?;
                log("info", "Removed backup from S3", &format!(" name=\"{name}\""));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn list(times: &[i64]) -> Vec<(String, i64)> {
        times.iter().map(|t| (format!("b{t}"), *t)).collect()
    }

    fn secs(n: u64) -> Option<GoDuration> {
        Some(GoDuration(Duration::from_secs(n)))
    }

    #[test]
    fn retention_by_age_takes_what_is_older_than_retention() {
        assert_eq!(expired(&list(&[10, 50, 90, 100]), secs(30), None, 100), ["b10", "b50"]);
        assert!(expired(&[], secs(30), None, 100).is_empty());
    }

    #[test]
    fn retention_by_age_never_takes_the_newest_backup_however_old() {
        // A member that has not saved for a long while: every backup is past retention.
        assert_eq!(expired(&list(&[10, 20, 30]), secs(30), None, 1_000), ["b10", "b20"]);
        assert!(expired(&list(&[10]), secs(1), None, 1_000).is_empty(), "the only backup is the newest");
    }

    #[test]
    fn retention_by_count_keeps_the_newest_and_never_fewer_than_one() {
        assert_eq!(expired(&list(&[1, 2, 3, 4]), None, Some(2), 100), ["b1", "b2"]);
        assert!(expired(&list(&[1, 2]), None, Some(3), 100).is_empty());
        assert_eq!(expired(&list(&[1, 2, 3]), None, Some(0), 100), ["b1", "b2"]);
        assert!(expired(&list(&[1, 2, 3]), None, None, 100).is_empty());
    }
}
