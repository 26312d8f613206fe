//! The helpers rkectl runs, played on a fake host's files: rkectl's agent and etcd's restore.

use super::{ContainerBehaviour, FakeHostState, FakeWorld};
use crate::agent::AgentCommand;
use crate::agent::report::{self, Done, HealthReport, MemberHealth, SnapshotReport};
use crate::config::HostAddr;
use crate::etcd::{names, paths};
use crate::model::{Checksum, SnapshotFormat, SnapshotName};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn arg<'a>(cmd: &'a [String], flag: &str) -> Option<&'a str> {
    cmd.iter().position(|a| a == flag).and_then(|i| cmd.get(i + 1)).map(String::as_str).or_else(|| {
        let prefix = format!("{flag}=");
        cmd.iter().find_map(|a| a.strip_prefix(&prefix))
    })
}

fn snapshot_report(file: &str, data: &[u8]) -> SnapshotReport {
    let corrupt = data.starts_with(b"CORRUPT");
    let (name, format) = crate::model::SnapshotFormat::parse_file_name(file)
        .map(|(n, f)| (n.to_string(), f))
        .unwrap_or((file.to_string(), crate::model::SnapshotFormat::Raw));
    SnapshotReport {
        name,
        format,
        size: data.len() as u64,
        checksum: Checksum::of(data),
        etcd_ok: !corrupt,
        problem: corrupt.then(|| "sha256 trailer mismatch (fake)".to_string()),
        etcd: None,
        uploaded: false,
        db: None,
        has_state: false,
        identical_everywhere: false,
    }
}

/// rke-tools' archive of a fake database, made by the real archive writer.
pub fn archive(name: &str, db: &[u8], state: Option<&[u8]>) -> Vec<u8> {
    let mut w = crate::rke::archive::ArchiveWriter::start(Vec::new(), name).expect("in memory");
    w.write_db(db).expect("in memory");
    w.finish(state).expect("in memory")
}

/// The checker's report of a file: for an archive, of its database too (by the real reader).
fn checked(file: &str, data: &[u8]) -> SnapshotReport {
    let mut r = snapshot_report(file, data);
    if r.format == crate::model::SnapshotFormat::Zip {
        let name = r.name.clone();
        let mut db = Vec::new();
        match crate::rke::archive::contents(std::io::Cursor::new(data), &name) {
            Ok((mut z, c)) if c.db => {
                let _ = crate::rke::archive::read_db(&mut z, &name, |b| {
                    db.extend_from_slice(b);
                    Ok(())
                });
                r.has_state = c.state;
                r.db = Some(crate::model::SnapshotFacts { size: db.len() as u64, checksum: Checksum::of(&db) });
                r.etcd_ok = !db.starts_with(b"CORRUPT");
                r.problem = (!r.etcd_ok).then(|| "sha256 trailer mismatch (fake)".to_string());
            }
            _ => {
                r.etcd_ok = false;
                r.problem = Some("not a readable zip archive (fake)".into());
            }
        }
    }
    r
}

/// Where etcd keeps its database on a fake host.
fn data_db() -> String {
    format!("{}/member/db", paths::DATA_DIR)
}

/// Where etcd's restore leaves the database until the agent moves it into place.
fn staging_db() -> String {
    format!("{}/restore-staging/member/db", paths::DATA_DIR)
}

/// One host of the world; only containers found on a host are played.
fn host<'a>(hosts: &'a mut BTreeMap<HostAddr, FakeHostState>, addr: &HostAddr) -> &'a mut FakeHostState {
    hosts.get_mut(addr).expect("host exists")
}

/// The world's behaviour unless a test plugs another: rkectl's agent, etcd's restore, and
/// etcd itself, played on the host's files.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentSim;

impl ContainerBehaviour for AgentSim {
    fn run(
        &self,
        world: &FakeWorld,
        addr: &HostAddr,
        hosts: &mut BTreeMap<HostAddr, FakeHostState>,
        name: &str,
        cmd: &[String],
    ) -> (i64, String) {
        if name == names::RESTORE {
            return restore(host(hosts, addr), cmd, &staging_db());
        }
        if name == names::ETCD || name == names::ROLLING_SNAPSHOTS {
            return (0, String::new());
        }
        // Every other container is rkectl's agent: its argv is read as the agent reads it, so
        // an argv the agent would refuse fails here too.
        match crate::agent::argv::parse(cmd) {
            Ok(command) => agent(world, addr, hosts, command),
            Err(e) => (2, format!("rkectl agent: {e}")),
        }
    }
}

