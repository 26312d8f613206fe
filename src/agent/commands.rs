//! What the agent's commands do between their arguments and the functions that do the
//! work: requests built, report lines printed, failures told apart.

use super::{AgentError, FormatArg, S3Args, Tls, drill, report, snapshot, transfer, verify};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Prints a command's report line: the command succeeded.
pub(super) fn print_report<T: Serialize>(r: &T) -> Result<(), AgentError> {
    println!("{}", report::line(r));
    Ok(())
}

/// Checks each file, printing a report line for each; fails naming every file that
/// could not be checked.
pub(super) async fn snapshot_verify(paths: Vec<PathBuf>, checksum_only: bool) -> Result<(), AgentError> {
    let mut failed = Vec::new();
    for path in paths {
        let r = if checksum_only { verify::checksum(&path).await } else { verify::verify(&path).await };
        match r {
            Ok(r) => println!("{}", report::line(&r)),
            Err(e) => failed.push(format!("{}: {e}", path.display())),
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(AgentError::new(failed.join("; "))) }
}

/// Takes a snapshot and prints its report.
pub(super) async fn snapshot_save(req: snapshot::SaveRequest<'_>) -> Result<(), AgentError> {
    let r = snapshot::save(req).await?;
    print_report(&r)
}

/// Downloads a snapshot from the bucket given (one is required), verified, and prints its report.
pub(super) async fn s3_download(
    name: &str,
    format: FormatArg,
    into: &Path,
    etag: Option<&str>,
    checksum: Option<&crate::model::Checksum>,
    s3: &S3Args,
) -> Result<(), AgentError> {
    let settings = s3.settings().map_err(AgentError::new)?.ok_or_else(|| AgentError::new("--bucket is required"))?;
    let r = snapshot::download(snapshot::DownloadRequest {
        s3: &settings,
        name,
        format: format.into(),
        into,
        etag,
        checksum,
    })
    .await?;
    print_report(&r)
}

/// Unpacks an archive's database, refused when etcd's check of it fails.
pub(super) async fn snapshot_unpack(archive: &Path, out: &Path) -> Result<(), AgentError> {
    let r = verify::unpack(archive, out).await?;
    if !r.etcd_ok {
        return Err(AgentError::new(format!(
            "the unpacked database fails etcd's check: {}",
            r.problem.unwrap_or_default()
        )));
    }
    print_report(&r)
}

/// Serves `file` once to `peer`, after printing the port it listens on.
pub(super) async fn serve_snapshot(
    file: &Path,
    listen: std::net::IpAddr,
    peer: std::net::IpAddr,
    wait_secs: u64,
    tls: &Tls,
) -> Result<(), AgentError> {
    let files = transfer::TlsFiles { ca: &tls.cacert, cert: &tls.cert, key: &tls.key };
    let server = transfer::Server::bind(file, listen, peer, &files).await?;
    println!("{}{}", transfer::LISTENING, server.port());
    std::io::Write::flush(&mut std::io::stdout())?;
    // Printed while the bytes go: the workstation's proof that a long copy is alive.
    let r = server.serve(std::time::Duration::from_secs(wait_secs), &snapshot::PrintProgress::default()).await?;
    print_report(&r)
}

/// Fetches a file another host serves; a host that cannot be reached is told apart.
pub(super) async fn fetch_snapshot(
    from: std::net::SocketAddr,
    out: &Path,
    expect: &crate::model::SnapshotFacts,
    tls: &Tls,
) -> Result<(), AgentError> {
    let files = transfer::TlsFiles { ca: &tls.cacert, cert: &tls.cert, key: &tls.key };
    match transfer::fetch(from, out, &files, expect).await {
        Ok(r) => print_report(&r),
        Err(transfer::FetchError::Unreachable(why)) => Err(AgentError::unreachable(why)),
        Err(transfer::FetchError::Failed(e)) => Err(e),
    }
}

/// Drills `file` (comparing with the running member when given) and prints what it found.
pub(super) async fn snapshot_drill(file: &Path, live_endpoint: Option<&str>, tls: &Tls) -> Result<(), AgentError> {
    let r = drill::drill(drill::DrillRequest { file, live_endpoint, tls }).await?;
    print_report(&r)
}
