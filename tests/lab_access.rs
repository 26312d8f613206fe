//! What RKE users have in cluster.yml to reach their nodes and images, against the lab: a
//! bastion host, SSH certificates, and a private registry with a password.
//!
//! Every change a test makes outside its own folder (a firewall rule on this machine, a
//! trusted CA in a node's sshd, a registry) is undone by a guard, on every exit path.

mod common;

use common::lab::{Lab, text};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Runs a command on this machine; its stdout, or a panic with what it said.
fn run(program: &str, args: &[&str]) -> String {
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Output as one line of words (the diagnostic's box and line breaks gone).
fn said(out: &std::process::Output) -> String {
    text(out).split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
}

/// Whether a plain `ssh` with the lab's key (and these options) logs in to `addr`.
fn ssh_works(lab: &Lab, addr: &str, extra: &[&str]) -> bool {
    Command::new("ssh")
        .args(["-F", "none", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes"])
        .args(["-o", &format!("UserKnownHostsFile={}", lab.env["KNOWN_HOSTS"]), "-o", "StrictHostKeyChecking=yes"])
        .args(["-i", &lab.env["SSH_KEY"]])
        .args(extra)
        .args(["-l", "root", addr, "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The lab's three etcd nodes, with `extra` appended to cluster.yml.
fn cluster_with(lab: &Lab, extra: &str) -> String {
    lab.cluster_yaml(&[("node1", "etcd"), ("node2", "etcd"), ("node3", "etcd")]) + extra
}

// ---------------------------------------------------------------------------------------
// Bastion
// ---------------------------------------------------------------------------------------

/// Rejects this machine's own SSH connections to some nodes; the rule goes with the guard.
struct NoDirectSsh {
    addrs: String,
}

impl NoDirectSsh {
    fn to(addrs: &[String]) -> NoDirectSsh {
        let addrs = addrs.join(",");
        run("iptables", &["-I", "OUTPUT", "-d", &addrs, "-p", "tcp", "--dport", "22", "-j", "REJECT"]);
        NoDirectSsh { addrs }
    }
}

impl Drop for NoDirectSsh {
    fn drop(&mut self) {
        // One rule per address was inserted; delete them the same way.
        let _ = Command::new("iptables")
            .args(["-D", "OUTPUT", "-d", &self.addrs, "-p", "tcp", "--dport", "22", "-j", "REJECT"])
            .status();
    }
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn up_through_a_bastion_reaches_nodes_this_machine_cannot() {
    let lab = Lab::get();
    let bastion = lab.addr("node4");
    assert!(ssh_works(&lab, &bastion, &[]), "the lab has no node4 to be the bastion");
    let nodes: Vec<String> = ["node1", "node2", "node3"].iter().map(|n| lab.addr(n)).collect();
    let _blocked = NoDirectSsh::to(&nodes);
    for a in &nodes {
        assert!(!ssh_works(&lab, a, &[]), "{a} is still reachable directly: the test would prove nothing");
    }
    let bastion_yml =
        format!("bastion_host:\n  address: {bastion}\n  user: root\n  ssh_key_path: {}\n", lab.env["SSH_KEY"]);
    lab.write_cluster_yml(&cluster_with(&lab, &bastion_yml));

    let out = lab.ok(&["up", "--yes", "--new-pki"]);
    assert!(out.contains("Finished building up the etcd plane"), "{out}");
    let health = lab.etcdctl(None, &["endpoint", "health", "-w", "json"]).unwrap_or_else(|e| e);
    assert_eq!(health.matches("\"health\":true").count(), 3, "{health}");
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("No changes"), "{plan}");

    // The bastion's host key is checked like a node's: unknown, it is refused, and said so.
    let known = std::fs::read_to_string(&lab.env["KNOWN_HOSTS"]).unwrap();
    let without: String = known.lines().filter(|l| !l.starts_with(&bastion)).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, known, "the lab's known_hosts has no key for {bastion}");
    let kh = lab.dir.path().join("known_hosts_without_bastion");
    std::fs::write(&kh, &without).unwrap();
    let kh_arg = kh.display().to_string();
    let refused = lab.rkectl(&["plan", "up", "--known-hosts", &kh_arg]);
    let words = said(&refused);
    assert!(!refused.status.success(), "{words}");
    let expected =
        format!("host key of {} is not trusted: at the bastion host {bastion}: no trusted host key", nodes[0]);
    assert!(words.contains(&expected), "{words}");
    // Trusted on first use when asked, and then recorded.
    let accepted = lab.rkectl(&["plan", "up", "--known-hosts", &kh_arg, "--accept-new-host-keys"]);
    assert!(accepted.status.success() && text(&accepted).contains("No changes"), "{}", text(&accepted));
    // (Hashed, as Debian's ssh_config asks: rkectl's ssh reads it like a hand-typed one.)
    let found = Command::new("ssh-keygen").args(["-F", &bastion, "-f", &kh_arg]).output().unwrap();
    assert!(found.status.success(), "{bastion}'s key was not recorded in {kh_arg}");

    // A node the bastion cannot reach is named as such.
    lab.write_cluster_yml(&cluster_with(&lab, &bastion_yml).replacen(
        "    user: root\n",
        "    user: root\n    port: 2\n",
        1,
    ));
    let out = lab.rkectl(&["plan", "up"]);
    assert!(!out.status.success());
    let words = said(&out);
    let expected = format!("cannot reach {}: the bastion host {bastion} cannot reach it on port 2", nodes[0]);
    assert!(words.contains(&expected), "{words}");
}

// ---------------------------------------------------------------------------------------
// SSH certificates
// ---------------------------------------------------------------------------------------

/// Makes a node's sshd trust only certificates of `ca` for root (its authorized_keys set
/// aside); the guard puts everything back.
struct CertOnlyNode<'a> {
    lab: &'a Lab,
    node: &'static str,
}

const CA_CONF: &str = "/etc/ssh/sshd_config.d/rkectl-test-ca.conf";

impl<'a> CertOnlyNode<'a> {
    fn new(lab: &'a Lab, node: &'static str, ca_pub: &str) -> CertOnlyNode<'a> {
        let guard = CertOnlyNode { lab, node };
        lab.put(node, "/etc/ssh/rkectl-test-ca.pub", ca_pub.as_bytes());
        lab.put(node, CA_CONF, b"TrustedUserCAKeys /etc/ssh/rkectl-test-ca.pub\n");
        lab.sh(
            node,
            "mv /root/.ssh/authorized_keys /root/.ssh/authorized_keys.rkectl-test && kill -HUP $(cat /run/sshd.pid)",
        );
        guard
    }
}

impl Drop for CertOnlyNode<'_> {
    fn drop(&mut self) {
        let _ = self.lab.lab(&[
            "exec",
            self.node,
            "sh",
            "-c",
            &format!(
                "mv /root/.ssh/authorized_keys.rkectl-test /root/.ssh/authorized_keys; rm -f {CA_CONF} /etc/ssh/rkectl-test-ca.pub; kill -HUP $(cat /run/sshd.pid)"
            ),
        ]);
    }
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn nodes_that_trust_only_a_certificate_authority_are_reached_with_certificates() {
    let lab = Lab::get();
    let dir = lab.dir.path();
    // A CA of the test's own, and a certificate of the lab's key signed by it. The
    // certificate lives away from the key: ssh loads `KEY-cert.pub` by itself, and that
    // would prove nothing about rkectl.
    let ca = dir.join("ca");
    run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "rkectl-test-ca", "-f", &ca.display().to_string()]);
    let key_pub = dir.join("user.pub");
    std::fs::copy(format!("{}.pub", lab.env["SSH_KEY"]), &key_pub).unwrap();
    run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            &ca.display().to_string(),
            "-I",
            "rkectl-test",
            "-n",
            "root",
            "-V",
            "-5m:+1h",
            &key_pub.display().to_string(),
        ],
    );
    let cert: PathBuf = dir.join("user-cert.pub");
    let cert_text = std::fs::read_to_string(&cert).unwrap();
    let ca_pub = std::fs::read_to_string(dir.join("ca.pub")).unwrap();

    let _node1 = CertOnlyNode::new(&lab, "node1", &ca_pub);
    let _node2 = CertOnlyNode::new(&lab, "node2", &ca_pub);
    for n in ["node1", "node2"] {
        let a = lab.addr(n);
        assert!(!ssh_works(&lab, &a, &[]), "{n} still takes the plain key: the test would prove nothing");
        assert!(
            ssh_works(&lab, &a, &["-o", &format!("CertificateFile={}", cert.display())]),
            "{n} refuses the certificate"
        );
    }

    // node1 names the certificate's file, node2 carries it inline; node3 takes the plain key.
    let base = cluster_with(&lab, "");
    let with_certs = base
        .replacen(
            "    hostname_override: node1\n",
            &format!("    hostname_override: node1\n    ssh_cert_path: {}\n", cert.display()),
            1,
        )
        .replacen(
            "    hostname_override: node2\n",
            &format!("    hostname_override: node2\n    ssh_cert: {}\n", cert_text.trim()),
            1,
        );
    lab.write_cluster_yml(&with_certs);
    let out = lab.ok(&["up", "--yes", "--new-pki"]);
    assert!(out.contains("Finished building up the etcd plane"), "{out}");
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("No changes"), "{plan}");

    // Without its certificate node1 cannot be reached: the certificate is what let rkectl in.
    lab.write_cluster_yml(&with_certs.replacen(&format!("    ssh_cert_path: {}\n", cert.display()), "", 1));
    let out = lab.rkectl(&["plan", "up"]);
    assert!(!out.status.success());
    let words = said(&out);
    assert!(words.contains(&format!("SSH authentication to {} failed", lab.addr("node1"))), "{words}");
}

