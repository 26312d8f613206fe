//! Snapshot archives as rke-tools writes them: `/opt/rke/etcd-snapshots/<name>.zip`.
//!
//! rke-tools (`compressFiles`) saves the snapshot as `/backup/<name>` inside its container
//! (the host's snapshot folder is mounted at `/backup`), then zips it with Deflate into
//! `<name>.zip` (mode 0600) and deletes the plain file. Entries are named by their full path
//! inside that container, leading slash included: `/backup/<name>` for the database and,
//! when the cluster's state was there, `/etc/kubernetes/<name>.rkestate` (RKE's state file,
//! every private key of the cluster in clear). In S3 the object is `<folder>/<name>.zip`.
//!
//! rkectl writes the same layout, so `rke etcd snapshot-restore` restores what rkectl saved,
//! and reads it, so rkectl restores what RKE saved. Writing streams (the archive is produced
//! while etcd's snapshot is still being written), so it is usable on a pipe.

use std::io::{self, Read, Seek, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// The suffix of an archive's file name.
pub const SUFFIX: &str = crate::model::snapshot::ARCHIVE_SUFFIX;

/// The database entry of snapshot `name`.
pub fn db_entry(name: &str) -> String {
    format!("/backup/{name}")
}

/// The state entry of snapshot `name`.
pub fn state_entry(name: &str) -> String {
    format!("/etc/kubernetes/{name}.rkestate")
}

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        // Level 1: an etcd database compresses nearly as well at the fastest level, and the
        // archive is written while etcd streams the snapshot, which it must keep up with.
        .compression_level(Some(1))
        .unix_permissions(0o600)
        .large_file(true)
}

/// Writes an archive to a stream: the database first, in chunks, then optionally the state.
pub struct ArchiveWriter<W: Write> {
    zip: ZipWriter<zip::write::StreamWriter<W>>,
    name: String,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts the archive of snapshot `name` and its database entry.
    pub fn start(out: W, name: &str) -> io::Result<Self> {
        let mut zip = ZipWriter::new_stream(out);
        zip.start_file(db_entry(name), options()).map_err(io::Error::other)?;
        Ok(ArchiveWriter { zip, name: name.to_string() })
    }

    /// Appends database bytes.
    pub fn write_db(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.zip.write_all(chunk)
    }

    /// Adds the state entry (when given), writes the directory and returns the stream.
    pub fn finish(mut self, state: Option<&[u8]>) -> io::Result<W> {
        if let Some(s) = state {
            self.zip.start_file(state_entry(&self.name), options()).map_err(io::Error::other)?;
            self.zip.write_all(s)?;
        }
        Ok(self.zip.finish().map_err(io::Error::other)?.into_inner())
    }
}

/// What an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    /// It has the database entry of its name.
    pub db: bool,
    /// It has the state entry of its name.
    pub state: bool,
}

/// Opens an archive and says which of its two entries it has.
pub fn contents<R: Read + Seek>(archive: R, name: &str) -> io::Result<(ZipArchive<R>, Contents)> {
    let zip = ZipArchive::new(archive).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let c = Contents {
        db: zip.index_for_name(&db_entry(name)).is_some(),
        state: zip.index_for_name(&state_entry(name)).is_some(),
    };
    Ok((zip, c))
}

/// Streams the database entry of snapshot `name` to `f`, in chunks.
pub fn read_db<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let entry = db_entry(name);
    let mut file = zip
        .by_name(&entry)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("the archive has no entry {entry} ({e})")))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        f(&buf[..n])?;
    }
}

/// The state entry of snapshot `name`, when the archive has one.
pub fn read_state<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let entry = state_entry(name);
    let Some(i) = zip.index_for_name(&entry) else { return Ok(None) };
    let mut file = zip.by_index(i).map_err(io::Error::other)?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    Ok(Some(out))
}

/// A file somewhere else (on a node, in S3) that can be read in ranges.
#[async_trait::async_trait]
pub trait RangeSource: Send + Sync {
    /// The file's size.
    fn size(&self) -> u64;
    /// `len` bytes from `offset`.
    async fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>>;
}

