//! `rkectl::s3` against real S3 servers: every test runs once against each of two
//! independent implementations, each started by the test on a free port of 127.0.0.1 with
//! an empty bucket:
//! - `s3s_fs::…`: s3s-fs over its own temporary folder, which checks request signatures
//!   (binary from `$RKECTL_S3S_FS`, /var/lib/rkectl-lab/s3s/bin/s3s-fs or `PATH`);
//! - `moto::…`: moto in server mode, an emulator that keeps objects in memory and accepts
//!   any signature, so the tests of wrong keys do not apply to it (they are reported as
//!   ignored) (`$RKECTL_MOTO_SERVER`, /var/lib/rkectl-lab/moto-venv/bin/moto_server or `PATH`).
//!
//! A server that is not installed makes its tests "ignored", with the reason; with
//! `RKECTL_LAB=1` (tests/run, after `lab up` installed both) they fail instead.
//! This test has its own harness (libtest-mimic) for that: the built-in one cannot ignore a
//! test at run time.
//!
//! Tests that move tens of MB hold `HEAVY`, so that they do not compete for the two cores
//! (or for the peak-memory measurement).

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use rkectl::config::S3Settings;
use rkectl::model::{Checksum, SnapshotName};
use rkectl::s3::{CredentialsFault, Manifest, NoProgress, S3Client, S3Error, TransferProgress};
use rkectl::secret::Secret;
use std::future::Future;
use std::io;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const ACCESS: &str = "rkectl-test-access-key";
const SECRET: &str = "rkectl-test-secret-key-0123456789";
const MIB: u64 = 1024 * 1024;

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// The servers