/// A misspelt `ssh_key_path` is ignored with a warning, and the login then fails (ssh tries
/// only its default keys): the refusal says the ignored key may be why, naming it and the
/// key it probably meant, and nothing on any node changes.
#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn a_login_that_fails_after_a_misspelt_ssh_key_path_names_the_ignored_key() {
    let lab = Lab::get();
    let key = lab.env["SSH_KEY"].clone();
    let right = format!("ssh_key_path: {key}");
    lab.write_cluster_yml(&cluster_with(&lab, "").replacen(&right, &format!("ssh_key_pth: {key}"), 1));
    let out = lab.rkectl_env(&["up", "--yes"], &[("SSH_AUTH_SOCK", "")]);
    let words = said(&out);
    assert_eq!(out.status.code(), Some(2), "{words}");
    let failed = format!("SSH authentication to {} failed", lab.addr("node1"));
    assert_eq!(words.matches(&failed).count(), 1, "said once: {words}");
    assert!(words.contains("keys rkectl ignored (see the warnings above)"), "{words}");
    assert!(words.contains("nodes[0].ssh_key_pth (line 7, did you mean ssh_key_path?)"), "{words}");
    assert!(!words.contains("Building up etcd plane"), "nothing was applied: {words}");
}

// ---------------------------------------------------------------------------------------
// Private registry
// ---------------------------------------------------------------------------------------

