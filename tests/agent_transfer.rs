//! The agent's host-to-host copy on loopback: the file arrives whole and private, and only a
//! peer with an etcd member certificate of the cluster's CA, from the listed address, gets
//! it; a connection that never handshakes does not hold up the peer.

use rkectl::agent::transfer::{self, FetchError, TlsFiles};
use rkectl::model::{Checksum, SnapshotFacts};
use rkectl::rke::pki::Pki;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CLUSTER: &str = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd]\n";

/// A member's certificate files of a new PKI, written into `dir`.
fn member_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    write_files(dir, &pki.ca.cert, &member.cert, member.key.expose())
}

fn new_pki() -> Pki {
    let cluster = rkectl::config::parse(Path::new("cluster.yml"), CLUSTER.to_string()).unwrap().cluster;
    Pki::generate(&cluster).unwrap()
}

fn write_files(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    (ca, cert, key)
}

/// A certificate of `pki`'s CA that is not an etcd one, as `kube-apiserver`'s is: its own
/// common name, loopback among its addresses, for clients and servers alike.
fn apiserver_like(pki: &Pki) -> (String, String) {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_RSA_SHA256,
        SanType,
    };
    use rustls_pki_types::pem::PemObject;
    let ca_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.ca.key.expose().as_bytes()).unwrap();
    let ca_key = KeyPair::from_der_and_sign_algo(&ca_der, &PKCS_RSA_SHA256).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pki.ca.cert, ca_key).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    p.subject_alt_names = vec![SanType::IpAddress(LOOPBACK), SanType::IpAddress("10.0.0.1".parse().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn files(f: &(PathBuf, PathBuf, PathBuf)) -> TlsFiles<'_> {
    TlsFiles { ca: &f.0, cert: &f.1, key: &f.2 }
}

/// The pin of `data`, as a plan makes it.
fn facts(data: &[u8]) -> SnapshotFacts {
    SnapshotFacts { size: data.len() as u64, checksum: Checksum::of(data) }
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Starts a server for `file`; returns its port and its outcome.
async fn serve(
    file: PathBuf,
    tls: (PathBuf, PathBuf, PathBuf),
    peer: IpAddr,
) -> (u16, tokio::task::JoinHandle<Result<transfer::ServeReport, rkectl::agent::AgentError>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let files = files(&tls);
        let server = transfer::Server::bind(&file, LOOPBACK, peer, &files).await?;
        let _ = tx.send(server.port());
        server.serve(Duration::from_secs(5), &rkectl::s3::NoProgress).await
    });
    (rx.await.expect("the server listens"), task)
}

#[tokio::test]
async fn a_peer_of_the_cluster_gets_the_file_whole_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, &data).unwrap();
    let (port, server) = serve(src, tls.clone(), LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&tls), &facts(&data)).await;
    let got = got.unwrap_or_else(|e| panic!("fetch failed: {e:?}"));
    assert_eq!(got.size, data.len() as u64);
    assert_eq!(got.checksum, Checksum::of(&data));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("copy.zip.part").exists());
    let served = server.await.unwrap().unwrap();
    assert_eq!(served.bytes, data.len() as u64);
}

/// Bytes that are not the plan's pin (the source's file changed since, or damaged on its
/// disk) are never renamed to the snapshot's name, nor left as a part file: a crash right
/// after the copy cannot leave them where they would count as this host's own copy.
#[tokio::test]
async fn bytes_that_are_not_the_pinned_ones_are_never_put_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"changed bytes").unwrap();
    let (port, server) = serve(src, tls.clone(), LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    let pinned = facts(b"planned bytes");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&tls), &pinned).await;
    let why = match &got {
        Err(FetchError::Failed(e)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(why.contains("arrived damaged") && why.contains(pinned.checksum.short()), "{why}");
    assert!(!out.exists(), "the unverified copy was put in place");
    assert!(!dir.path().join("copy.zip.part").exists(), "the unverified copy was left behind");
    assert!(server.await.unwrap().is_ok(), "the source sent its file");
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ours, theirs) = (member_files(&a), member_files(&b));
    let ours_ca = ours.0.clone();
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    let (port, server) = serve(src, ours, LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    // The client trusts the server; the server must refuse the client.
    let client = TlsFiles { ca: &ours_ca, cert: &theirs.1, key: &theirs.2 };
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &client, &facts(b"secret bytes")).await;
    assert!(matches!(got, Err(FetchError::Unreachable(ref why)) if why.contains("TLS")), "{got:?}");
    assert!(!out.exists() && !dir.path().join("copy.zip.part").exists());
    let served = server.await.unwrap();
    assert!(served.is_err(), "the server must not count a refused peer as served: {served:?}");
}

