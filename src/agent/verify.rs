//! Checking snapshot files on a node, plain or archived, and unpacking an archive's
//! database for a restore.
//!
//! A plain file is hashed (BLAKE3), its SHA-256 trailer checked, and `etcdctl snapshot
//! status` run on it. An archive is hashed as a file; its database entry is streamed out of
//! it through the same trailer check (no temporary copy), and whether it carries the cluster
//! state is reported.

use super::AgentError;
use super::hashes::{Hashes, status};
use super::report::{EtcdStatus, SnapshotReport};
use crate::model::{Checksum, SnapshotFacts, SnapshotFormat, SnapshotName};
use crate::rke::archive;
use std::io::{Read, Write};
use std::path::Path;

const CHUNK: usize = 1 << 20;

/// The snapshot a path stands for, by its file name.
fn snapshot_of(path: &Path) -> Result<(SnapshotName, SnapshotFormat), AgentError> {
    // The file name as it is: `x.db` is snapshot `x.db` (a name RKE and etcdctl users give),
    // and a database unpacked for a restore is only ever read by path, never matched by name.
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    SnapshotFormat::parse_file_name(&file)
        .ok_or_else(|| AgentError::new(format!("{}: not a snapshot file name", path.display())))
}

/// Size and BLAKE3 of a file.
fn hash_file(path: &Path) -> Result<(u64, Checksum), AgentError> {
    let mut f = std::fs::File::open(path).map_err(|e| AgentError::new(format!("{}: {e}", path.display())))?;
    let mut h = blake3::Hasher::new();
    let size = std::io::copy(&mut f, &mut h).map_err(|e| AgentError::new(format!("{}: {e}", path.display())))?;
    Ok((size, Checksum::from_hasher(&h)))
}

fn report(name: &SnapshotName, format: SnapshotFormat, size: u64, checksum: Checksum) -> SnapshotReport {
    SnapshotReport {
        name: name.to_string(),
        format,
        size,
        checksum,
        etcd_ok: true,
        problem: None,
        etcd: None,
        uploaded: false,
        db: None,
        has_state: false,
        identical_everywhere: false,
    }
}

/// Size and BLAKE3 only (and, for an archive, whether it holds the state, which its
/// directory says): fast, for listings and for checking a copy is still the one pinned.
pub async fn checksum(path: &Path) -> Result<SnapshotReport, AgentError> {
    let p = path.to_path_buf();
    let (name, format) = snapshot_of(path)?;
    let n = name.clone();
    let (size, sum, has_state) = tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
        let (size, sum) = hash_file(&p)?;
        let has_state = format == SnapshotFormat::Zip
            && std::fs::File::open(&p)
                .ok()
                .and_then(|f| archive::contents(f, n.as_str()).ok())
                .is_some_and(|(_, c)| c.state);
        Ok((size, sum, has_state))
    })
    .await
    .map_err(|e| AgentError::new(e.to_string()))??;
    let mut r = report(&name, format, size, sum);
    r.has_state = has_state;
    Ok(r)
}

/// Every check there is: BLAKE3, etcd's trailer, and `snapshot status` or the archive's
/// contents.
pub async fn verify(path: &Path) -> Result<SnapshotReport, AgentError> {
    let (name, format) = snapshot_of(path)?;
    verify_as(path, &name, format).await
}

/// [`verify`] of a file that is snapshot `name` in `format` whatever its file name (a
/// download still under its `.part` name, checked before it is put in place).
pub async fn verify_as(path: &Path, name: &SnapshotName, format: SnapshotFormat) -> Result<SnapshotReport, AgentError> {
    let name = name.clone();
    match format {
        SnapshotFormat::Raw => verify_plain(path, &name).await,
        SnapshotFormat::Zip => verify_archive(path, &name).await,
    }
}

async fn verify_plain(path: &Path, name: &SnapshotName) -> Result<SnapshotReport, AgentError> {
    let p = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
        let mut f = std::fs::File::open(&p).map_err(|e| AgentError::new(format!("{}: {e}", p.display())))?;
        let mut h = Hashes::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    });
    let (hashed, st) = tokio::join!(hashed, status(path));
    let (size, checksum, trailer) = hashed.map_err(|e| AgentError::new(e.to_string()))??;
    Ok(with_checks(report(name, SnapshotFormat::Raw, size, checksum), trailer, Some(st)))
}