/// Where the test registry listens (this machine's address on the lab network).
const REGISTRY: &str = "10.77.0.1:5443";
const USER: &str = "rkectl";

/// A registry (Debian's `docker-registry`) with TLS and htpasswd, stopped with the guard;
/// the nodes trust its certificate through `/etc/docker/certs.d`, removed with it too.
struct Registry<'a> {
    lab: &'a Lab,
    process: Child,
    nodes: Vec<&'static str>,
}

impl<'a> Registry<'a> {
    fn start(lab: &'a Lab, password: &str, nodes: &[&'static str]) -> Registry<'a> {
        let dir = lab.dir.path().join("registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let d = |f: &str| dir.join(f).display().to_string();
        let host = REGISTRY.split(':').next().unwrap();
        run(
            "openssl",
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &format!("/CN={host}")]
                .into_iter()
                .chain([
                    "-addext",
                    &format!("subjectAltName=IP:{host}"),
                    "-keyout",
                    &d("key.pem"),
                    "-out",
                    &d("cert.pem"),
                ])
                .collect::<Vec<_>>(),
        );
        let htpasswd = run("htpasswd", &["-Bbn", USER, password]);
        std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: rkectl-lab\n    path: {}\n",
            d("data"),
            d("cert.pem"),
            d("key.pem"),
            d("htpasswd")
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let process = Command::new("docker-registry")
            .args(["serve", &d("config.yml")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian's package docker-registry; tests/lab/lab up installs it)");
        let registry = Registry { lab, process, nodes: nodes.to_vec() };
        let cert = std::fs::read(dir.join("cert.pem")).unwrap();
        for n in nodes {
            lab.sh(n, &format!("mkdir -p /etc/docker/certs.d/{REGISTRY}"));
            lab.put(n, &format!("/etc/docker/certs.d/{REGISTRY}/ca.crt"), &cert);
        }
        // Up when it answers (401: it wants the password).
        let ready = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::net::TcpStream::connect(REGISTRY).is_ok()
        });
        assert!(
            ready,
            "the registry did not start: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        registry
    }
}

