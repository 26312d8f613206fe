//! Host-to-host copies of a snapshot over the cluster network, so that its bytes never pass
//! through the workstation (RKE serves a restore's snapshot between hosts the same way).
//!
//! The source runs [`serve`]: it listens on its cluster address, accepts only the listed
//! peer, requires the peer's etcd member certificate (mutual TLS with the member
//! certificates; which certificate counts is [`super::peer_cert`]'s), sends the one file
//! (its size, then its bytes) and exits. The destination runs [`fetch`]: it checks that the
//! server presents the source's member certificate the same way, writes the bytes to a
//! private temporary file while hashing them, and moves the file into place only when every
//! byte arrived and they are the bytes the plan pinned (verify, then rename).
//!
//! The source handshakes with every connection from the peer's address at once, each for
//! at most [`HANDSHAKE_TIMEOUT`], and serves the first that completes: a connection that
//! never speaks TLS (a port scan, a local user of the peer host) does not hold up the real
//! fetch.
//!
//! A destination that cannot open the connection exits with [`EXIT_UNREACHABLE`], which
//! the workstation takes as "copy through me instead"; any later failure is a failure.
//!
//! [`serve`]: Server::serve

use super::AgentError;
use super::peer_cert::{MemberClientVerifier, MemberServerVerifier};
use super::snapshot::PrintProgress;
use crate::model::{Checksum, SnapshotFacts};
use crate::s3::TransferProgress;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Prefix of the line on which [`serve`] says which port it listens on.
pub const LISTENING: &str = "RKECTL-LISTENING ";

/// The fetch's exit code when it could not reach the source at all (EX_UNAVAILABLE).
pub const EXIT_UNREACHABLE: u8 = 69;

/// How long a connection attempt may take before the source counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the source gives a connection to finish its TLS handshake: the fetch's own
/// limit, so a real peer is never dropped while it still waits.
pub const HANDSHAKE_TIMEOUT: Duration = CONNECT_TIMEOUT;

/// What a fetch received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReport {
    pub size: u64,
    pub checksum: Checksum,
}

/// What a serve sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeReport {
    pub bytes: u64,
    pub peer: IpAddr,
}

/// The certificate files of a member, as mounted in the helper.
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

fn load(
    files: &TlsFiles<'_>,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), AgentError> {
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| AgentError::new(format!("{what} {}: {e}", p.display()));
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(files.ca).map_err(|e| bad("cannot read the CA", files.ca, &e))? {
        roots.add(c.map_err(|e| bad("cannot read the CA", files.ca, &e))?).map_err(|e| bad("bad CA", files.ca, &e))?;
    }
    let chain = CertificateDer::pem_file_iter(files.cert)
        .map_err(|e| bad("cannot read the certificate", files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cannot read the certificate", files.cert, &e))?;
    // The key file's content never goes into a message, only its path.
    let key = PrivateKeyDer::from_pem_file(files.key)
        .map_err(|_| AgentError::new(format!("cannot read the private key {}", files.key.display())))?;
    Ok((roots, chain, key))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The source's side of a copy: bound and ready, its port known.
pub struct Server {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    source: tokio::fs::File,
    size: u64,
    file: std::path::PathBuf,
    peer: IpAddr,
}

impl Server {
    /// Opens `file` and listens on `listen` (any free port) with the member's certificate,
    /// for `peer` only.
    pub async fn bind(file: &Path, listen: IpAddr, peer: IpAddr, tls: &TlsFiles<'_>) -> Result<Server, AgentError> {
        let (roots, chain, key) = load(tls)?;
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| AgentError::new(format!("client verifier: {e}")))?;
        let verifier = Arc::new(MemberClientVerifier { inner: webpki, peer });
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::new(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| AgentError::new(format!("the member certificate {}: {e}", tls.cert.display())))?;
        let source = tokio::fs::File::open(file)
            .await
            .map_err(|e| AgentError::new(format!("cannot open {}: {e}", file.display())))?;
        let size = source.metadata().await?.len();
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(listen, 0))
            .await
            .map_err(|e| AgentError::new(format!("cannot listen on {listen}: {e}")))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(Server { listener, acceptor, source, size, file: file.to_path_buf(), peer })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Sends the file once to the peer (its size, then its bytes), telling `progress` as
    /// the bytes go; gives up when the peer did not fetch it within `wait`. Connections
    /// from other addresses, and certificates other than the peer's member certificate,
    /// are turned away.
    pub async fn serve(mut self, wait: Duration, progress: &dyn TransferProgress) -> Result<ServeReport, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        let (peer, file) = (self.peer, self.file.display().to_string());
        let mut handshakes = tokio::task::JoinSet::new();
        let mut stream = loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (tcp, from) = accepted?;
                    if from.ip() != peer {
                        eprintln!("refused a connection from {from}: only {peer} may fetch {file}");
                        continue;
                    }
                    let acceptor = self.acceptor.clone();
                    handshakes.spawn(async move {
                        (from, tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await)
                    });
                }
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => match done {
                    Ok((_, Ok(Ok(stream)))) => break stream,
                    Ok((from, Ok(Err(e)))) => eprintln!("refused {from}: {}", tls_error(&e)),
                    Ok((from, Err(_))) => {
                        eprintln!("dropped {from}: no TLS handshake within {}s", HANDSHAKE_TIMEOUT.as_secs());
                    }
                    Err(e) => return Err(AgentError::new(format!("a TLS handshake failed: {e}"))),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(AgentError::new(format!("{peer} did not fetch {file} within {}s", wait.as_secs())));
                }
            }
        };
        // Served once: the other connections (and the listener) go.
        handshakes.abort_all();
        drop(self.listener);
        let sent = send(&mut self.source, &mut stream, self.size, progress).await?;
        if sent != self.size {
            return Err(AgentError::new(format!("{file} changed while it was sent ({sent} of {} bytes)", self.size)));
        }
        Ok(ServeReport { bytes: sent, peer })
    }
}