/// Which S3 implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    S3sFs,
    Moto,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::S3sFs, Kind::Moto];

    /// The prefix of its tests' names.
    fn label(self) -> &'static str {
        match self {
            Kind::S3sFs => "s3s_fs",
            Kind::Moto => "moto",
        }
    }

    /// Where its binary is looked for, in order (environment variable, lab path, `PATH`).
    fn places(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::S3sFs => ("RKECTL_S3S_FS", "/var/lib/rkectl-lab/s3s/bin/s3s-fs", "s3s-fs"),
            Kind::Moto => ("RKECTL_MOTO_SERVER", "/var/lib/rkectl-lab/moto-venv/bin/moto_server", "moto_server"),
        }
    }

    fn binary(self) -> Option<PathBuf> {
        let (var, lab, name) = self.places();
        if let Some(p) = std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_file()) {
            return Some(p);
        }
        let lab = PathBuf::from(lab);
        if lab.is_file() {
            return Some(lab);
        }
        std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
    }

    fn missing(self) -> String {
        let (var, lab, name) = self.places();
        format!("no {name} binary (${var}, {lab}, PATH); tests/lab/lab up installs it")
    }

    /// Whether it refuses a request signed with the wrong keys (moto accepts anything).
    fn checks_signatures(self) -> bool {
        self == Kind::S3sFs
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process of one kind with one (empty) bucket.
struct Server {
    child: Option<Child>,
    port: u16,
    /// s3s-fs's root: one folder per bucket.
    root: Option<tempfile::TempDir>,
    bucket: String,
}

impl Server {
    async fn start(kind: Kind, bucket: &str) -> Server {
        let bin = kind.binary().unwrap_or_else(|| panic!("{}", kind.missing()));
        let port = free_port();
        let (child, root) = match kind {
            Kind::S3sFs => {
                let root = tempfile::Builder::new().prefix("rkectl-s3s-").tempdir_in("/var/tmp").unwrap();
                // s3s-fs serves every folder under its root as a bucket.
                std::fs::create_dir(root.path().join(bucket)).unwrap();
                let child = Command::new(bin)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", ACCESS, "--secret-key", SECRET])
                    .arg(root.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                (child, Some(root))
            }
            Kind::Moto => {
                let child = Command::new(bin)
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                (child, None)
            }
        };
        let server = Server { child: Some(child), port, root, bucket: bucket.to_string() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "{kind:?} did not start listening on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if kind == Kind::Moto {
            raw_client(&server).create_bucket().bucket(bucket).send().await.unwrap();
        }
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn settings(&self, folder: Option<&str>) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint(),
            bucket: self.bucket.clone(),
            region: None,
            folder: folder.map(str::to_string),
            custom_ca: None,
            access_key: Secret::new(ACCESS),
            secret_key: Secret::new(SECRET),
            session_token: None,
        }
    }

    async fn client(&self, folder: Option<&str>) -> S3Client {
        S3Client::new(&self.settings(folder)).await.unwrap()
    }

    /// Every object of the bucket (s3s-fs: every file under its folder, so what S3 would
    /// not list shows too; moto: every key), sorted.
    async fn bucket_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        match &self.root {
            Some(root) => {
                let base = root.path().join(&self.bucket);
                walk(&base, &base, &mut out);
            }
            None => {
                let mut pages = raw_client(self).list_objects_v2().bucket(&self.bucket).into_paginator().send();
                while let Some(page) = pages.next().await {
                    out.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_string)));
                }
            }
        }
        out.sort();
        out
    }

    /// Multipart uploads neither completed nor aborted (s3s-fs keeps them as
    /// `.upload_id-<id>[.part-N]` files in its root and does not list them; moto lists them).
    async fn pending_uploads(&self) -> Vec<String> {
        match &self.root {
            Some(root) => std::fs::read_dir(root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".upload_id-"))
                .collect(),
            None => {
                let out = raw_client(self).list_multipart_uploads().bucket(&self.bucket).send().await.unwrap();
                out.uploads()
                    .iter()
                    .map(|u| format!("{} {}", u.key().unwrap_or(""), u.upload_id().unwrap_or("")))
                    .collect()
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain SDK client for looking behind rkectl's back (ETags, foreign keys), with the
/// SDK's default checksum behaviour.
fn raw_client(server: &Server) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(ACCESS, SECRET, None, None, "test"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

// ---------------------------------------------------------------------------------------
// Data

/// `len` deterministic pseudo-random bytes (BLAKE3 XOF of `seed`), failing after `fail_at`.
struct Gen {
    xof: blake3::OutputReader,
    left: u64,
    produced: u64,
    fail_at: Option<u64>,
    stall_at: Option<u64>,
}

impl Gen {
    fn new(seed: &str, len: u64) -> Gen {
        Gen {
            xof: blake3::Hasher::new().update(seed.as_bytes()).finalize_xof(),
            left: len,
            produced: 0,
            fail_at: None,
            stall_at: None,
        }
    }

    fn failing_at(mut self, at: u64) -> Gen {
        self.fail_at = Some(at);
        self
    }

    /// Never returns more data after `at` bytes (nor an error): a stuck source.
    fn stalling_at(mut self, at: u64) -> Gen {
        self.stall_at = Some(at);
        self
    }

    fn bytes(seed: &str, len: u64) -> Vec<u8> {
        let mut v = vec![0; len as usize];
        blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut v);
        v
    }
}

impl AsyncRead for Gen {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(at) = self.fail_at
            && self.produced >= at
        {
            return Poll::Ready(Err(io::Error::other("simulated disk failure")));
        }
        if self.stall_at.is_some_and(|at| self.produced >= at) {
            return Poll::Pending;
        }
        let mut n = (buf.remaining() as u64).min(self.left).min(256 * 1024);
        if let Some(at) = self.fail_at.or(self.stall_at) {
            n = n.min(at - self.produced);
        }
        let dst = buf.initialize_unfilled_to(n as usize);
        self.xof.fill(dst);
        buf.advance(n as usize);
        self.left -= n;
        self.produced += n;
        Poll::Ready(Ok(()))
    }
}

/// Records what a transfer reported.
#[derive(Default)]
struct Recorder {
    started: AtomicU32,
    finished: AtomicU32,
    bytes: AtomicU64,
    total: std::sync::Mutex<Option<u64>>,
}

impl TransferProgress for Recorder {
    fn started(&self, total: Option<u64>) {
        self.started.fetch_add(1, Ordering::SeqCst);
        *self.total.lock().unwrap() = total;
    }
    fn advanced(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn finished(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn name(s: &str) -> SnapshotName {
    SnapshotName::new(s).unwrap()
}

fn assert_no_secret(e: &S3Error) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains(SECRET) && !text.contains(ACCESS), "an error text leaks a key: {text}");
}

// ---------------------------------------------------------------------------------------
// Round trips

async fn round_trip(kind: Kind, len: u64, folder: Option<&str>, expect_parts: Option<usize>) {
    let server = Server::start(kind, "backups").await;
    let client = server.client(folder).await;
    client.check().await.unwrap();
    let snap = name("rke_etcd_snapshot_2024-01-02T03:04:05Z");
    let seed = format!("round-trip-{len}");

    let up = Recorder::default();
    let uploaded = client.upload(&snap, Gen::new(&seed, len), &up).await.unwrap();
    let expected = Checksum::of(&Gen::bytes(&seed, len));
    assert_eq!(uploaded.size, len);
    assert_eq!(uploaded.checksum, expected);
    assert_eq!(up.started.load(Ordering::SeqCst), 1);
    assert_eq!(up.finished.load(Ordering::SeqCst), 1);
    assert_eq!(up.bytes.load(Ordering::SeqCst), len);

    let passphrase = rkectl::secret::Secret::new("a passphrase for the test");
    let sealed =
        rkectl::rke::seal::seal(&passphrase, &snap, &uploaded.checksum, &rkectl::secret::Secret::new("{}")).unwrap();
    let manifest = Manifest::new(snap.clone(), &uploaded, "lab", Some(sealed));
    assert_eq!(client.get_manifest(&snap).await.unwrap(), None, "no manifest before it is written");
    client.put_manifest(&snap, &manifest).await.unwrap();
    assert_eq!(client.get_manifest(&snap).await.unwrap(), Some(manifest.clone()));

    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, snap);
    assert_eq!(listed[0].size, len);
    assert!(listed[0].has_manifest);
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - listed[0].modified;
    assert!((0..300).contains(&age), "modified time {} is off", listed[0].modified);

    let down = Recorder::default();
    let mut out = Vec::new();
    let got = client.download(&snap, &mut out, &down).await.unwrap();
    assert_eq!(got.size, len);
    assert_eq!(got.checksum, manifest.checksum);
    assert_eq!(Checksum::of(&out), expected);
    assert_eq!(*down.total.lock().unwrap(), Some(len));
    assert_eq!(down.bytes.load(Ordering::SeqCst), len);

    // Where it landed, and how: a multipart ETag ends in `-<parts>`.
    let key = client.key(&snap);
    let prefix = folder.map(|f| format!("{}/", f.trim_matches('/'))).unwrap_or_default();
    assert_eq!(key, format!("{prefix}{snap}"));
    assert_eq!(server.bucket_files().await, vec![key.clone(), format!("{key}.rkectl.json")]);
    let head = raw_client(&server).head_object().bucket("backups").key(&key).send().await.unwrap();
    let etag = head.e_tag().unwrap_or_default().trim_matches('"').to_string();
    match expect_parts {
        Some(n) => assert!(etag.ends_with(&format!("-{n}")), "ETag {etag} is not that of {n} parts"),
        None => assert!(!etag.contains('-'), "ETag {etag} is a multipart one; expected a single PutObject"),
    }
    assert!(server.pending_uploads().await.is_empty(), "{:?}", server.pending_uploads().await);
}

async fn round_trip_50_mib_multipart(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    // 50 MiB = 3 parts of 16 MiB + 2 MiB.
    round_trip(kind, 50 * MIB, Some("/etcd/lab/"), Some(4)).await;
}

async fn round_trip_1_kib_single_put(kind: Kind) {
    round_trip(kind, 1024, None, None).await;
}

async fn round_trip_exactly_one_part_and_empty(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let server = Server::start(kind, "backups").await;
    let client = server.client(Some("f")).await;
    for (n, len) in [("one-part", 16 * MIB), ("empty", 0)] {
        let up = client.upload(&name(n), Gen::new(n, len), &NoProgress).await.unwrap();
        assert_eq!(up.checksum, Checksum::of(&Gen::bytes(n, len)));
        let mut out = Vec::new();
        let down = client.download(&name(n), &mut out, &NoProgress).await.unwrap();
        assert_eq!((down.size, &down.checksum), (len, &up.checksum));
    }
    assert!(server.pending_uploads().await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Faults, each named

async fn wrong_secret_key_is_a_credentials_error_and_writes_nothing(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let mut settings = server.settings(Some("etcd"));
    settings.secret_key = Secret::new("not-the-secret-key-at-all");
    let client = S3Client::new(&settings).await.unwrap();

    let e = client.check().await.unwrap_err();
    assert!(matches!(e, S3Error::Credentials { fault: CredentialsFault::WrongSecretKey, .. }), "{e:?}");
    assert!(!e.is_transient());
    assert_no_secret(&e);
    assert!(!e.to_string().contains("not-the-secret-key-at-all"), "{e}");
    println!("wrong secret key: {e}");

    // Both upload paths fail the same way, and leave nothing.
    for (n, len) in [("small", 1024), ("large", 20 * MIB)] {
        let e = client.upload(&name(n), Gen::new(n, len), &NoProgress).await.unwrap_err();
        assert!(matches!(e, S3Error::Credentials { .. }), "{n}: {e:?}");
    }
    assert!(server.bucket_files().await.is_empty(), "{:?}", server.bucket_files().await);
    assert!(server.pending_uploads().await.is_empty());
}

async fn wrong_access_key_is_a_credentials_error(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let mut settings = server.settings(None);
    settings.access_key = Secret::new("AKIAWRONGACCESSKEY");
    let e = S3Client::new(&settings).await.unwrap().check().await.unwrap_err();
    assert!(matches!(e, S3Error::Credentials { fault: CredentialsFault::UnknownAccessKey, .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("AKIAWRONGACCESSKEY"), "{e}");
    println!("wrong access key: {e}");
}

async fn missing_bucket_is_named(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let mut settings = server.settings(None);
    settings.bucket = "no-such-bucket".into();
    let client = S3Client::new(&settings).await.unwrap();
    let e = client.check().await.unwrap_err();
    assert!(matches!(&e, S3Error::NoBucket { bucket, .. } if bucket == "no-such-bucket"), "{e:?}");
    println!("missing bucket: {e}");
    let e = client.upload(&name("x"), Gen::new("x", 10), &NoProgress).await.unwrap_err();
    assert!(matches!(e, S3Error::NoBucket { .. }), "{e:?}");
    let e = client.list().await.unwrap_err();
    assert!(matches!(e, S3Error::NoBucket { .. }), "{e:?}");
}

async fn stopped_server_is_unreachable(kind: Kind) {
    let mut server = Server::start(kind, "backups").await;
    let client = server.client(None).await;
    client.check().await.unwrap();
    server.stop();
    let started = Instant::now();
    let e = client.check().await.unwrap_err();
    assert!(matches!(e, S3Error::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
    println!("stopped server ({:.1} s with retries): {e}", started.elapsed().as_secs_f64());

    // A name that does not resolve is "unreachable" too, not a credentials problem.
    let mut settings = server.settings(None);
    settings.endpoint = "http://rkectl-no-such-host.invalid:9000".into();
    let e = S3Client::new(&settings).await.unwrap().check().await.unwrap_err();
    assert!(matches!(e, S3Error::Unreachable { .. }), "{e:?}");
    println!("unknown host: {e}");
}

async fn failing_reader_leaves_no_object_and_no_upload(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let server = Server::start(kind, "backups").await;
    let client = server.client(Some("etcd")).await;
    let snap = name("half");

    // An earlier, complete snapshot of the same name must survive the failed attempt.
    let old = client.upload(&snap, Gen::new("old", 1000), &NoProgress).await.unwrap();
    client.put_manifest(&snap, &Manifest::new(snap.clone(), &old, "lab", None)).await.unwrap();

    let progress = Recorder::default();
    let e = client.upload(&snap, Gen::new("new", 100 * MIB).failing_at(40 * MIB), &progress).await.unwrap_err();
    match &e {
        S3Error::Read { offset, .. } => assert_eq!(*offset, 40 * MIB),
        other => panic!("expected a read error, got {other:?}"),
    }
    println!("failing reader: {e}");
    assert_eq!(progress.finished.load(Ordering::SeqCst), 1);
    assert!(server.pending_uploads().await.is_empty(), "parts left behind: {:?}", server.pending_uploads().await);
    assert_eq!(server.bucket_files().await, vec!["etcd/half".to_string(), "etcd/half.rkectl.json".to_string()]);
    let manifest = client.get_manifest(&snap).await.unwrap().unwrap();
    assert_eq!(manifest.checksum, old.checksum);
    let mut out = Vec::new();
    assert_eq!(client.download(&snap, &mut out, &NoProgress).await.unwrap().checksum, old.checksum);

    // What S3 itself would say about pending uploads (s3s-fs may not implement it).
    match raw_client(&server).list_multipart_uploads().bucket("backups").send().await {
        Ok(out) => assert!(out.uploads().is_empty(), "{:?}", out.uploads()),
        Err(e) => println!(
            "ListMultipartUploads on {kind:?}: {}",
            aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("no code")
        ),
    }
}

async fn cancelled_upload_is_aborted(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let server = Server::start(kind, "backups").await;
    let client = server.client(None).await;
    // The source stalls after 40 MiB (2 parts sent, a third being read); the caller gives up.
    let snap = name("stuck");
    let upload = client.upload(&snap, Gen::new("s", 100 * MIB).stalling_at(40 * MIB), &NoProgress);
    assert!(tokio::time::timeout(Duration::from_secs(3), upload).await.is_err());
    // Dropping the future started the abort on the runtime.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.pending_uploads().await.is_empty() {
        assert!(Instant::now() < deadline, "parts left behind: {:?}", server.pending_uploads().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.bucket_files().await.is_empty(), "{:?}", server.bucket_files().await);
}

async fn delete_removes_object_and_manifest(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let client = server.client(Some("etcd")).await;
    let snap = name("doomed");
    let up = client.upload(&snap, Gen::new("d", 5000), &NoProgress).await.unwrap();
    client.put_manifest(&snap, &Manifest::new(snap.clone(), &up, "lab", None)).await.unwrap();
    assert!(client.delete(&snap).await.unwrap());
    assert!(client.list().await.unwrap().is_empty());
    assert_eq!(client.get_manifest(&snap).await.unwrap(), None);
    let e = client.download(&snap, Vec::new(), &NoProgress).await.unwrap_err();
    assert!(matches!(&e, S3Error::NotFound { key, .. } if key == "etcd/doomed"), "{e:?}");
    println!("absent snapshot: {e}");
    assert!(!client.delete(&snap).await.unwrap());
    assert!(server.bucket_files().await.is_empty(), "{:?}", server.bucket_files().await);
}

async fn list_paginates_and_ignores_what_is_not_a_snapshot(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let client = server.client(Some("etcd")).await.with_list_page_size(2);
    for i in 0..5 {
        let snap = name(&format!("snap-{i}"));
        let up = client.upload(&snap, Gen::new("l", 10 + i), &NoProgress).await.unwrap();
        if i % 2 == 0 {
            client.put_manifest(&snap, &Manifest::new(snap.clone(), &up, "lab", None)).await.unwrap();
        }
    }
    let raw = raw_client(&server);
    for key in ["etcd/sub/deeper", "etcd/.hidden", "other/snap-9", "top-level", "etcd/orphan.rkectl.json"] {
        raw.put_object().bucket("backups").key(key).body(b"x".to_vec().into()).send().await.unwrap();
    }
    let listed = client.list().await.unwrap();
    let names: Vec<_> = listed.iter().map(|s| (s.name.as_str().to_string(), s.size, s.has_manifest)).collect();
    assert_eq!(
        names,
        vec![
            ("snap-0".into(), 10, true),
            ("snap-1".into(), 11, false),
            ("snap-2".into(), 12, true),
            ("snap-3".into(), 13, false),
            ("snap-4".into(), 14, true),
        ]
    );
    let e = client.upload(&name("x.rkectl.json"), Gen::new("x", 1), &NoProgress).await.unwrap_err();
    assert!(matches!(e, S3Error::ReservedName { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// TLS with a private CA (a TLS proxy in front of the server)

struct Tls {
    port: u16,
    ca_pem: String,
}

async fn tls_proxy(upstream: u16) -> Tls {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "rkectl test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Tls { port, ca_pem: ca_cert.pem() }
}

async fn private_ca_endpoint_needs_custom_ca(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let tls = tls_proxy(server.port).await;
    let mut settings = server.settings(Some("tls"));
    settings.endpoint = format!("https://127.0.0.1:{}", tls.port);

    let e = S3Client::new(&settings).await.unwrap().check().await.unwrap_err();
    assert!(matches!(e, S3Error::Tls { .. }), "{e:?}");
    assert!(!e.is_transient());
    println!("untrusted certificate: {e}");

    // A bare host means https://.
    settings.endpoint = format!("127.0.0.1:{}", tls.port);
    settings.custom_ca = Some(tls.ca_pem.clone());
    let client = S3Client::new(&settings).await.unwrap();
    client.check().await.unwrap();
    let up = client.upload(&name("over-tls"), Gen::new("t", 3 * MIB), &NoProgress).await.unwrap();
    let mut out = Vec::new();
    assert_eq!(client.download(&name("over-tls"), &mut out, &NoProgress).await.unwrap().checksum, up.checksum);

    // AWS_CA_BUNDLE: a file of extra roots, trusted besides the system's (in a child: the
    // environment is process-wide). Another CA's bundle does not make the endpoint trusted.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let other = dir.path().join("other.pem");
    std::fs::write(&bundle, &tls.ca_pem).unwrap();
    std::fs::write(&other, tls_proxy(server.port).await.ca_pem).unwrap();
    let endpoint = format!("https://127.0.0.1:{}", tls.port);
    let keys = [("AWS_ACCESS_KEY_ID", ACCESS), ("AWS_SECRET_ACCESS_KEY", SECRET)];
    for (expect, file) in [("ok", &bundle), ("tls", &other)] {
        let env = [keys[0], keys[1], ("AWS_CA_BUNDLE", file.to_str().unwrap())];
        for line in run_child(&endpoint, expect, &env) {
            println!("AWS_CA_BUNDLE {line}");
        }
    }

    settings.custom_ca = Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into());
    let e = S3Client::new(&settings).await.unwrap_err();
    assert!(matches!(e, S3Error::Settings { .. }), "{e:?}");
    println!("bad custom_ca: {e}");
}

// ---------------------------------------------------------------------------------------
// A connection that breaks in the middle of a download

/// A TCP proxy that cuts the first connection whose responses pass `cut_after` bytes.
async fn cutting_proxy(upstream: u16, cut_after: u64) -> (u16, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let counter = cuts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (cuts, done) = (counter.clone(), done.clone());
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                let c2s = tokio::io::copy(&mut cr, &mut uw);
                let s2c = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    loop {
                        let n = ur.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<_, io::Error>(());
                        }
                        cw.write_all(&buf[..n]).await?;
                        sent += n as u64;
                        if sent > cut_after && !done.swap(true, Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return Ok(());
                        }
                    }
                };
                tokio::select! {
                    _ = c2s => {}
                    _ = s2c => {}
                }
            });
        }
    });
    (port, cuts)
}

async fn download_resumes_after_a_broken_connection(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let server = Server::start(kind, "backups").await;
    let client = server.client(None).await;
    let snap = name("resumable");
    let up = client.upload(&snap, Gen::new("r", 40 * MIB), &NoProgress).await.unwrap();

    let (port, cuts) = cutting_proxy(server.port, 15 * MIB).await;
    let mut settings = server.settings(None);
    settings.endpoint = format!("http://127.0.0.1:{port}");
    let via_proxy = S3Client::new(&settings).await.unwrap();
    let progress = Recorder::default();
    let mut out = Vec::new();
    let down = via_proxy.download(&snap, &mut out, &progress).await.unwrap();
    assert_eq!(cuts.load(Ordering::SeqCst), 1, "the proxy did not cut the download");
    assert_eq!((down.size, &down.checksum), (40 * MIB, &up.checksum));
    assert_eq!(Checksum::of(&out), up.checksum);
    assert_eq!(progress.bytes.load(Ordering::SeqCst), 40 * MIB);
}

// ---------------------------------------------------------------------------------------
// Credentials from the environment (in a child process: the environment is process-wide)

/// Runs this test binary as a child that builds a client from the environment only (see
/// [`env_chain_child`]) with `env` on top of a clean AWS environment, and checks that it
/// got what `expect` says. Returns the child's report lines.
fn run_child(endpoint: &str, expect: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("RKECTL_TEST_CHILD_ENDPOINT", endpoint)
        .env("RKECTL_TEST_CHILD_EXPECT", expect)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove(rkectl::s3::CA_ENV)
        .env("AWS_CONFIG_FILE", "/nonexistent/rkectl-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/rkectl-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("CHILD-OK"),
        "{expect}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().filter(|l| l.starts_with("CHILD")).map(|l| format!("{expect}: {l}")).collect()
}

async fn credentials_from_the_aws_environment(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("ok", &[("AWS_ACCESS_KEY_ID", ACCESS), ("AWS_SECRET_ACCESS_KEY", SECRET)]),
        ("wrong-secret", &[("AWS_ACCESS_KEY_ID", ACCESS), ("AWS_SECRET_ACCESS_KEY", "nope-nope")]),
        ("none", &[]),
    ];
    for (expect, env) in cases {
        if *expect == "wrong-secret" && !kind.checks_signatures() {
            println!("{expect}: not checked, {kind:?} accepts any signature");
            continue;
        }
        for line in run_child(&server.endpoint(), expect, env) {
            println!("{line}");
        }
    }
}

/// The region comes from the settings, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the
/// AWS profile, else us-east-1 (no server needed: the client is only built).
async fn region_from_the_aws_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[default]\nregion = eu-north-1\n[profile lab]\nregion = ap-south-1\n").unwrap();
    let config = config.to_str().unwrap();
    let endpoint = "http://127.0.0.1:1";
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("region=us-east-1", &[]),
        ("region=eu-central-1", &[("AWS_REGION", "eu-central-1"), ("AWS_DEFAULT_REGION", "sa-east-1")]),
        ("region=sa-east-1", &[("AWS_DEFAULT_REGION", "sa-east-1")]),
        ("region=eu-north-1", &[("AWS_CONFIG_FILE", config)]),
        ("region=ap-south-1", &[("AWS_CONFIG_FILE", config), ("AWS_PROFILE", "lab")]),
        ("region=ca-central-1", &[("AWS_REGION", "ca-central-1"), ("AWS_CONFIG_FILE", config)]),
        // The settings' region wins (the child then names it).
        ("region=me-south-1", &[("AWS_REGION", "ca-central-1"), ("RKECTL_TEST_CHILD_REGION", "me-south-1")]),
    ];
    for (expect, env) in cases {
        for line in run_child(endpoint, expect, env) {
            println!("{line}");
        }
    }
    // A regional AWS endpoint names its region before the environment does.
    for line in run_child("https://s3.eu-west-3.amazonaws.com", "region=eu-west-3", &[("AWS_REGION", "ca-central-1")]) {
        println!("{line}");
    }
}

/// The child's side of [`run_child`].
async fn env_chain_child(endpoint: String, expect: String) {
    let settings = S3Settings {
        endpoint,
        bucket: "backups".into(),
        region: std::env::var("RKECTL_TEST_CHILD_REGION").ok(),
        folder: None,
        custom_ca: None,
        access_key: Secret::default(),
        secret_key: Secret::default(),
        session_token: None,
    };
    let client = S3Client::new(&settings).await.unwrap();
    if let Some(region) = expect.strip_prefix("region=") {
        assert_eq!(client.region(), region);
        println!("CHILD region {}", client.region());
        println!("CHILD-OK");
        return;
    }
    let result = client.check().await;
    match (expect.as_str(), &result) {
        ("ok", Ok(())) => {}
        ("wrong-secret", Err(S3Error::Credentials { fault: CredentialsFault::WrongSecretKey, .. })) => {}
        ("none", Err(S3Error::Credentials { fault: CredentialsFault::NoneFound, .. })) => {}
        ("tls", Err(S3Error::Tls { .. })) => {}
        _ => panic!("expected {expect}, got {result:?}"),
    }
    if let Err(e) = &result {
        println!("CHILD error: {e}");
    }
    println!("CHILD-OK");
}

// ---------------------------------------------------------------------------------------
// Throughput and memory

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
/// rke-tools' archive of a database that passes etcd's check (its SHA-256 trailer).
fn valid_archive(name: &str, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    // etcd's database is whole 512-byte pages; its trailer follows them.
    let mut db = data.to_vec();
    db.resize(data.len().div_ceil(512) * 512, 0);
    let trailer = sha2::Sha256::digest(&db);
    db.extend_from_slice(&trailer);
    let mut w = rkectl::rke::archive::ArchiveWriter::start(Vec::new(), name).unwrap();
    w.write_db(&db).unwrap();
    w.finish(None).unwrap()
}

/// The agent's download (`s3-download`), when the object and its manifest were replaced
/// since the plan pinned the checksum: the bytes arrive, match the (new) manifest, pass
/// etcd's check, and are still never renamed to the snapshot's name, where they would
/// count as the host's own copy; nor is a part file left. The pinned bytes are kept.
async fn a_download_of_other_bytes_than_the_pinned_ones_is_never_put_in_place(kind: Kind) {
    use rkectl::agent::snapshot::{DownloadRequest, download};
    use rkectl::model::SnapshotFormat;
    let server = Server::start(kind, "backups").await;
    let client = server.client(None).await;
    let settings = server.settings(None);
    let planned = valid_archive("snap", b"the database the plan saw");
    let replaced = valid_archive("snap", b"a database put there since");
    let object = name("snap.zip");
    let dir = tempfile::tempdir().unwrap();
    let (file, part) = (dir.path().join("snap.zip"), dir.path().join("snap.zip.part"));
    let pinned = Checksum::of(&planned);
    for (bytes, keep) in [(&replaced, false), (&planned, true)] {
        let uploaded = client.upload(&object, std::io::Cursor::new(bytes.clone()), &NoProgress).await.unwrap();
        client.put_manifest(&object, &Manifest::new(object.clone(), &uploaded, "lab", None)).await.unwrap();
        let req = DownloadRequest {
            s3: &settings,
            name: "snap",
            format: SnapshotFormat::Zip,
            into: dir.path(),
            etag: None,
            checksum: Some(&pinned),
        };
        let got = download(req).await;
        assert!(!part.exists(), "a part file was left");
        if keep {
            let r = got.unwrap_or_else(|e| panic!("the pinned bytes: {e}"));
            assert!(r.etcd_ok && r.checksum == pinned, "{r:?}");
            assert_eq!(std::fs::read(&file).unwrap(), planned);
        } else {
            let e = got.expect_err("other bytes than the pinned ones were accepted");
            assert!(e.to_string().contains("not the one the plan pinned"), "{e}");
            assert!(!file.exists(), "other bytes than the pinned ones were put in place");
        }
    }
}

fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs [`measure_upload`] in a fresh process of this binary: the peak memory is then the
/// upload's, not what the tests that ran before it left in this process's allocator.
async fn upload_200_mib_throughput_and_peak_memory(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let out = Command::new(std::env::current_exe().unwrap())
        .env("RKECTL_TEST_CHILD_BENCH", kind.label())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn measure_upload(kind: Kind) {
    let server = Server::start(kind, "backups").await;
    let client = server.client(Some("bench")).await;
    // RKECTL_S3_BENCH_MIB=1024 shows that the peak does not grow with the size.
    let mib: u64 = std::env::var("RKECTL_S3_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let len = mib * MIB;
    let work = tempfile::Builder::new().prefix("rkectl-bench-").tempdir_in("/var/tmp").unwrap();
    let src = work.path().join("snapshot.db");
    {
        let mut f = tokio::fs::File::create(&src).await.unwrap();
        tokio::io::copy(&mut Gen::new("bench", len), &mut f).await.unwrap();
        f.sync_all().await.unwrap();
    }

    let started = Instant::now();
    let st = Command::new("cp").arg(&src).arg(work.path().join("copy.db")).status().unwrap();
    assert!(st.success());
    let cp = started.elapsed();
    let st = Command::new("sync").status().unwrap();
    assert!(st.success());
    let cp_sync = started.elapsed();
    std::fs::remove_file(work.path().join("copy.db")).unwrap();

    // Reset the peak so that the figure is this upload's (Linux: clear_refs 5 resets VmHWM).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = vm_hwm_kib();
    let server_pid = server.child.as_ref().unwrap().id().to_string();
    let cpu = (cpu_seconds("self"), cpu_seconds(&server_pid));
    let started = Instant::now();
    let file = tokio::fs::File::open(&src).await.unwrap();
    let up = client.upload(&name("bench"), file, &NoProgress).await.unwrap();
    let upload = started.elapsed();
    let after = vm_hwm_kib();
    let cpu = (cpu_seconds("self") - cpu.0, cpu_seconds(&server_pid) - cpu.1);
    assert_eq!(up.size, len);

    let started = Instant::now();
    let dst = tokio::fs::File::create(work.path().join("down.db")).await.unwrap();
    let down = client.download(&name("bench"), dst, &NoProgress).await.unwrap();
    let download = started.elapsed();
    assert_eq!(down.checksum, up.checksum);

    let mbps = |d: Duration| len as f64 / MIB as f64 / d.as_secs_f64();
    println!(
        "{mib} MiB: cp {:.2} s ({:.0} MiB/s), cp+sync {:.2} s ({:.0} MiB/s)",
        cp.as_secs_f64(),
        mbps(cp),
        cp_sync.as_secs_f64(),
        mbps(cp_sync)
    );
    println!(
        "{mib} MiB: upload {:.2} s ({:.0} MiB/s), download {:.2} s ({:.0} MiB/s)",
        upload.as_secs_f64(),
        mbps(upload),
        download.as_secs_f64(),
        mbps(download)
    );
    println!("upload CPU: rkectl (test process) {:.2} s, {kind:?} {:.2} s", cpu.0, cpu.1);
    println!("peak RSS (VmHWM) before upload {} MiB, after {} MiB (reset: {reset})", before / 1024, after / 1024);
    // 4 parts of 16 MiB in flight is the design bound; allow for the runtime and the SDK.
    assert!(after < 160 * 1024, "peak RSS {after} KiB is not far below the {mib} MiB file");
}

// ---------------------------------------------------------------------------------------
// Wire checks: what rkectl sends to an S3-compatible server

/// A TCP proxy that keeps the head (request line and headers) of every request the client
/// sends, skipping bodies by their Content-Length.
async fn recording_proxy(upstream: u16) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let heads = record.clone();
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                let c2s = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut head: Vec<u8> = Vec::new();
                    let mut body_left = 0u64;
                    loop {
                        let n = cr.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<_, io::Error>(());
                        }
                        uw.write_all(&buf[..n]).await?;
                        let mut data = &buf[..n];
                        while !data.is_empty() {
                            if body_left > 0 {
                                let skip = (body_left as usize).min(data.len());
                                body_left -= skip as u64;
                                data = &data[skip..];
                                continue;
                            }
                            head.push(data[0]);
                            data = &data[1..];
                            if head.ends_with(b"\r\n\r\n") {
                                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                                assert!(!text.contains("transfer-encoding: chunked"), "unframed body: {text}");
                                body_left = text
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse().ok())
                                    .unwrap_or(0);
                                heads.lock().unwrap().push(text);
                                head.clear();
                            }
                        }
                    }
                };
                let s2c = tokio::io::copy(&mut ur, &mut cw);
                tokio::select! {
                    _ = c2s => {}
                    _ = s2c => {}
                }
            });
        }
    });
    (port, heads)
}