/// Blocks read from a [`RangeSource`], cached: a zip reader seeks to the directory at the
/// end, then to the one entry it wants, so only those parts ever move.
struct BlockReader {
    source: std::sync::Arc<dyn RangeSource>,
    runtime: tokio::runtime::Handle,
    pos: u64,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
}

const BLOCK: u64 = 256 * 1024;

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.source.size();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let index = self.pos / BLOCK;
        if !self.blocks.contains_key(&index) {
            let start = index * BLOCK;
            let data = self.runtime.block_on(self.source.read_range(start, BLOCK.min(size - start)))?;
            self.blocks.insert(index, data);
        }
        let block = &self.blocks[&index];
        let at = (self.pos - index * BLOCK) as usize;
        if at >= block.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than its size"));
        }
        let n = buf.len().min(block.len() - at);
        buf[..n].copy_from_slice(&block[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockReader {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let size = self.source.size() as i128;
        let pos = match to {
            io::SeekFrom::Start(p) => p as i128,
            io::SeekFrom::End(d) => size + d as i128,
            io::SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

/// The state entry of snapshot `name`'s archive that is elsewhere, reading only the
/// archive's directory and that entry.
pub async fn remote_state(source: std::sync::Arc<dyn RangeSource>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let runtime = tokio::runtime::Handle::current();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let reader = BlockReader { source, runtime, pos: 0, blocks: Default::default() };
        let (mut zip, contents) = contents(reader, &name)?;
        if !contents.state {
            return Ok(None);
        }
        read_state(&mut zip, &name)
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn an_archive_round_trips_with_rke_tools_entry_names() {
        let mut w = ArchiveWriter::start(Vec::new(), "snap").unwrap();
        w.write_db(b"etcd ").unwrap();
        w.write_db(b"database").unwrap();
        let bytes = w.finish(Some(b"{\"desiredState\":{}}")).unwrap();
        let (mut zip, c) = contents(Cursor::new(bytes), "snap").unwrap();
        assert_eq!(c, Contents { db: true, state: true });
        let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert_eq!(names, ["/backup/snap", "/etc/kubernetes/snap.rkestate"]);
        let mut db = Vec::new();
        read_db(&mut zip, "snap", |c| {
            db.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(db, b"etcd database");
        assert_eq!(read_state(&mut zip, "snap").unwrap().unwrap(), b"{\"desiredState\":{}}");
    }

    struct InMemory(Vec<u8>, std::sync::atomic::AtomicU64);

    #[async_trait::async_trait]
    impl RangeSource for InMemory {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        async fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
            self.1.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
            let s = offset as usize;
            Ok(self.0[s..(s + len as usize).min(self.0.len())].to_vec())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_state_of_a_remote_archive_is_read_without_its_database() {
        let mut w = ArchiveWriter::start(Vec::new(), "big").unwrap();
        // Incompressible bytes, so the database entry is large in the archive too.
        let mut x: u64 = 1;
        for _ in 0..(4 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.write_db(&x.to_le_bytes()).unwrap();
        }
        let bytes = w.finish(Some(b"STATE")).unwrap();
        let total = bytes.len() as u64;
        let src = std::sync::Arc::new(InMemory(bytes, Default::default()));
        let got = remote_state(src.clone(), "big").await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"STATE"[..]));
        let read = src.1.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read * 4 < total, "read {read} of {total} bytes");
    }

    #[test]
    fn an_archive_without_state_says_so() {
        let w = ArchiveWriter::start(Vec::new(), "s").unwrap();
        let bytes = w.finish(None).unwrap();
        let (mut zip, c) = contents(Cursor::new(bytes), "s").unwrap();
        assert_eq!(c, Contents { db: true, state: false });
        assert_eq!(read_state(&mut zip, "s").unwrap(), None);
        let (_, c) =
            contents(Cursor::new(ArchiveWriter::start(Vec::new(), "s").unwrap().finish(None).unwrap()), "t").unwrap();
        assert!(!c.db, "another name's archive has no database for this name");
    }
}