impl Drop for Registry<'_> {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        for n in &self.nodes {
            let _ = self.lab.lab(&[
                "exec",
                n,
                "sh",
                "-c",
                &format!("rm -rf /etc/docker/certs.d/{REGISTRY}; docker logout {REGISTRY} >/dev/null 2>&1; true"),
            ]);
        }
    }
}

/// The JSON Docker reads credentials from, and whether its standard base64 (bollard's
/// encoding) has characters Docker's URL-safe decoder refuses.
fn breaks_standard_base64(user: &str, password: &str) -> bool {
    use base64::Engine;
    let json = serde_json::json!({"username": user, "password": password, "serveraddress": REGISTRY}).to_string();
    base64::engine::general_purpose::STANDARD.encode(json).contains(['+', '/'])
}

#[test]
#[ignore = "needs the lab: tests/run brings it up"]
fn the_etcd_image_is_pulled_from_a_private_registry_with_its_password_and_a_wrong_one_changes_nothing() {
    let lab = Lab::get();
    // A password whose header, encoded as bollard encodes it, Docker would silently drop.
    let password = "lab>>>pw?~~~";
    assert!(breaks_standard_base64(USER, password));
    let _registry = Registry::start(&lab, password, &["node1", "node2", "node3", "node4"]);
    let image = format!("{REGISTRY}/lab/etcd:v3.4.23");
    // node4 pushes the lab's etcd image there: the nodes that will pull it never had it
    // under that name.
    lab.sh(
        "node4",
        &format!(
            "echo '{password}' | docker login -u {USER} --password-stdin {REGISTRY} >/dev/null && docker tag rkectl-lab/etcd:v3.4.23 {image} && docker push {image} >/dev/null && docker rmi {image} >/dev/null && docker logout {REGISTRY} >/dev/null"
        ),
    );
    for n in ["node1", "node2", "node3"] {
        // A run that failed half-way may have left it (lab reset keeps images).
        lab.sh(n, &format!("docker rmi -f {image} >/dev/null 2>&1; true"));
        // Without credentials the registry refuses: the password is what the pull needs.
        let anonymous = lab.lab(&["exec", n, "docker", "pull", &image]);
        assert!(!anonymous.status.success(), "{n} pulled {image} anonymously");
    }
    let with_registry = |pw: &str| {
        cluster_with(
            &lab,
            &format!("private_registries:\n  - url: {REGISTRY}\n    user: {USER}\n    password: '{pw}'\n"),
        )
        .replace("rkectl-lab/etcd:v3.4.23", &image)
    };

    // A wrong password: refused with the registry's answer, the password not shown, no
    // node touched.
    let nodes = ["node1", "node2", "node3"];
    let before = lab.world_fingerprint(&nodes);
    lab.write_cluster_yml(&with_registry("not-the-password"));
    let out = lab.rkectl(&["up", "--yes", "--new-pki"]);
    let words = said(&out);
    assert!(!out.status.success(), "{words}");
    assert!(words.contains(&format!("image {image} is not on")) && words.contains("cannot be pulled"), "{words}");
    assert!(words.contains(&format!("(pulled as private_registries[0], {REGISTRY})")), "{words}");
    assert!(words.contains("Pre-flight failed; nothing was changed on any host"), "{words}");
    assert!(!words.contains("not-the-password") && !words.contains(password), "{words}");
    assert_eq!(lab.world_fingerprint(&nodes), before, "a refused pull changed the nodes");

    // The right one: the image is pulled on every node and etcd runs from it.
    lab.write_cluster_yml(&with_registry(password));
    let out = lab.ok(&["up", "--yes", "--new-pki"]);
    assert!(out.contains("Finished building up the etcd plane"), "{out}");
    assert!(!out.contains(password), "the password was shown");
    for n in nodes {
        let running = lab.sh(n, "docker inspect -f '{{.Config.Image}}' etcd");
        assert_eq!(running.trim(), image, "{n}");
    }
    let plan = lab.ok(&["plan", "up"]);
    assert!(plan.contains("No changes"), "{plan}");
    for n in nodes {
        let _ =
            lab.lab(&["exec", n, "sh", "-c", &format!("docker rm -f etcd >/dev/null; docker rmi {image} >/dev/null")]);
    }
}
