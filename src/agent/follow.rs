//! Following the plain file etcdctl writes during a save: each chunk goes to etcd's
//! trailer check and into the archive, whose bytes are hashed and handed to the upload.

use super::hashes::Hashes;
use crate::model::{Checksum, SnapshotFacts, SnapshotName};
use crate::rke::archive::ArchiveWriter;
use crate::s3::TransferProgress;
use bytes::Bytes;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const CHUNK: usize = 1 << 20;

/// Where the archive's bytes go: the file, BLAKE3, and the upload when there is one.
pub(super) struct Tee {
    pub(super) file: std::fs::File,
    pub(super) hasher: blake3::Hasher,
    pub(super) size: u64,
    pub(super) upload: Option<tokio::sync::mpsc::Sender<std::io::Result<Bytes>>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        if let Some(tx) = &self.upload
            && tx.blocking_send(Ok(Bytes::copy_from_slice(buf))).is_err()
        {
            return Err(std::io::Error::other("the upload stopped"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// What the follower made: the archive's size and checksum, the database's, and etcd's
/// trailer problem if any.
pub(super) struct Followed {
    pub(super) archive: SnapshotFacts,
    pub(super) db: SnapshotFacts,
    pub(super) trailer: Option<String>,
}

/// Follows the plain file etcdctl writes, archiving each chunk as it lands.
pub(super) fn follow(
    part: &Path,
    done_path: &Path,
    done_rx: tokio::sync::watch::Receiver<Option<bool>>,
    tee: Tee,
    name: &SnapshotName,
    state: Option<Vec<u8>>,
    progress: &dyn TransferProgress,
) -> Result<Followed, String> {
    let mut f = loop {
        if let Ok(f) = std::fs::File::open(part) {
            break f;
        }
        match *done_rx.borrow() {
            // etcdctl may have finished and renamed before we looked.
            Some(true) => break std::fs::File::open(done_path).map_err(|e| e.to_string())?,
            Some(false) => return Err("etcdctl failed before writing the snapshot".into()),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut h = Hashes::new();
    let mut zip = ArchiveWriter::start(tee, name.as_str()).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n > 0 {
            h.update(&buf[..n]);
            zip.write_db(&buf[..n]).map_err(|e| e.to_string())?;
            progress.advanced(n as u64);
            continue;
        }
        match *done_rx.borrow() {
            None => std::thread::sleep(Duration::from_millis(10)),
            Some(true) => {
                // Writing is over; read whatever landed after our last read.
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                zip.write_db(&buf[..n]).map_err(|e| e.to_string())?;
                progress.advanced(n as u64);
            }
            Some(false) => return Err("etcdctl snapshot save failed".into()),
        }
    }
    let tee = zip.finish(state.as_deref()).map_err(|e| e.to_string())?;
    tee.file.sync_all().map_err(|e| e.to_string())?;
    let (db_size, db_sum, trailer) = h.finish();
    Ok(Followed {
        archive: SnapshotFacts { size: tee.size, checksum: Checksum::from_hasher(&tee.hasher) },
        db: SnapshotFacts { size: db_size, checksum: db_sum },
        trailer,
    })
}
