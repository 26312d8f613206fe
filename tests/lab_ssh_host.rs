//! The real SSH host (`host::ssh`) against the lab's nodes (tests/lab).
//!
//! `#[ignore]`d like every lab test: `tests/run` brings the lab up and includes them, and
//! `lab status` lines say where the nodes, key and known_hosts are. Run with `--nocapture`
//! to see the timings.

use rkectl::config::{HostAddr, Node, Role, SshAuth};
use rkectl::host::ssh::{KnownHostsPolicy, SshConnector, SshHost, SshOptions, WaitLimits};
use rkectl::host::{ByteStream, Connector, ContainerSpec, Host, HostError, Silence, run_once, run_watched};
use rkectl::secret::Secret;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const MIB: usize = 1024 * 1024;

struct Lab {
    vars: HashMap<String, String>,
}

impl Lab {
    /// The lab; a lab that is not up fails the test.
    fn get() -> Lab {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab");
        let out = Command::new(&script).arg("status").output().expect("run tests/lab/lab status");
        assert!(
            out.status.success(),
            "this test needs the lab, which is not up (tests/run brings it up): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Lab { vars }
    }

    fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| panic!("lab status has no {key}"))
    }

    fn node_addr(&self, name: &str) -> String {
        self.var(&format!("NODE_{name}")).to_string()
    }

    fn key(&self) -> PathBuf {
        PathBuf::from(self.var("SSH_KEY"))
    }

    fn known_hosts(&self) -> PathBuf {
        PathBuf::from(self.var("KNOWN_HOSTS"))
    }

    fn node(&self, address: &str) -> Node {
        Node {
            index: 0,
            address: HostAddr(address.to_string()),
            port: 22,
            user: "root".into(),
            roles: vec![Role::Etcd],
            hostname_override: None,
            hostname: address.to_string(),
            internal_address: None,
            ssh: SshAuth { key: None, key_path: self.key(), key_path_explicit: true, agent: false, cert: None },
            docker_socket: "/var/run/docker.sock".into(),
        }
    }

    fn options(&self) -> SshOptions {
        SshOptions {
            known_hosts: KnownHostsPolicy::Strict { file: Some(self.known_hosts()) },
            ssh_agent_auth: false,
            ignore_docker_version: false,
            connect_timeout: Duration::from_secs(5),
            bastion: None,
        }
    }

    async fn dial(&self, name: &str) -> Arc<dyn Host> {
        let node = self.node(&self.node_addr(name));
        SshConnector::new(self.options()).connect(&node).await.unwrap_or_else(|e| panic!("dial {name}: {e}"))
    }

    /// Runs a shell command on a node with the plain ssh client (to check our work).
    fn ssh(&self, name: &str, command: &str) -> String {
        let out = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .arg("-i")
            .arg(self.key())
            .arg(format!("root@{}", self.node_addr(name)))
            .arg(command)
            .output()
            .expect("run ssh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A private scratch folder on this machine.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rkectl-lab-ssh-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A folder under /tmp/rkectl-test on a node, unique to this run and test.
fn remote_dir(tag: &str) -> String {
    format!("/tmp/rkectl-test/{tag}-{}", std::process::id())
}

/// Deterministic, incompressible test data.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn dial_one_and_three_and_docker_info() {
    let lab = Lab::get();
    let t = Instant::now();
    let host = lab.dial("node1").await;
    let one = t.elapsed();
    let info = host.docker_info().await.expect("docker info");
    assert!(!info.server_version.is_empty());
    assert_eq!(info.root_dir, "/var/lib/docker");
    assert_eq!(host.addr().as_str(), lab.node_addr("node1"));

    let connector = SshConnector::new(lab.options());
    let nodes: Vec<Node> = ["node1", "node2", "node3"].iter().map(|n| lab.node(&lab.node_addr(n))).collect();
    let t = Instant::now();
    let hosts = futures::future::join_all(nodes.iter().map(|n| connector.connect(n))).await;
    let three = t.elapsed();
    for h in hosts {
        h.expect("dial").docker_info().await.expect("docker info");
    }
    println!(
        "MEASURE dial one node: {:.0} ms; dial three in parallel: {:.0} ms (Docker {})",
        one.as_secs_f64() * 1e3,
        three.as_secs_f64() * 1e3,
        info.server_version
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn run_once_with_etcdctl() {
    let lab = Lab::get();
    let host = lab.dial("node1").await;
    let image = "rkectl-lab/etcd:v3.4.23";
    assert!(host.image_present(image).await.unwrap());
    assert!(!host.image_present("rkectl-lab/nothing:here").await.unwrap());

    let name = format!("rkectl-test-etcdctl-{}", std::process::id());
    let mut spec = ContainerSpec::new(&name, image);
    spec.entrypoint = Some(vec!["/usr/local/bin/etcdctl".into()]);
    spec.cmd = vec!["version".into()];
    spec.env = vec!["ETCDCTL_API=3".into()];
    let secret_path = format!("/tmp/{name}-secret.json");
    spec.secret_files = vec![rkectl::host::SecretFile {
        host_path: secret_path.clone(),
        container_path: "/run/secrets/test.json".into(),
        content: Secret::new("not-printed"),
    }];
    spec.network_host = true;
    spec.labels.insert("rkectl.test".into(), "yes".into());
    let t = Instant::now();
    let out = run_once(host.as_ref(), &spec).await.expect("run etcdctl version");
    println!("MEASURE run_once etcdctl version: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(out.exit_code, 0, "logs: {}", out.logs);
    assert!(out.logs.contains("etcdctl version: 3.4.23"), "logs: {}", out.logs);
    assert!(host.inspect_container(&name).await.unwrap().is_none(), "run_once removes it");
    assert!(host.list_dir("/tmp").await.unwrap().iter().all(|e| !secret_path.ends_with(&e.name)), "and its secret");

    // A failing command: its exit code is an answer, not an error; stderr is in the logs.
    spec.cmd = vec!["no-such-subcommand".into()];
    let out = run_once(host.as_ref(), &spec).await.expect("run failing etcdctl");
    assert_ne!(out.exit_code, 0);
    assert!(!out.logs.is_empty());

    // create / inspect / stop / remove by hand, with the restart policy of a service.
    spec.cmd = vec!["watch".into(), "x".into(), "--endpoints=http://127.0.0.1:1".into()];
    spec.restart = rkectl::host::RestartPolicy::No;
    host.remove_container(&name).await.unwrap();
    rkectl::host::create_container(host.as_ref(), &spec).await.unwrap();
    let err = rkectl::host::create_container(host.as_ref(), &spec).await.unwrap_err();
    assert!(matches!(err, HostError::Docker { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-printed"));
    host.start_container(&name).await.unwrap();
    let info = host.inspect_container(&name).await.unwrap().expect("exists");
    // The secret is a read-only file of the host's, nowhere in the container's configuration.
    assert!(info.binds.contains(&format!("{secret_path}:/run/secrets/test.json:ro")), "{:?}", info.binds);
    assert!(!info.env.iter().any(|e| e.contains("not-printed")), "{:?}", info.env);
    let file = host.list_dir("/tmp").await.unwrap().into_iter().find(|e| secret_path.ends_with(&e.name));
    assert_eq!(file.map(|e| e.size), Some("not-printed".len() as u64));
    assert_eq!(host.read_file(&secret_path).await.unwrap().as_deref(), Some(&b"not-printed"[..]));
    assert_eq!(info.name, name);
    assert_eq!(info.image, image);
    assert_eq!(info.labels.get("rkectl.test").map(String::as_str), Some("yes"));
    host.stop_container(&name).await.unwrap();
    let info = host.inspect_container(&name).await.unwrap().expect("exists");
    assert!(!info.running);
    assert!(info.exit_code.is_some());
    assert!(host.remove_container(&name).await.unwrap());
    assert!(!host.remove_container(&name).await.unwrap());
    rkectl::host::remove_secret_files(host.as_ref(), &spec).await.unwrap();
    assert!(host.list_dir("/tmp").await.unwrap().iter().all(|e| !secret_path.ends_with(&e.name)));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn files_round_trip() {
    let lab = Lab::get();
    let host = lab.dial("node1").await;
    let dir = remote_dir("files");
    let path = format!("{dir}/sub dir/it's a file.txt");

    assert_eq!(host.read_file(&path).await.unwrap(), None);
    assert!(host.list_dir(&format!("{dir}/nothing")).await.unwrap().is_empty());
    host.write_file(&path, b"hello\n", 0o640).await.unwrap();
    assert_eq!(host.read_file(&path).await.unwrap().as_deref(), Some(&b"hello\n"[..]));
    let mode = lab.ssh("node1", &format!("stat -c %a \"{dir}/sub dir/it's a file.txt\""));
    assert_eq!(mode.trim(), "640");

    // Overwrite, and an empty file.
    host.write_file(&path, b"bye", 0o600).await.unwrap();
    host.write_file(&format!("{dir}/sub dir/empty"), b"", 0o600).await.unwrap();
    assert_eq!(host.read_file(&path).await.unwrap().as_deref(), Some(&b"bye"[..]));

    let listing = host.list_dir(&format!("{dir}/sub dir")).await.unwrap();
    let names: Vec<&str> = listing.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["empty", "it's a file.txt"], "no temporary files left");
    assert_eq!(listing[1].size, 3);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((listing[1].modified - now).abs() < 120, "{listing:?}");
    // Folders are not files.
    assert!(host.list_dir(&dir).await.unwrap().is_empty());

    // A folder is neither absent nor readable.
    let err = host.read_file(&dir).await.unwrap_err();
    assert!(matches!(err, HostError::Io { transient: false, .. }), "{err:?}");
    assert!(err.to_string().contains(lab.node_addr("node1").as_str()), "{err}");

    // A parent that cannot be a folder: a clear error naming the path, nothing left behind.
    let bad = "/etc/hostname/sub/x";
    let err = host.write_file(bad, b"x", 0o600).await.unwrap_err();
    assert!(matches!(err, HostError::Io { transient: false, .. }), "{err:?}");
    assert!(err.to_string().contains("Not a directory"), "{err}");
    println!("seen: {err}");
    let reader: ByteStream = Box::new(Cursor::new(vec![7u8; 3 * MIB]));
    let err = host.write_stream(bad, reader, 0o600).await.unwrap_err();
    assert!(err.to_string().contains("Not a directory"), "{err}");

    assert!(host.remove_file(&path).await.unwrap());
    assert!(!host.remove_file(&path).await.unwrap());
    assert_eq!(host.read_file(&path).await.unwrap(), None);
    lab.ssh("node1", &format!("rm -rf '{dir}'"));
}

/// Yields `good` bytes, then fails.
struct Failing {
    good: Cursor<Vec<u8>>,
}

impl AsyncRead for Failing {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.good).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                Poll::Ready(Err(std::io::Error::other("source broke")))
            }
            other => other,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn stream_50_mib_both_ways() {
    let lab = Lab::get();
    let host = lab.dial("node2").await;
    let dir = remote_dir("stream");
    let path = format!("{dir}/big.bin");
    let data = pseudo_random(50 * MIB);

    let t = Instant::now();
    let n = host.write_stream(&path, Box::new(Cursor::new(data.clone())), 0o600).await.expect("write_stream");
    let up = t.elapsed();
    assert_eq!(n, data.len() as u64);

    let t = Instant::now();
    let mut stream = host.open_read(&path).await.expect("open_read");
    let mut back = Vec::with_capacity(data.len());
    stream.read_to_end(&mut back).await.expect("read");
    let down = t.elapsed();
    assert!(back == data, "bytes differ ({} read)", back.len());
    println!(
        "MEASURE 50 MiB write_stream: {:.2} s ({:.0} MiB/s, incl. sync); open_read: {:.2} s ({:.0} MiB/s)",
        up.as_secs_f64(),
        mbps(data.len(), up),
        down.as_secs_f64(),
        mbps(data.len(), down)
    );

    // A source that breaks half-way leaves neither the file nor a temporary file.
    let broken = format!("{dir}/broken.bin");
    let reader: ByteStream = Box::new(Failing { good: Cursor::new(pseudo_random(3 * MIB)) });
    let err = host.write_stream(&broken, reader, 0o600).await.unwrap_err();
    assert!(err.to_string().contains("source broke"), "{err}");
    let names: Vec<String> = host.list_dir(&dir).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["big.bin".to_string()]);

    // Opening a missing file fails up front.
    let err = match host.open_read(&format!("{dir}/missing")).await {
        Err(e) => e,
        Ok(_) => panic!("opened a missing file"),
    };
    assert!(err.to_string().contains("no such file"), "{err}");

    // A reader killed half-way is an error at the end of the stream, never a short file.
    let mut stream = host.open_read(&path).await.unwrap();
    let mut first = vec![0u8; MIB];
    stream.read_exact(&mut first).await.unwrap();
    assert!(first[..] == data[..MIB]);
    lab.ssh(
        "node2",
        "for f in /proc/[0-9]*; do [ \"$(cat $f/comm 2>/dev/null)\" = cat ] && \
           readlink $f/fd/0 2>/dev/null | grep -q big.bin && kill ${f#/proc/}; done",
    );
    let mut rest = Vec::new();
    let err = stream.read_to_end(&mut rest).await.unwrap_err();
    assert!(first.len() + rest.len() < data.len());
    assert!(err.to_string().contains("big.bin"), "{err}");
    println!("killed reader: {err}");
    lab.ssh("node2", &format!("rm -rf '{dir}'"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn inline_key_and_wrong_key() {
    let lab = Lab::get();
    let addr = lab.node_addr("node1");
    let connector = SshConnector::new(lab.options());

    let mut node = lab.node(&addr);
    node.ssh.key = Some(Secret::new(std::fs::read_to_string(lab.key()).unwrap()));
    node.ssh.key_path = PathBuf::from("/nonexistent/key");
    let host = connector.connect(&node).await.expect("dial with the inline key");
    host.docker_info().await.unwrap();
    // Once the session is up, the inline key is on no disk (a kill -9 would leave it).
    let key = std::fs::read_to_string(lab.key()).unwrap();
    for d in std::fs::read_dir(std::env::temp_dir()).unwrap().chain(std::fs::read_dir("/tmp").unwrap()) {
        let p = d.unwrap().path().join("id");
        if p.parent().unwrap().file_name().unwrap().to_string_lossy().starts_with("rkectl-") {
            assert_ne!(
                std::fs::read_to_string(&p).ok().as_deref(),
                Some(key.as_str()),
                "{} is still there",
                p.display()
            );
        }
    }

    let tmp = scratch("wrongkey");
    let wrong = tmp.join("wrong");
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&wrong).status().unwrap();
    assert!(st.success());
    let mut node = lab.node(&addr);
    node.ssh.key_path = wrong.clone();
    let err = connector.connect(&node).await.err().expect("wrong key must fail");
    assert!(matches!(err, HostError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("Permission denied"), "{msg}");
    println!("seen: {msg}");

    let key_text = std::fs::read_to_string(&wrong).unwrap();
    node.ssh.key = Some(Secret::new(key_text.clone()));
    let err = connector.connect(&node).await.err().expect("wrong inline key must fail");
    assert!(matches!(err, HostError::Auth { .. }), "{err:?}");
    let body = key_text.lines().nth(1).unwrap();
    assert!(!err.to_string().contains(body), "an error quoted the key");

    let mut node = lab.node(&addr);
    node.ssh.key_path = tmp.join("absent");
    let err = connector.connect(&node).await.err().expect("missing key must fail");
    assert!(matches!(err, HostError::Auth { .. }), "{err:?}");
    println!("seen: {err}");
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn host_keys_unknown_changed_and_accept_new() {
    let lab = Lab::get();
    let addr = lab.node_addr("node1");
    let node = lab.node(&addr);
    let tmp = scratch("hostkeys");

    let empty = tmp.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let strict = |file: &Path| SshOptions {
        known_hosts: KnownHostsPolicy::Strict { file: Some(file.to_path_buf()) },
        ..lab.options()
    };
    let err = SshConnector::new(strict(&empty)).connect(&node).await.err().expect("unknown key must fail");
    assert!(matches!(err, HostError::HostKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("--accept-new-host-keys") && msg.contains(&addr), "{msg}");
    println!("seen: {msg}");

    // Node2's keys recorded under node1's address: a changed key.
    let node2 = lab.node_addr("node2");
    let changed: String = std::fs::read_to_string(lab.known_hosts())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{node2} ")))
        .map(|l| format!("{addr}{}\n", &l[node2.len()..]))
        .collect();
    let changed_file = tmp.join("changed_known_hosts");
    std::fs::write(&changed_file, changed).unwrap();
    for options in [
        strict(&changed_file),
        SshOptions { known_hosts: KnownHostsPolicy::AcceptNew { file: Some(changed_file.clone()) }, ..lab.options() },
    ] {
        let err = SshConnector::new(options).connect(&node).await.err().expect("changed key must fail");
        assert!(matches!(err, HostError::HostKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("CHANGED") && !msg.contains("accept-new"), "{msg}");
        println!("seen: {msg}");
    }

    let fresh = tmp.join("fresh_known_hosts");
    let accept = SshOptions { known_hosts: KnownHostsPolicy::AcceptNew { file: Some(fresh.clone()) }, ..lab.options() };
    let host = SshConnector::new(accept).connect(&node).await.expect("accept-new");
    host.docker_info().await.unwrap();
    // Debian's ssh_config hashes host names, so only the strict dial below proves the entry.
    assert!(!std::fs::read_to_string(&fresh).unwrap().trim().is_empty());
    drop(host);
    // Now recorded: strict checking against that file passes.
    SshConnector::new(strict(&fresh)).connect(&node).await.expect("strict after accept");
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn nothing_listening_is_unreachable_in_time() {
    let lab = Lab::get();
    let node = lab.node("10.77.0.99");
    let options = lab.options();
    let limit = options.connect_timeout * 2 + Duration::from_secs(5);
    let t = Instant::now();
    let err = SshConnector::new(options).connect(&node).await.err().expect("must fail");
    let took = t.elapsed();
    assert!(matches!(err, HostError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("10.77.0.99"), "{err}");
    assert!(took < limit, "took {took:?}");
    println!("MEASURE unreachable 10.77.0.99: {:.1} s: {err}", took.as_secs_f64());

    // sshd not listening on a live node.
    let mut node = lab.node(&lab.node_addr("node1"));
    node.port = 2222;
    let err = SshConnector::new(lab.options()).connect(&node).await.err().expect("must fail");
    assert!(matches!(err, HostError::Unreachable { transient: false, .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    println!("seen: {err}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn missing_docker_socket_and_missing_image() {
    let lab = Lab::get();
    let mut node = lab.node(&lab.node_addr("node1"));
    node.docker_socket = "/run/no-docker-here.sock".into();
    let err = SshConnector::new(lab.options()).connect(&node).await.err().expect("must fail");
    assert!(matches!(err, HostError::DockerDown { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Cannot connect to the Docker daemon"), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    println!("seen: {msg}");

    let host = lab.dial("node1").await;
    let image = "10.77.0.1:5999/missing:1";
    let t = Instant::now();
    let err = host.pull_image(image, None).await.unwrap_err();
    assert!(matches!(&err, HostError::ImageUnavailable { image: i, .. } if i == image), "{err:?}");
    println!("MEASURE failed pull: {:.1} s: {err}", t.elapsed().as_secs_f64());
    let err = host.create_container(&ContainerSpec::new("rkectl-test-noimage", image)).await.unwrap_err();
    assert!(matches!(err, HostError::ImageUnavailable { .. }), "{err:?}");
    println!("seen: {err}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn a_dead_master_is_a_transient_unreachable() {
    let lab = Lab::get();
    let node = lab.node(&lab.node_addr("node3"));
    let host = SshHost::dial(&node, &lab.options()).await.expect("dial");
    assert!(host.is_alive().await);
    host.read_file("/etc/hostname").await.unwrap().expect("exists");

    let st = Command::new("ssh").arg("-S").arg(host.control_socket()).args(["-O", "exit", "none"]).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!host.is_alive().await);

    let err = host.read_file("/etc/hostname").await.unwrap_err();
    assert!(matches!(err, HostError::Unreachable { transient: true, .. }), "{err:?}");
    println!("seen: {err}");
    let err = host.docker_info().await.unwrap_err();
    assert!(matches!(err, HostError::Unreachable { transient: true, .. }), "{err:?}");
    println!("seen: {err}");
    let err = host.write_file("/tmp/rkectl-test/x", b"x", 0o600).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// With `SSH_AUTH_SOCK` set (run under `ssh-agent` with the lab key added), agent auth
/// works without any key file; without it, asking for the agent is a clear Auth error.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn agent_auth() {
    let lab = Lab::get();
    let mut node = lab.node(&lab.node_addr("node1"));
    node.ssh.key_path = PathBuf::from("/nonexistent/id_rsa");
    node.ssh.key_path_explicit = false;
    let options = SshOptions { ssh_agent_auth: true, ..lab.options() };
    let result = SshConnector::new(options).connect(&node).await;
    if std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
        let host = result.expect("agent auth (is the lab key in the agent?)");
        host.docker_info().await.unwrap();
    } else {
        let err = result.err().expect("no agent: must fail");
        assert!(matches!(err, HostError::Auth { .. }), "{err:?}");
        assert!(err.to_string().contains("SSH_AUTH_SOCK"), "{err}");
        println!("seen: {err}");
    }
}

/// etcd as a member of a two-member cluster whose peer never comes: it logs its election
/// attempts (about five lines a second) for as long as it runs. In its own network.
fn chatty_etcd(name: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, "rkectl-lab/etcd:v3.4.23");
    spec.entrypoint = Some(vec!["/usr/local/bin/etcd".into()]);
    let peer = "http://127.0.0.1:12380";
    spec.cmd = [
        "--name=a",
        "--data-dir=/tmp/a",
        "--initial-cluster=a=http://127.0.0.1:12380,b=http://127.0.0.1:12381",
        &format!("--initial-advertise-peer-urls={peer}"),
        &format!("--listen-peer-urls={peer}"),
        "--listen-client-urls=http://127.0.0.1:12379",
        "--advertise-client-urls=http://127.0.0.1:12379",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    spec
}

/// A helper's output is followed as it comes (each line handed on once, however long it
/// runs), and a helper that prints nothing is stopped and removed once it has been silent
/// for the limit, with an error naming host, container and silence.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn run_watched_follows_output_and_gives_up_on_silence() {
    let lab = Lab::get();
    let host = lab.dial("node4").await;
    let name = format!("rkectl-test-chatty-{}", std::process::id());
    let spec = chatty_etcd(&name);
    let stopper = {
        let (host, name) = (host.clone(), name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            host.stop_container(&name).await
        })
    };
    let mut seen = String::new();
    let mut calls = 0usize;
    let t = Instant::now();
    let out = run_watched(host.as_ref(), &spec, Silence(Duration::from_secs(20)), &mut |new: &str| {
        calls += 1;
        seen.push_str(new);
    })
    .await
    .expect("run the chatty helper");
    let took = t.elapsed();
    stopper.await.unwrap().expect("stop it");
    assert!(out.logs.contains("is starting a new election"), "{}", out.logs);
    assert_eq!(seen, out.logs, "the watcher saw each line once, in order");
    assert!(seen.lines().count() > 20, "{seen}");
    assert!(host.inspect_container(&name).await.unwrap().is_none(), "removed");
    println!(
        "MEASURE followed a chatty helper for {:.1} s: {} bytes in {} lines, handed on in {calls} batches",
        took.as_secs_f64(),
        out.logs.len(),
        out.logs.lines().count()
    );

    // Silent from the start: `etcdctl watch` on an endpoint that never answers.
    let mut silent = ContainerSpec::new(&name, "rkectl-lab/etcd:v3.4.23");
    silent.entrypoint = Some(vec!["/usr/local/bin/etcdctl".into()]);
    silent.cmd = vec!["watch".into(), "x".into(), "--endpoints=http://127.0.0.1:1".into()];
    silent.env = vec!["ETCDCTL_API=3".into()];
    let t = Instant::now();
    // Bounded here too, so that a helper waited for without end fails the test instead of hanging it.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        run_watched(host.as_ref(), &silent, Silence(Duration::from_secs(3)), &mut |_| {}),
    )
    .await
    .expect("the silent helper was waited for without end")
    .unwrap_err();
    println!("MEASURE a silent helper given up after {:.1} s: {err}", t.elapsed().as_secs_f64());
    assert!(matches!(&err, HostError::HelperSilent { container, .. } if container == &name), "{err:?}");
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(msg.contains(&lab.node_addr("node4")) && msg.contains("printed nothing for 3 s"), "{msg}");
    assert!(host.inspect_container(&name).await.unwrap().is_none(), "the silent helper was left behind");
}

/// A node script that never finishes (here `cat` of a FIFO nobody writes) is given up after
/// the script limit with an error that says so, instead of hanging.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn a_node_script_that_hangs_is_given_up() {
    let lab = Lab::get();
    let node = lab.node(&lab.node_addr("node4"));
    let waits = WaitLimits { script: Duration::from_secs(2), ..WaitLimits::default() };
    let host = SshHost::dial(&node, &lab.options()).await.expect("dial").with_wait_limits(waits);
    let dir = remote_dir("fifo");
    let fifo = format!("{dir}/fifo");
    lab.ssh("node4", &format!("mkdir -p {dir} && mkfifo {fifo}"));
    let t = Instant::now();
    // Bounded here too, so that a regression fails the test instead of hanging it.
    let err = tokio::time::timeout(Duration::from_secs(60), host.read_file(&fifo))
        .await
        .expect("the script was waited for without end")
        .unwrap_err();
    println!("MEASURE a hung node script given up after {:.1} s: {err}", t.elapsed().as_secs_f64());
    assert!(matches!(err, HostError::Io { transient: false, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&fifo) && msg.contains("did not finish within 2 s"), "{msg}");
    // The session still works afterwards. Opening the FIFO for writing lets the `cat` left
    // on the node finish.
    host.write_file(&format!("{dir}/after"), b"x", 0o600).await.expect("the session still works");
    lab.ssh("node4", &format!("timeout 10 sh -c ': > {fifo}'; rm -rf {dir}"));
}

/// A pull from a registry that stops answering (it answers `/v2/` and then never again)
/// is abandoned once it made no progress for the limit.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: tests/run brings it up"]
async fn a_stalled_pull_is_abandoned() {
    const REGISTRY: &str = r#"use IO::Socket::INET;
my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1)
  or die "listen: $!";
my @held;
while (my $c = $srv->accept) {
  my $req = "";
  while (my $line = <$c>) { $req .= $line; last if $line eq "\r\n"; }
  if ($req =~ m{^GET /v2/ HTTP}) {
    print $c "HTTP/1.1 200 OK\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: 2\r\n\r\n{}";
    close $c;
  } else {
    push @held, $c;
  }
}"#;
    let lab = Lab::get();
    let node = lab.node(&lab.node_addr("node4"));
    let waits = WaitLimits { pull_silence: Duration::from_secs(3), ..WaitLimits::default() };
    let host = SshHost::dial(&node, &lab.options()).await.expect("dial").with_wait_limits(waits);
    let dir = remote_dir("registry");
    host.write_file(&format!("{dir}/registry.pl"), REGISTRY.as_bytes(), 0o600).await.unwrap();
    // A registry on the node's loopback, which Docker talks plain HTTP to.
    let pid = lab.ssh("node4", &format!("cd {dir} && (perl registry.pl 5999 </dev/null >log 2>&1 & echo $!)"));
    let pid: u32 = pid.trim().parse().unwrap_or_else(|_| panic!("no registry pid: {pid:?}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let image = "127.0.0.1:5999/stalls:1";
    let t = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), host.pull_image(image, None)).await;
    lab.ssh("node4", &format!("kill {pid}; rm -rf {dir}"));
    let err = result.expect("the pull was waited for without end").unwrap_err();
    println!("MEASURE a stalled pull abandoned after {:.1} s: {err}", t.elapsed().as_secs_f64());
    assert!(matches!(&err, HostError::PullStalled { image: i, .. } if i == image), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("made no progress for 3 s"), "{err}");
}