/// Records the outcome of etcd's checks in a report.
pub fn with_checks(
    mut r: SnapshotReport,
    trailer: Option<String>,
    status: Option<Result<EtcdStatus, String>>,
) -> SnapshotReport {
    let (etcd, status_problem) = match status {
        Some(Ok(s)) => (Some(s), None),
        Some(Err(e)) => (None, Some(format!("etcdctl snapshot status fails: {e}"))),
        None => (None, None),
    };
    r.problem = trailer.or(status_problem);
    r.etcd_ok = r.problem.is_none();
    r.etcd = etcd;
    r
}

async fn verify_archive(path: &Path, name: &SnapshotName) -> Result<SnapshotReport, AgentError> {
    let p = path.to_path_buf();
    let n = name.clone();
    tokio::task::spawn_blocking(move || -> Result<SnapshotReport, AgentError> {
        let (size, checksum) = hash_file(&p)?;
        let mut r = report(&n, SnapshotFormat::Zip, size, checksum);
        let file = std::fs::File::open(&p)?;
        let (mut zip, contents) = match archive::contents(file, n.as_str()) {
            Ok(z) => z,
            Err(e) => return Ok(with_checks(r, Some(format!("it is not a readable zip archive: {e}")), None)),
        };
        r.has_state = contents.state;
        if !contents.db {
            let problem = format!("the archive has no entry {}", archive::db_entry(n.as_str()));
            return Ok(with_checks(r, Some(problem), None));
        }
        let mut h = Hashes::new();
        if let Err(e) = archive::read_db(&mut zip, n.as_str(), |c| {
            h.update(c);
            Ok(())
        }) {
            return Ok(with_checks(r, Some(format!("its database entry cannot be read: {e}")), None));
        }
        let (db_size, db_sum, trailer) = h.finish();
        r.db = Some(SnapshotFacts { size: db_size, checksum: db_sum });
        Ok(with_checks(r, trailer, None))
    })
    .await
    .map_err(|e| AgentError::new(e.to_string()))?
}

/// Unpacks the database of snapshot `name` from `archive_path` into `out` (written to
/// `<out>.part`, synced, then renamed), checking etcd's trailer on the way. The report
/// describes the unpacked database.
pub async fn unpack(archive_path: &Path, out: &Path) -> Result<SnapshotReport, AgentError> {
    let (name, _) = snapshot_of(archive_path)?;
    let (a, o) = (archive_path.to_path_buf(), out.to_path_buf());
    let r = tokio::task::spawn_blocking(move || -> Result<SnapshotReport, AgentError> {
        let file = std::fs::File::open(&a).map_err(|e| AgentError::new(format!("{}: {e}", a.display())))?;
        let (mut zip, contents) = archive::contents(file, name.as_str())
            .map_err(|e| AgentError::new(format!("{}: not a readable archive: {e}", a.display())))?;
        if !contents.db {
            return Err(AgentError::new(format!("{}: no entry {}", a.display(), archive::db_entry(name.as_str()))));
        }
        if let Some(dir) = o.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let part = o.with_extension("db.part");
        let mut w = std::io::BufWriter::new(private_file(&part)?);
        let mut h = Hashes::new();
        let written = archive::read_db(&mut zip, name.as_str(), |c| {
            h.update(c);
            w.write_all(c)
        });
        let fin = written.and_then(|_| w.into_inner().map_err(|e| e.into_error())).and_then(|f| f.sync_all());
        if let Err(e) = fin {
            let _ = std::fs::remove_file(&part);
            return Err(AgentError::new(format!("unpacking {} into {}: {e}", a.display(), o.display())));
        }
        let (size, checksum, trailer) = h.finish();
        if let Some(problem) = trailer {
            let _ = std::fs::remove_file(&part);
            return Err(AgentError::new(format!("the database in {} is damaged: {problem}", a.display())));
        }
        std::fs::rename(&part, &o)?;
        Ok(report(&name, SnapshotFormat::Raw, size, checksum))
    })
    .await
    .map_err(|e| AgentError::new(e.to_string()))??;
    Ok(with_checks(r, None, Some(status(out).await)))
}

/// Creates (or truncates) a file only its owner can read: every snapshot holds every
/// Kubernetes Secret.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_named_x_db_is_snapshot_x_db() {
        let (name, format) = snapshot_of(Path::new("/opt/rke/etcd-snapshots/before-upgrade.db")).unwrap();
        assert_eq!((name.as_str(), format), ("before-upgrade.db", SnapshotFormat::Raw));
        let (name, format) = snapshot_of(Path::new("/opt/rke/etcd-snapshots/before-upgrade.db.zip")).unwrap();
        assert_eq!((name.as_str(), format), ("before-upgrade.db", SnapshotFormat::Zip));
    }
}