/// Headers that carry or announce the SDK's default CRC32 checksums.
fn checksum_headers(heads: &[String]) -> Vec<String> {
    heads
        .iter()
        .flat_map(|h| h.lines())
        .filter(|l| {
            l.starts_with("x-amz-checksum-")
                || l.starts_with("x-amz-sdk-checksum-algorithm")
                || l.starts_with("x-amz-trailer")
                || l.starts_with("x-amz-checksum-algorithm")
                || (l.starts_with("content-encoding:") && l.contains("aws-chunked"))
        })
        .map(str::to_string)
        .collect()
}

/// On a custom endpoint the SDK adds checksums only where an operation requires them: no
/// CRC32 header, trailer or aws-chunked body on single or multipart uploads (several
/// S3-compatible stores reject them), while a client with the SDK's defaults sends them.
async fn custom_endpoints_get_no_checksum_headers(kind: Kind) {
    let _heavy = HEAVY.lock().await;
    let server = Server::start(kind, "backups").await;
    let (port, heads) = recording_proxy(server.port).await;
    let mut settings = server.settings(Some("wire"));
    settings.endpoint = format!("http://127.0.0.1:{port}");
    let client = S3Client::new(&settings).await.unwrap();
    for (n, len) in [("small", 1024), ("multipart", 17 * MIB)] {
        let up = client.upload(&name(n), Gen::new(n, len), &NoProgress).await.unwrap();
        client.put_manifest(&name(n), &Manifest::new(name(n), &up, "lab", None)).await.unwrap();
        let mut out = Vec::new();
        assert_eq!(client.download(&name(n), &mut out, &NoProgress).await.unwrap().checksum, up.checksum);
    }
    let seen = heads.lock().unwrap().clone();
    let puts = seen.iter().filter(|h| h.starts_with("put ")).count();
    assert!(puts >= 4, "expected the PUTs of two objects, two parts and manifests, saw {puts}: {seen:?}");
    assert_eq!(checksum_headers(&seen), Vec::<String>::new(), "rkectl sent checksum headers");
    println!("{} requests, {puts} PUTs, no checksum header", seen.len());

    // The control: the same proxy sees the SDK's defaults when a client keeps them.
    heads.lock().unwrap().clear();
    let mut raw = raw_client(&server).config().to_builder();
    raw.set_endpoint_url(Some(format!("http://127.0.0.1:{port}")));
    let raw = aws_sdk_s3::Client::from_conf(raw.build());
    raw.put_object().bucket("backups").key("wire/raw").body(b"x".to_vec().into()).send().await.unwrap();
    let sent = checksum_headers(&heads.lock().unwrap());
    assert!(!sent.is_empty(), "the SDK's default sent no checksum: the check above proves nothing");
    println!("SDK defaults send: {sent:?}");
}