/// The cluster's CA signs more than the members' certificates: `kube-node` (kube-apiserver's
/// etcd client) and `kube-apiserver`'s (which names hosts by address, loopback too) chain to
/// it as well, and neither may fetch a snapshot.
#[tokio::test]
async fn a_certificate_of_the_cluster_ca_that_is_not_a_member_one_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    let ours = write_files(&dir.path().join("member"), &pki.ca.cert, &member.cert, member.key.expose());
    let node = pki.node.as_ref().unwrap();
    let (api_cert, api_key) = apiserver_like(&pki);
    let others = [
        ("kube-node", write_files(&dir.path().join("node"), &pki.ca.cert, &node.cert, node.key.expose())),
        ("kube-apiserver", write_files(&dir.path().join("api"), &pki.ca.cert, &api_cert, &api_key)),
    ];
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    for (what, theirs) in others {
        let (port, server) = serve(src.clone(), ours.clone(), LOOPBACK).await;
        let out = dir.path().join("copy.zip");
        let got =
            transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&theirs), &facts(b"secret bytes")).await;
        assert!(matches!(got, Err(FetchError::Unreachable(ref why)) if why.contains("TLS")), "{what}: {got:?}");
        assert!(!out.exists() && !dir.path().join("copy.zip.part").exists(), "{what}");
        let served = server.await.unwrap();
        assert!(served.is_err(), "{what} was served: {served:?}");
    }
}

/// The destination checks the source the same way: a server with the CA's `kube-apiserver`
/// certificate, valid for the address dialled, is not the source's member.
#[tokio::test]
async fn a_server_that_is_not_a_member_is_not_fetched_from() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    let ours = write_files(&dir.path().join("member"), &pki.ca.cert, &member.cert, member.key.expose());
    let (api_cert, api_key) = apiserver_like(&pki);
    let theirs = write_files(&dir.path().join("api"), &pki.ca.cert, &api_cert, &api_key);
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"planted bytes").unwrap();
    let (port, server) = serve(src, theirs, LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&ours), &facts(b"planted bytes")).await;
    let why = match &got {
        Err(FetchError::Unreachable(why)) => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why.contains("not an etcd member's"), "{why}");
    assert!(!out.exists());
    server.abort();
}

/// A connection from the peer's address that never starts its TLS handshake (a port scan,
/// another user of the peer host) is handshaken beside the real fetch, which is served at
/// once, not after the stalled one gives up.
#[tokio::test]
async fn a_connection_that_never_handshakes_does_not_hold_up_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let data = vec![7u8; 100_000];
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, &data).unwrap();
    let (port, server) = serve(src, tls.clone(), LOOPBACK).await;
    let to = SocketAddr::new(LOOPBACK, port);
    let _stalled =
        [tokio::net::TcpStream::connect(to).await.unwrap(), tokio::net::TcpStream::connect(to).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(to, &out, &files(&tls), &facts(&data)).await;
    let took = t.elapsed();
    got.unwrap_or_else(|e| panic!("fetch failed after {took:?}: {e:?}"));
    assert!(took < Duration::from_secs(2), "the fetch waited {took:?} behind the stalled connections");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(server.await.unwrap().unwrap().bytes, data.len() as u64);
}

#[tokio::test]
async fn a_connection_from_an_address_not_listed_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    let (port, server) = serve(src, tls.clone(), "10.9.9.9".parse().unwrap()).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&tls), &facts(b"secret bytes")).await;
    assert!(got.is_err(), "{got:?}");
    assert!(!out.exists());
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_source_that_does_not_listen_is_unreachable_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let port = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &dir.path().join("x"), &files(&tls), &facts(b"x")).await;
    assert!(matches!(got, Err(FetchError::Unreachable(_))), "{got:?}");
}

/// A TLS client of the member's own, reading as slowly as told: `rate` bytes a second,
/// or nothing more once `stop_after` bytes came. Returns the bytes read.
async fn slow_peer(to: SocketAddr, tls: &(PathBuf, PathBuf, PathBuf), rate: usize, stop_after: Option<usize>) -> usize {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::AsyncReadExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&tls.0).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&tls.1).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&tls.2).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    // A small receive buffer: what the server has sent is soon what the peer has read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let tcp = socket.connect(to).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut stream = connector.connect(ServerName::IpAddress(LOOPBACK.into()), tcp).await.unwrap();
    let tick = Duration::from_millis(100);
    let mut buf = vec![0u8; rate / 10];
    let mut read = 0;
    loop {
        if stop_after.is_some_and(|s| read >= s) {
            // Holds the connection open and reads nothing more, for ever.
            std::future::pending::<()>().await;
        }
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return read;
        }
        read += n;
        tokio::time::sleep(tick.mul_f64(n as f64 / buf.len() as f64)).await;
    }
}