/// rkectl's agent running `command` on the host at `addr`.
fn agent(
    world: &FakeWorld,
    addr: &HostAddr,
    hosts: &mut BTreeMap<HostAddr, FakeHostState>,
    command: AgentCommand,
) -> (i64, String) {
    match command {
        AgentCommand::Clean { .. } => clean(host(hosts, addr)),
        AgentCommand::RestoreFinish { .. } => restore_finish(host(hosts, addr)),
        AgentCommand::SnapshotVerify { paths, .. } => verify(host(hosts, addr), &paths),
        AgentCommand::SnapshotSave { name, state_file, copied_to_every_host, s3, .. } => {
            save(world, host(hosts, addr), &name, state_file.as_deref(), copied_to_every_host, s3.bucket.is_some())
        }
        AgentCommand::S3Download { name, format, into, checksum, .. } => {
            s3_download(world, host(hosts, addr), &name, format.into(), &into, checksum.as_deref())
        }
        AgentCommand::SnapshotUnpack { archive: from, out } => unpack(host(hosts, addr), &from, &out),
        AgentCommand::SnapshotDelete { names, .. } => delete(host(hosts, addr), &names),
        AgentCommand::Health { endpoints, .. } => health(hosts, &endpoints),
        AgentCommand::MemberAdd { .. } | AgentCommand::MemberRemove { .. } => {
            (0, report::line(&Done { changed: true, detail: "member change".into() }))
        }
        AgentCommand::SnapshotDrill { file, .. } => drill(host(hosts, addr), &file),
        // Fake hosts share no network: a direct copy between them is refused before it
        // starts, so the copy goes through the workstation as it would past a firewall.
        AgentCommand::ServeSnapshot { .. } => (1, "fake hosts cannot reach each other\n".into()),
        AgentCommand::FetchSnapshot { .. }
        | AgentCommand::LinkLogs { .. }
        | AgentCommand::HoldLock { .. }
        | AgentCommand::Owners
        | AgentCommand::RollingSnapshots { .. } => (0, String::new()),
    }
}

/// `kube-cleaner`: empties the etcd data folder.
fn clean(s: &mut FakeHostState) -> (i64, String) {
    let prefix = format!("{}/", paths::DATA_DIR);
    s.files.retain(|k, _| !k.starts_with(&prefix));
    (0, report::line(&Done { changed: true, detail: "cleaned".into() }))
}

/// Moves the restored database from staging into place; done already if it is there.
fn restore_finish(s: &mut FakeHostState) -> (i64, String) {
    let data_db = data_db();
    match s.files.remove(&staging_db()) {
        Some(db) => {
            s.files.insert(data_db, db);
            (0, report::line(&Done { changed: true, detail: "moved".into() }))
        }
        None if s.files.contains_key(&data_db) => (0, report::line(&Done { changed: false, detail: "already".into() })),
        None => (1, "no staged data".into()),
    }
}

/// The checksum checker: a report line per file, and a failure for any file missing.
fn verify(s: &FakeHostState, files: &[PathBuf]) -> (i64, String) {
    let mut out = Vec::new();
    let mut code = 0;
    for path in files {
        let path = path.to_string_lossy();
        match s.files.get(path.as_ref()) {
            Some(d) => out.push(report::line(&checked(path.rsplit('/').next().unwrap_or(&path), d))),
            None => {
                code = 1;
                out.push(format!("{path}: no such file"));
            }
        }
    }
    (code, out.join("\n"))
}

/// `etcd-snapshot-once`: an archive of the host's data (and state file), its record, and
/// its copy in S3 when a bucket is named.
fn save(
    world: &FakeWorld,
    s: &mut FakeHostState,
    name: &str,
    state_file: Option<&Path>,
    copied_to_every_host: bool,
    to_s3: bool,
) -> (i64, String) {
    let Some(data) = s.etcd_data().map(<[u8]>::to_vec) else {
        return (1, "etcd is not running (fake)".into());
    };
    let state = state_file.and_then(|p| s.files.remove(p.to_string_lossy().as_ref()));
    let mut db = b"snapshot:".to_vec();
    db.extend(data);
    let zip = archive(name, &db, state.as_deref());
    let file = format!("{name}.zip");
    let mut r = checked(&file, &zip);
    r.identical_everywhere = copied_to_every_host;
    s.files.insert(format!("{}/{file}", paths::SNAPSHOT_DIR), zip.clone());
    if to_s3 {
        world.s3.lock().expect("s3 lock").insert(file, zip);
        r.uploaded = true;
    }
    s.files.insert(
        crate::layout::record(&SnapshotName::new(name).expect("name")),
        serde_json::to_vec(&r).expect("report"),
    );
    (0, report::line(&r))
}

/// Copies a snapshot from the fake bucket into `into`, with a record when that is the
/// snapshot folder.
fn s3_download(
    world: &FakeWorld,
    s: &mut FakeHostState,
    name: &str,
    format: SnapshotFormat,
    into: &Path,
    pinned: Option<&str>,
) -> (i64, String) {
    let file = format.file_name(&SnapshotName::new(name).expect("name"));
    let into = into.to_string_lossy().into_owned();
    match world.s3.lock().expect("s3 lock").get(&file).cloned() {
        // As the agent does: other bytes than the pinned ones are never put in place.
        Some(d) if pinned.is_some_and(|p| Checksum::of(&d).0 != p) => {
            (1, format!("snapshot {file} downloaded from S3 is not the one the plan pinned"))
        }
        Some(d) => {
            let r = checked(&file, &d);
            s.files.insert(format!("{into}/{file}"), d);
            if into == paths::SNAPSHOT_DIR {
                s.files.insert(
                    crate::layout::record(&SnapshotName::new(name).expect("name")),
                    serde_json::to_vec(&r).expect("report"),
                );
            }
            (0, report::line(&r))
        }
        None => (1, format!("{file}: NoSuchKey")),
    }
}