// ---------------------------------------------------------------------------------------
// The harness

type TestFn = fn(Kind) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every test run against each server: name, function, whether it needs a server that
/// checks signatures.
macro_rules! server_tests {
    ($($name:ident $(, $needs:ident)?;)*) => {
        vec![$((stringify!($name), (|k| Box::pin($name(k))) as TestFn, server_tests!(@needs $($needs)?)),)*]
    };
    (@needs signatures) => { true };
    (@needs) => { false };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn main() {
    // A child started by `run_child`: build a client from the environment, report, exit.
    if let (Ok(endpoint), Ok(expect)) =
        (std::env::var("RKECTL_TEST_CHILD_ENDPOINT"), std::env::var("RKECTL_TEST_CHILD_EXPECT"))
    {
        runtime().block_on(env_chain_child(endpoint, expect));
        return;
    }
    if let Ok(label) = std::env::var("RKECTL_TEST_CHILD_BENCH") {
        let kind = Kind::ALL.into_iter().find(|k| k.label() == label).expect("a server kind");
        runtime().block_on(measure_upload(kind));
        return;
    }
    let args = Arguments::from_args();
    let lab = std::env::var("RKECTL_LAB").as_deref() == Ok("1");
    let tests: Vec<(&str, TestFn, bool)> = server_tests![
        round_trip_50_mib_multipart;
        round_trip_1_kib_single_put;
        round_trip_exactly_one_part_and_empty;
        wrong_secret_key_is_a_credentials_error_and_writes_nothing, signatures;
        wrong_access_key_is_a_credentials_error, signatures;
        missing_bucket_is_named;
        stopped_server_is_unreachable;
        failing_reader_leaves_no_object_and_no_upload;
        cancelled_upload_is_aborted;
        delete_removes_object_and_manifest;
        list_paginates_and_ignores_what_is_not_a_snapshot;
        private_ca_endpoint_needs_custom_ca;
        download_resumes_after_a_broken_connection;
        credentials_from_the_aws_environment;
        custom_endpoints_get_no_checksum_headers;
        a_download_of_other_bytes_than_the_pinned_ones_is_never_put_in_place;
        upload_200_mib_throughput_and_peak_memory;
    ];
    let mut trials = Vec::new();
    for kind in Kind::ALL {
        let present = kind.binary().is_some();
        for &(name, test, needs_signatures) in &tests {
            trials.push(Trial::ignorable_test(format!("{}::{name}", kind.label()), move || {
                if !present {
                    return if lab {
                        Err(Failed::from(kind.missing()))
                    } else {
                        Ok(Completion::ignored_with(kind.missing()))
                    };
                }
                if needs_signatures && !kind.checks_signatures() {
                    return Ok(Completion::ignored_with(format!("{kind:?} accepts any signature")));
                }
                runtime().block_on(test(kind));
                Ok(Completion::Completed)
            }));
        }
    }
    trials.push(Trial::test("region_from_the_aws_environment", || {
        runtime().block_on(region_from_the_aws_environment());
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}