/// Sends `size`, then the file, then closes; returns the bytes of the file sent.
///
/// The serving helper's progress lines are what keeps the workstation from taking it for
/// hung (its silence limit, [`crate::host::Silence`]): a long copy prints as long as bytes
/// move, and a stalled one (the peer reads nothing) prints nothing and is stopped.
async fn send(
    source: &mut tokio::fs::File,
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    size: u64,
    progress: &dyn TransferProgress,
) -> Result<u64, AgentError> {
    stream.write_all(&size.to_be_bytes()).await?;
    progress.started(Some(size));
    // Large reads: TLS records are 16 KiB whatever, but the file is read in big pieces.
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    let result = async {
        loop {
            let n = source.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
            sent += n as u64;
            progress.advanced(n as u64);
        }
        stream.shutdown().await
    }
    .await;
    progress.finished();
    result?;
    Ok(sent)
}

/// Why a fetch failed: before anything was received (copy another way) or after.
#[derive(Debug)]
pub enum FetchError {
    Unreachable(String),
    Failed(AgentError),
}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        FetchError::Failed(e.into())
    }
}

/// Fetches the file `from` serves into `out` (mode 0600), hashing it as it is written.
/// It is received under a `.part` name and renamed to `out` only once it is the bytes of
/// `expect` (the plan's pin): a crash never leaves unverified bytes under a snapshot's name,
/// where they would count as that host's own copy.
pub async fn fetch(
    from: SocketAddr,
    out: &Path,
    tls: &TlsFiles<'_>,
    expect: &SnapshotFacts,
) -> Result<FetchReport, FetchError> {
    let expect_size = expect.size;
    let (roots, chain, key) = load(tls).map_err(FetchError::Failed)?;
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| FetchError::Failed(AgentError::new(format!("server verifier: {e}"))))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Failed(AgentError::new(e.to_string())))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MemberServerVerifier { inner: webpki }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            FetchError::Failed(AgentError::new(format!("the member certificate {}: {e}", tls.cert.display())))
        })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let unreachable = |e: &dyn std::fmt::Display| FetchError::Unreachable(format!("cannot reach {from}: {e}"));
    // The source starts listening just before it says so; a refusal right then is retried.
    let tcp = {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(from)).await {
                Ok(Ok(s)) => break s,
                Ok(Err(e))
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && tokio::time::Instant::now() + Duration::from_millis(200) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(e)) => return Err(unreachable(&e)),
                Err(_) => return Err(unreachable(&"no answer within 10s")),
            }
        }
    };
    let name = ServerName::IpAddress(from.ip().into());
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| unreachable(&"the TLS handshake did not finish within 10s"))?
        .map_err(|e| unreachable(&format!("TLS: {}", tls_error(&e))))?;
    // With TLS 1.3 a server that refuses our certificate says so only now: still before
    // any byte of the file, so still "cannot copy this way".
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).await.map_err(|e| unreachable(&format!("TLS: {}", tls_error(&e))))?;
    let size = u64::from_be_bytes(len);
    if size != expect_size {
        return Err(FetchError::Failed(AgentError::new(format!(
            "{from} offers {size} bytes, the plan expects {expect_size}"
        ))));
    }
    // `<file>.part`, as every partial file rkectl writes: listings leave such files out.
    let mut part = out.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let written = receive(&mut stream, &part, size).await;
    let (received, hasher) = match written {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::Failed(e));
        }
    };
    let checksum = Checksum::from_hasher(&hasher);
    if received != expect.size || checksum != expect.checksum {
        let _ = std::fs::remove_file(&part);
        return Err(FetchError::Failed(AgentError::new(format!(
            "the copy from {from} arrived damaged ({received} bytes, {}; the plan expects {expect_size} bytes, {}); it was not kept",
            checksum.short(),
            expect.checksum.short()
        ))));
    }
    std::fs::rename(&part, out).map_err(|e| FetchError::Failed(e.into()))?;
    if let Some(dir) = out.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(FetchReport { size: received, checksum })
}

/// A TLS failure in words: rustls prints a refusal of [`super::peer_cert`]'s in Debug form.
fn tls_error(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error, OtherError};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::Other(OtherError(why)))) => {
            format!("invalid peer certificate: {why}")
        }
        _ => e.to_string(),
    }
}

/// Writes exactly `size` bytes from `stream` into a new private file, hashing them.
async fn receive(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    part: &Path,
    size: u64,
) -> Result<(u64, blake3::Hasher), AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(part)?;
    let mut hasher = blake3::Hasher::new();
    let progress = PrintProgress::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0u64;
    while received < size {
        // A TLS read gives at most one record (16 KiB): fill the buffer before hashing and
        // writing, so the disk sees large writes.
        let want = buf.len().min((size - received) as usize);
        let mut filled = 0;
        while filled < want {
            let n = stream.read(&mut buf[filled..want]).await?;
            if n == 0 {
                let got = received + filled as u64;
                return Err(AgentError::new(format!("the source closed the connection after {got} of {size} bytes")));
            }
            filled += n;
        }
        hasher.update(&buf[..filled]);
        file.write_all(&buf[..filled])?;
        received += filled as u64;
        progress.advanced(filled as u64);
    }
    progress.finished();
    file.sync_all()?;
    Ok((received, hasher))
}