/// Follows a process's output lines as the workstation follows a helper's: gives up once it
/// printed nothing for `silence`. Returns the lines, or the lines so far when it went silent.
async fn follow_lines(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    silence: Duration,
) -> Result<Vec<String>, Vec<String>> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(silence, lines.next_line()).await {
            Err(_) => return Err(seen),
            Ok(Ok(Some(l))) => seen.push(l),
            Ok(_) => return Ok(seen),
        }
    }
}

/// The serving helper, run as on a node (`rkectl agent serve-snapshot`), to a slow peer:
/// a copy that lasts several times the silence limit (scaled down here to 2 s from the
/// workstation's 600 s) is not taken for hung, because the helper prints its progress as
/// the bytes go; a peer that stops reading leaves it silent, and it is given up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_helper_prints_while_bytes_move_and_nothing_once_they_stop() {
    use tokio::io::AsyncBufReadExt;
    const SILENCE: Duration = Duration::from_secs(2);
    const SIZE: usize = 12 << 20;
    const RATE: usize = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, (0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let serve = || {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rkectl"));
        cmd.args(["agent", "serve-snapshot", "--listen", "127.0.0.1", "--peer", "127.0.0.1", "--file"])
            .arg(&src)
            .arg("--cacert")
            .arg(&tls.0)
            .arg("--cert")
            .arg(&tls.1)
            .arg("--key")
            .arg(&tls.2)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    let port = |line: Option<String>| -> u16 {
        let line = line.expect("the helper says where it listens");
        line.strip_prefix(transfer::LISTENING).unwrap_or_else(|| panic!("{line}")).trim().parse().unwrap()
    };

    // Slow: about four seconds of the peer reading, twice the silence limit.
    let (mut child, mut lines) = serve();
    let to = SocketAddr::new(LOOPBACK, port(lines.next_line().await.unwrap()));
    let t = std::time::Instant::now();
    let peer = tokio::spawn({
        let tls = tls.clone();
        async move { slow_peer(to, &tls, RATE, None).await }
    });
    let followed = follow_lines(&mut lines, SILENCE).await;
    let took = t.elapsed();
    let printed = followed.unwrap_or_else(|l| panic!("taken for hung after {took:?}; it printed {l:?}"));
    assert!(took > 2 * SILENCE, "the copy took {took:?}: too quick to tell");
    assert_eq!(peer.await.unwrap(), 8 + SIZE, "the size, then every byte");
    assert!(child.wait().await.unwrap().success());
    let progress = printed.iter().filter(|l| l.starts_with(rkectl::agent::snapshot::PROGRESS)).count();
    assert!(progress >= 4, "{printed:?}");
    assert_eq!(printed.last().and_then(|l| l.strip_prefix(rkectl::agent::snapshot::PROGRESS)), None);
    println!("MEASURE a {SIZE}-byte copy at {RATE} B/s took {took:?}; the helper printed {progress} progress lines");

    // Stalled: the peer reads 1 MiB and then nothing; the helper falls silent.
    let (mut child, mut lines) = serve();
    let to = SocketAddr::new(LOOPBACK, port(lines.next_line().await.unwrap()));
    let peer = tokio::spawn({
        let tls = tls.clone();
        async move { slow_peer(to, &tls, RATE, Some(1 << 20)).await }
    });
    let followed = tokio::time::timeout(Duration::from_secs(20), follow_lines(&mut lines, SILENCE)).await;
    let before = followed.expect("the stalled helper kept printing").expect_err("the stalled copy ended");
    assert!(child.try_wait().unwrap().is_none(), "the helper ended: {before:?}");
    let reported: u64 = before
        .iter()
        .filter_map(|l| l.strip_prefix(rkectl::agent::snapshot::PROGRESS)?.trim().parse().ok())
        .max()
        .unwrap_or(0);
    assert!(reported < SIZE as u64, "it reported every byte sent to a peer that read 1 MiB: {before:?}");
    child.kill().await.unwrap();
    peer.abort();
}