/// Takes an archive's database out to `out`, read by the real archive reader.
fn unpack(s: &mut FakeHostState, from: &Path, out: &Path) -> (i64, String) {
    let (from, out) = (from.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let Some(zip) = s.files.get(&from).cloned() else { return (1, format!("{from}: no such file")) };
    let name = from.rsplit('/').next().unwrap_or(&from).trim_end_matches(".zip").to_string();
    let mut db = Vec::new();
    let unpacked = crate::rke::archive::contents(std::io::Cursor::new(zip), &name).and_then(|(mut z, _)| {
        crate::rke::archive::read_db(&mut z, &name, |c| {
            db.extend_from_slice(c);
            Ok(())
        })
    });
    if let Err(e) = unpacked {
        return (1, format!("{from}: {e}"));
    }
    if db.starts_with(b"CORRUPT") {
        return (1, "the database is damaged (fake)".into());
    }
    let r = snapshot_report(&format!("{name}.db"), &db);
    s.files.insert(out, db);
    (0, report::line(&r))
}

/// Removes snapshots in every form they may take, and their records.
fn delete(s: &mut FakeHostState, names: &[String]) -> (i64, String) {
    for n in names {
        s.files.remove(&format!("{}/{n}", paths::SNAPSHOT_DIR));
        s.files.remove(&format!("{}/{n}.zip", paths::SNAPSHOT_DIR));
        s.files.remove(&format!("{}/{n}.json", paths::SNAPSHOT_META_DIR));
    }
    (0, report::line(&Done { changed: true, detail: "deleted".into() }))
}

/// Members' health: an endpoint is healthy when its reachable host runs etcd, and its
/// revision follows from its data.
fn health(hosts: &BTreeMap<HostAddr, FakeHostState>, endpoints: &str) -> (i64, String) {
    let running_members: Vec<(HostAddr, Vec<u8>)> = hosts
        .iter()
        .filter(|(_, s)| s.reachable && s.containers.get(names::ETCD).is_some_and(|c| c.running))
        .map(|(a, s)| (a.clone(), s.etcd_data().unwrap_or_default().to_vec()))
        .collect();
    let members = endpoints
        .split(',')
        .map(|e| {
            let host = e.trim_start_matches("https://").split(':').next().unwrap_or_default();
            let found = running_members.iter().find(|(a, _)| a.as_str() == host);
            MemberHealth {
                endpoint: e.to_string(),
                healthy: found.is_some(),
                // Members restored from one snapshot agree; the member suffix is not data.
                revision: found.map(|(_, d)| {
                    let data = d.split(|b| *b == b'|').next().unwrap_or_default();
                    data.iter().map(|b| i64::from(*b)).sum::<i64>() % 1000
                }),
                error: found.is_none().then(|| "connection refused (fake)".to_string()),
            }
        })
        .collect();
    (0, report::line(&HealthReport { members, member_names: Vec::new() }))
}

/// A drill of `file`: it fails on damaged data, else reports one restored key.
fn drill(s: &FakeHostState, file: &Path) -> (i64, String) {
    let file = file.to_string_lossy().into_owned();
    let Some(data) = s.files.get(&file).cloned() else { return (1, format!("{file}: no such file")) };
    if data.windows(7).any(|w| w == b"CORRUPT") {
        return (1, "etcdctl snapshot restore failed: snapshot file integrity check failed (fake)".into());
    }
    // The fake's databases are opaque bytes: one key, as if the data were one value.
    let restored = crate::agent::drill::KeyCounts {
        revision: 1,
        keys: 1,
        by_resource: [("(not kubernetes)".to_string(), 1)].into(),
    };
    let r = crate::agent::drill::DrillReport {
        snapshot: checked(file.rsplit('/').next().unwrap_or(&file), &data),
        hash: data.iter().map(|b| u64::from(*b)).sum(),
        restored,
        newest: None,
        restore_millis: 0,
        total_millis: 0,
        live: None,
    };
    (0, report::line(&r))
}

/// etcd's own `snapshot restore` (the etcd image's tool, not rkectl's agent): the file named
/// by its first argument, into the staging folder, marked with the member's name.
fn restore(s: &mut FakeHostState, cmd: &[String], staging_db: &str) -> (i64, String) {
    let snap = cmd.get(2).cloned().unwrap_or_default();
    let member = arg(cmd, "--name").unwrap_or("?").to_string();
    if s.files.keys().any(|k| k.starts_with(&format!("{}/restore-staging", paths::DATA_DIR))) {
        return (1, "Error: data-dir exists".into());
    }
    match s.files.get(&snap).cloned() {
        Some(content) => {
            let mut db = content;
            db.extend_from_slice(format!("|member={member}").as_bytes());
            s.files.insert(staging_db.to_string(), db);
            (0, "restored".into())
        }
        None => (1, format!("Error: open {snap}: no such file or directory")),
    }
}
