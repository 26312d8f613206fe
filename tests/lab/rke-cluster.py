#!/usr/bin/env python3
"""Build, on lab nodes, an etcd plane exactly as RKE (v1.6, k8s v1.30) builds one.

Run through `tests/lab/lab rke-up` (which holds the lab lock, loads the rke-tools stand-in
image, cleans the nodes and attaches the internal network first); not on its own.

    lab rke-up --dir DIR [--etcd node1,node2,node3] [--other node4:controlplane,worker]...
               [--internal]

Neither RKE nor rkectl runs: everything RKE would leave behind is made here, from the
formats in RKE's and rke-tools' source (see docs/rke-interop.md, cited as "spec §N"):

- DIR/cluster.yml (RKE syntax) and DIR/cluster.rkestate (RKE's JSON, desired == current,
  as after a successful `rke up`), DIR/kube_config_cluster.yml when there is a controlplane;
- a PKI like RKE's (openssl; RSA 2048 PKCS#1 keys, SHA-256, RKE's subjects, usages, SANs,
  serials and validity), deployed to /etc/kubernetes/ssl as cert-deployer writes it;
- on every etcd node the `etcd` and `etcd-rolling-snapshots` containers with RKE's exact
  config (args in random order, as Go's map iteration gives them);
- keys /rke-lab/before=1, /rke-lab/data/{a,b,c};
- a one-time snapshot (`rke etcd snapshot-save` default name) and a recurring one (what the
  rolling container writes at a tick), on every etcd host, each from that host's own member
  and zipped as rke-tools zips them; before each host's copy /rke-lab/taken-on is set to the
  host's name and /rke-lab/snapshot to the snapshot name, so every copy differs;
- in S3 only rke-snapshots/<one-time>.zip, the first etcd host's copy (the one RKE keeps).

Last, KEY=value lines on stdout (all else goes to stderr).
"""

import argparse
import base64
import datetime
import http.client
import io
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

sys.dont_write_bytecode = True   # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3req  # noqa: E402  (the lab's stdlib S3 client, next to this file)

# Set by `lab rke-up`.
NODE_PREFIX = os.environ.get("LAB_NODE_PREFIX", "rkectl-lab-node")
SSH_KEY = os.environ.get("LAB_SSH_KEY", "/var/lib/rkectl-lab/id_ed25519")
ETCD_IMAGE = os.environ.get("LAB_ETCD_IMAGE", "rkectl-lab/etcd:v3.4.23")
RKE_TOOLS_IMAGE = os.environ.get("LAB_RKE_TOOLS_IMAGE", "rkectl-lab/rke-tools:v0.1.103")
S3_ENDPOINT = os.environ.get("S3_ENDPOINT", "http://10.77.0.1:9000")
S3_ACCESS_KEY = os.environ.get("S3_ACCESS_KEY", "")
S3_SECRET_KEY = os.environ.get("S3_SECRET_KEY", "")
S3_BUCKET = os.environ.get("LAB_S3_BUCKET", "rkectl-backups")

K8S_VERSION = "v1.30.5-rancher1-1"
S3_FOLDER = "rke-snapshots"
INTERVAL_HOURS, RETENTION = 12, 6          # backup_config; rke-tools gets 12h / 72h
SSL = "/etc/kubernetes/ssl"
SNAPSHOT_DIR = "/opt/rke/etcd-snapshots"   # /backup in rke-tools' containers
TEN_YEARS = datetime.timedelta(days=3650)  # Go: duration365d * 10

# KDM's images for v1.30.5-rancher1-1 (rke's default in KDM dev-v2.9): RKE fills every
# system image cluster.yml leaves out with these (spec §9), so they are in the state.
KDM_IMAGES = {
    "etcd": "rancher/mirrored-coreos-etcd:v3.5.12",
    "alpine": "rancher/rke-tools:v0.1.103",
    "nginxProxy": "rancher/rke-tools:v0.1.103",
    "certDownloader": "rancher/rke-tools:v0.1.103",
    "kubernetesServicesSidecar": "rancher/rke-tools:v0.1.103",
    "kubedns": "rancher/mirrored-k8s-dns-kube-dns:1.23.0",
    "dnsmasq": "rancher/mirrored-k8s-dns-dnsmasq-nanny:1.23.0",
    "kubednsSidecar": "rancher/mirrored-k8s-dns-sidecar:1.23.0",
    "kubednsAutoscaler": "rancher/mirrored-cluster-proportional-autoscaler:v1.8.9",
    "coredns": "rancher/mirrored-coredns-coredns:1.11.1",
    "corednsAutoscaler": "rancher/mirrored-cluster-proportional-autoscaler:v1.8.9",
    "nodelocal": "rancher/mirrored-k8s-dns-node-cache:1.23.0",
    "kubernetes": "rancher/hyperkube:v1.30.5-rancher1",
    "flannel": "rancher/mirrored-flannel-flannel:v0.25.1",
    "flannelCni": "rancher/flannel-cni:v1.4.1-rancher1",
    "calicoNode": "rancher/mirrored-calico-node:v3.28.1",
    "calicoCni": "rancher/calico-cni:v3.28.1-rancher1",
    "calicoControllers": "rancher/mirrored-calico-kube-controllers:v3.28.1",
    "calicoCtl": "rancher/mirrored-calico-ctl:v3.28.1",
    "calicoFlexVol": "rancher/mirrored-calico-pod2daemon-flexvol:v3.28.1",
    "canalNode": "rancher/mirrored-calico-node:v3.28.1",
    "canalCni": "rancher/calico-cni:v3.28.1-rancher1",
    "canalControllers": "rancher/mirrored-calico-kube-controllers:v3.28.1",
    "canalFlannel": "rancher/mirrored-flannel-flannel:v0.25.1",
    "canalFlexVol": "rancher/mirrored-calico-pod2daemon-flexvol:v3.28.1",
    "podInfraContainer": "rancher/mirrored-pause:3.7",
    "ingress": "rancher/nginx-ingress-controller:nginx-1.11.2-rancher1",
    "ingressBackend": "rancher/mirrored-nginx-ingress-controller-defaultbackend:1.5-rancher1",
    "ingressWebhook": "rancher/mirrored-ingress-nginx-kube-webhook-certgen:v1.4.1",
    "metricsServer": "rancher/mirrored-metrics-server:v0.7.1",
    "windowsPodInfraContainer": "rancher/mirrored-pause:3.7",
    "aciCniDeployContainer": "noiro/cnideploy:6.1.1.1.81c2369",
    "aciHostContainer": "noiro/aci-containers-host:6.1.1.1.81c2369",
    "aciOpflexContainer": "noiro/opflex:6.1.1.1.81c2369",
    "aciMcastContainer": "noiro/opflex:6.1.1.1.81c2369",
    "aciOvsContainer": "noiro/openvswitch:6.1.1.1.81c2369",
    "aciControllerContainer": "noiro/aci-containers-controller:6.1.1.1.81c2369",
}


def log(msg):
    print(f"[rke-up] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def run(cmd, input=None, check=True):
    """Run a command, stdout returned as bytes; stderr shown only on failure."""
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        die(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def in_node(node, *cmd, input=None, check=True):
    """A command inside a lab node (what `lab exec NODE ...` does)."""
    return run(["docker", "exec", "-i", NODE_PREFIX + node.name[4:], *cmd], input=input, check=check)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class NodeDocker(http.client.HTTPConnection):
    """The Docker Engine API of a node, as RKE talks to it (RKE tunnels it over SSH; here
    the node's socket is reached through its PID 1's root). Containers RKE creates are made
    this way because the nodes' docker CLI (20.10) does not keep the order of -e options,
    and RKE's env order is part of what is reproduced."""

    def __init__(self, node):
        super().__init__("localhost", timeout=60)
        pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", NODE_PREFIX + node.name[4:]]).decode().strip()
        self.sock_path = f"/proc/{pid}/root/run/docker.sock"

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.sock_path)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.request(method, "/v1.41" + path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = self.getresponse()
        text = resp.read().decode(errors="replace")
        if resp.status >= 300:
            die(f"docker API {method} {path}: HTTP {resp.status}: {text.strip()}")
        return json.loads(text) if text.strip() else None


def docker_run(node, name, config, host_config):
    """ContainerCreate + ContainerStart, what RKE's docker.DoRunContainer does."""
    api = NodeDocker(node)
    try:
        created = api.call("POST", f"/containers/create?name={name}", dict(config, HostConfig=host_config))
        api.call("POST", f"/containers/{created['Id']}/start")
    finally:
        api.close()


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")   # Go's time.RFC3339 of a UTC time


# ---------------------------------------------------------------------------------------
# Cluster model
# ---------------------------------------------------------------------------------------
class Node:
    def __init__(self, name, roles, internal):
        k = name[4:]
        self.name = name
        self.address = f"10.77.0.1{k}"
        # cluster.yml carries internal_address only with --internal; RKE's defaults set it
        # to address otherwise, and the state holds the defaulted value.
        self.yml_internal = f"10.78.0.1{k}" if internal else ""
        self.internal = self.yml_internal or self.address
        self.hostname = name           # hostname_override (already lower-case)
        self.roles = roles

    @property
    def etcd(self):
        return "etcd" in self.roles

    @property
    def controlplane(self):
        return "controlplane" in self.roles

    @property
    def crt_name(self):
        # GetCrtNameForHost (spec §2.1): internal_address if set and different, dots to dashes.
        addr = self.internal if self.internal != self.address else self.address
        return "kube-etcd-" + addr.replace(".", "-").lower()

    @property
    def listen(self):
        # BuildEtcdProcess: bind the internal address, or everything when there is none.
        return "0.0.0.0" if self.internal == self.address else self.internal

    @property
    def listen_from_host(self):
        # Where the lab host reaches this member.
        return self.address if self.listen == "0.0.0.0" else self.listen


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="lab rke-up", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="where cluster.yml, cluster.rkestate ... go")
    ap.add_argument("--etcd", default="node1,node2,node3", help="etcd nodes, in cluster.yml order")
    ap.add_argument("--other", action="append", default=[], metavar="NODE:ROLE[,ROLE]",
                    help="a node with other roles (controlplane, worker); repeatable")
    ap.add_argument("--internal", action="store_true",
                    help="internal_address 10.78.0.1K on network rkectl-lab-int for every node")
    a = ap.parse_args(argv)
    nodes = {}
    for n in [x for x in a.etcd.split(",") if x]:
        nodes.setdefault(n, []).append("etcd")
    for spec in a.other:
        n, _, roles = spec.partition(":")
        for r in roles.split(","):
            if r not in ("controlplane", "worker", "etcd"):
                die(f"--other {spec}: role must be controlplane, worker or etcd")
            if r not in nodes.setdefault(n, []):
                nodes[n].append(r)
    for n in nodes:
        if not (n.startswith("node") and n[4:].isdigit() and 1 <= int(n[4:]) <= 5):
            die(f"unknown node {n!r} (node1..node5)")
    cluster = [Node(n, roles, a.internal) for n, roles in nodes.items()]
    if not any(n.etcd for n in cluster):
        die("no etcd node")
    return a, cluster


# ---------------------------------------------------------------------------------------
# PKI (spec §3): openssl, shaped like Go's x509.CreateCertificate output in RKE
# ---------------------------------------------------------------------------------------
class Pki:
    """Keys and certificates in a private work directory; PEM text kept per name."""

    def __init__(self, work):
        self.work = work
        self.cert = {}   # name -> PEM
        self.key = {}    # name -> PEM
        self.not_before = {}

    def _path(self, name, ext):
        return os.path.join(self.work, f"{name}.{ext}")

    def new_key(self, name):
        # Go's rsa.GenerateKey(2048) + x509.MarshalPKCS1PrivateKey, PEM "RSA PRIVATE KEY".
        run(["openssl", "genrsa", "-traditional", "-out", self._path(name, "key"), "2048"])
        self.key[name] = open(self._path(name, "key")).read()

    def share_key(self, name, other):
        shutil.copy(self._path(other, "key"), self._path(name, "key"))
        self.key[name] = self.key[other]

    def ca(self, name):
        """cert.NewSelfSignedCACert: CN only, serial 0, now .. now+10y, CA:true (critical),
        keyUsage keyEncipherment|digitalSignature|keyCertSign (critical), SKID, no AKID."""
        self.new_key(name)
        cnf = self._path(name, "cnf")
        with open(cnf, "w") as f:
            # Extension order as Go writes them: keyUsage, basicConstraints, SKID.
            f.write("[req]\ndistinguished_name = dn\nstring_mask = default\n[dn]\n"
                    "[ext]\nkeyUsage = critical, digitalSignature, keyEncipherment, keyCertSign\n"
                    "basicConstraints = critical, CA:TRUE\nsubjectKeyIdentifier = hash\n"
                    "authorityKeyIdentifier = none\n")
        run(["openssl", "req", "-new", "-x509", "-config", cnf, "-extensions", "ext",
             "-key", self._path(name, "key"), "-subj", f"/CN={name}", "-set_serial", "0",
             "-days", "3650", "-sha256", "-out", self._path(name, "pem")])
        self.cert[name] = open(self._path(name, "pem")).read()
        nb = run(["openssl", "x509", "-noout", "-startdate", "-in", self._path(name, "pem")])
        # "notBefore=Mar  5 10:00:00 2026 GMT"
        self.not_before[name] = datetime.datetime.strptime(
            nb.decode().strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")

    def leaf(self, name, ca, cn, orgs=(), server=False, dns=(), ips=(), key_of=None):
        """newSignedCert: random serial in [0, 2^63-1), NotBefore = the CA's NotBefore,
        NotAfter = now+10y, keyUsage keyEncipherment|digitalSignature (critical), EKU
        clientAuth[, serverAuth], AKID from the CA, no SKID, SANs DNS first then IPs."""
        if key_of:
            self.share_key(name, key_of)
        else:
            self.new_key(name)
        subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"   # Go: O before CN
        cnf = self._path(name, "cnf")
        db = self._path(name, "db")
        open(db, "w").close()
        serial = self._path(name, "srl")
        with open(serial, "w") as f:
            f.write("%016X\n" % secrets.randbelow(2**63 - 1))
        ext = ["keyUsage = critical, digitalSignature, keyEncipherment",
               "extendedKeyUsage = clientAuth" + (", serverAuth" if server else ""),
               "subjectKeyIdentifier = none", "authorityKeyIdentifier = keyid"]
        alt = [f"DNS.{i} = {d}" for i, d in enumerate(dns, 1)] + \
              [f"IP.{i} = {a}" for i, a in enumerate(ips, 1)]
        if alt:
            ext.append("subjectAltName = @alt")
        with open(cnf, "w") as f:
            f.write("[req]\ndistinguished_name = dn\nstring_mask = default\n[dn]\n"
                    "[ca]\ndefault_ca = lab\n"
                    f"[lab]\ndatabase = {db}\nserial = {serial}\nnew_certs_dir = {self.work}\n"
                    "policy = any\nunique_subject = no\nemail_in_dn = no\nstring_mask = default\n"
                    "[any]\ncommonName = supplied\norganizationName = optional\n"
                    "[ext]\n" + "\n".join(ext) + "\n" +
                    ("[alt]\n" + "\n".join(alt) + "\n" if alt else ""))
        csr = self._path(name, "csr")
        run(["openssl", "req", "-new", "-config", cnf, "-key", self._path(name, "key"),
             "-subj", subj, "-out", csr])
        start = self.not_before[ca].strftime("%y%m%d%H%M%SZ")
        end = (utcnow() + TEN_YEARS).strftime("%y%m%d%H%M%SZ")
        run(["openssl", "ca", "-batch", "-config", cnf, "-extensions", "ext", "-notext",
             "-preserveDN", "-md", "sha256", "-cert", self._path(ca, "pem"),
             "-keyfile", self._path(ca, "key"), "-startdate", start, "-enddate", end,
             "-in", csr, "-out", self._path(name, "pem")])
        self.cert[name] = open(self._path(name, "pem")).read()


def alt_names(hosts):
    """GetAltNames (spec §3.3) for these hosts, default cluster domain and service CIDR."""
    dns, ips = [], []

    def add(a):
        (ips if all(p.isdigit() for p in a.split(".")) and a.count(".") == 3 else dns).append(a)

    for h in hosts:
        add(h.address)
        if h.internal != h.address:
            add(h.internal)
        if h.hostname != h.address:
            dns.append(h.hostname)
    ips += ["127.0.0.1", "10.43.0.1"]
    dns += ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"]
    return dns, ips


def kubeconfig_x509(name, ca_path, crt_path, key_path):
    # getKubeConfigX509 (rke:pki/kubeconfig.go), byte for byte: no trailing newline.
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    api-version: v1\n"
            f"    certificate-authority: {ca_path}\n    server: \"https://127.0.0.1:6443\"\n"
            "  name: \"local\"\ncontexts:\n- context:\n    cluster: \"local\"\n"
            f"    user: \"{name}-local\"\n  name: \"local\"\ncurrent-context: \"local\"\n"
            f"users:\n- name: \"{name}-local\"\n  user:\n    client-certificate: {crt_path}\n"
            f"    client-key: {key_path}")


def kubeconfig_x509_data(server, cluster, name, ca, crt, key):
    # GetKubeConfigX509WithData: kube-admin's kubeconfig with the PEMs inlined.
    b = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    api-version: v1\n"
            f"    certificate-authority-data: {b(ca)}\n    server: \"{server}\"\n"
            f"  name: \"{cluster}\"\ncontexts:\n- context:\n    cluster: \"{cluster}\"\n"
            f"    user: \"{name}-{cluster}\"\n  name: \"{cluster}\"\ncurrent-context: \"{cluster}\"\n"
            f"users:\n- name: \"{name}-{cluster}\"\n  user:\n    client-certificate-data: {b(crt)}\n"
            f"    client-key-data: {b(key)}")


def cert_object(pki, name, common_name="", ou_name="", crt=None, key=None):
    """ToCertObject (spec §1.3): the 12 keys, in CertificatePKI's field order."""
    crt = pki.cert[name] if crt is None else crt
    key = pki.key[name] if key is None else key
    env = name.upper().replace("-", "_")
    has_config = (name not in ("kube-ca", "kube-apiserver", "kube-service-account-token")
                  and "kube-etcd" not in name and "kube-kubelet" not in name)
    path, key_path = f"{SSL}/{name}.pem", f"{SSL}/{name}-key.pem"
    return {
        "certificatePEM": crt,
        "keyPEM": key,
        "config": kubeconfig_x509(name, f"{SSL}/kube-ca.pem", path, key_path) if has_config else "",
        "name": name,
        "commonName": common_name or f"system:{name}",
        "ouName": ou_name,
        "envName": env,
        "path": path,
        "keyEnvName": env + "_KEY",
        "keyPath": key_path,
        "configEnvName": "KUBECFG_" + env if has_config else "",
        "configPath": f"{SSL}/kubecfg-{name}.yaml" if has_config else "",
    }


def make_bundle(pki, cluster, kube_admin_config_path):
    """GenerateRKECerts for a new cluster: both CAs, then the service certificates in
    GenerateRKEServicesCerts' order (which is what makes kube-node reuse kube-proxy's key)."""
    etcd_hosts = [n for n in cluster if n.etcd]
    cp_hosts = [n for n in cluster if n.controlplane]
    log("generating the PKI (RSA 2048, like RKE's)")
    pki.ca("kube-ca")
    pki.ca("kube-apiserver-requestheader-ca")
    dns, ips = alt_names(cp_hosts)
    pki.leaf("kube-apiserver", "kube-ca", "kube-apiserver", server=True, dns=dns, ips=ips)
    pki.leaf("kube-controller-manager", "kube-ca", "system:kube-controller-manager")
    pki.leaf("kube-scheduler", "kube-ca", "system:kube-scheduler")
    pki.leaf("kube-proxy", "kube-ca", "system:kube-proxy")
    pki.leaf("kube-node", "kube-ca", "system:node", orgs=["system:nodes"], key_of="kube-proxy")
    pki.leaf("kube-admin", "kube-ca", "kube-admin", orgs=["system:masters"])
    pki.leaf("kube-apiserver-proxy-client", "kube-apiserver-requestheader-ca",
             "kube-apiserver-proxy-client", server=True)
    dns, ips = alt_names(etcd_hosts)
    for h in etcd_hosts:
        pki.leaf(h.crt_name, "kube-ca", "kube-etcd", server=True, dns=dns, ips=ips)

    b = {}
    for name in ("kube-ca", "kube-apiserver-requestheader-ca", "kube-apiserver",
                 "kube-controller-manager", "kube-scheduler", "kube-proxy",
                 "kube-apiserver-proxy-client"):
        b[name] = cert_object(pki, name)
    b["kube-node"] = cert_object(pki, "kube-node", "system:node", "system:nodes")
    # On a new cluster the token key is a copy of kube-apiserver's cert and key.
    b["kube-service-account-token"] = cert_object(
        pki, "kube-service-account-token", "kube-service-account-token",
        crt=pki.cert["kube-apiserver"], key=pki.key["kube-apiserver"])
    admin = cert_object(pki, "kube-admin", "kube-admin", "system:masters")
    if cp_hosts:
        admin["config"] = kubeconfig_x509_data(
            f"https://{cp_hosts[0].address}:6443", "local", "kube-admin",
            pki.cert["kube-ca"], pki.cert["kube-admin"], pki.key["kube-admin"])
        admin["configPath"] = kube_admin_config_path
    else:
        admin["config"] = ""
    b["kube-admin"] = admin
    for h in etcd_hosts:
        b[h.crt_name] = cert_object(pki, h.crt_name)
    return dict(sorted(b.items()))   # Go marshals map keys sorted


def encryption_config():
    """providerFileFromKeyList with one generateEncryptionKey() key."""
    name = "ky-" + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    secret = base64.urlsafe_b64encode(secrets.token_bytes(16).hex().upper().encode()).decode()
    return ("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
            "resources:\n- resources:\n  - secrets\n  providers:\n  - aescbc:\n      keys:\n"
            f"      - name: {name}\n        secret: {secret}\n  - identity: {{}}")


# ---------------------------------------------------------------------------------------
# cluster.yml and cluster.rkestate
# ---------------------------------------------------------------------------------------
def cluster_yml(cluster):
    out = ["# Written by tests/lab/lab rke-up: the cluster.yml `rke up` built this etcd plane from.",
           "nodes:"]
    for n in cluster:
        out.append(f"  - address: {n.address}")
        if n.yml_internal:
            out.append(f"    internal_address: {n.yml_internal}")
        out += [f"    hostname_override: {n.hostname}", "    user: root",
                f"    role: [{', '.join(n.roles)}]", f"    ssh_key_path: {SSH_KEY}"]
    out += [f"ssh_key_path: {SSH_KEY}",
            f"kubernetes_version: {K8S_VERSION}",
            "system_images:",
            f"  etcd: {ETCD_IMAGE}",
            f"  alpine: {RKE_TOOLS_IMAGE}"]
    out += ["services:",
            "  etcd:",
            "    backup_config:",
            f"      interval_hours: {INTERVAL_HOURS}",
            f"      retention: {RETENTION}",
            "      s3backupconfig:",
            f"        access_key: {S3_ACCESS_KEY}",
            f"        secret_key: {S3_SECRET_KEY}",
            f"        bucket_name: {S3_BUCKET}",
            # The lab's S3 server speaks plain HTTP; rkectl takes the scheme (rke-tools
            # always uses HTTPS and wants host:port, so the real tool would not reach it).
            f"        endpoint: {S3_ENDPOINT}",
            f"        folder: {S3_FOLDER}",
            "  kube-api:",
            "    secrets_encryption_config:",
            "      enabled: true",
            ""]
    return "\n".join(out)


def rke_config(cluster):
    """The post-defaults RancherKubernetesEngineConfig as json tags emit it (a realistic
    subset; fields in struct order, omitempty honoured, structs always present)."""
    nodes = []
    for n in cluster:
        nodes.append({"address": n.address, "port": "22", "internalAddress": n.internal,
                      "role": n.roles, "hostnameOverride": n.hostname, "user": "root",
                      "sshKeyPath": SSH_KEY})
    k8s_image = KDM_IMAGES["kubernetes"]
    images = dict(KDM_IMAGES)
    images["etcd"], images["alpine"] = ETCD_IMAGE, RKE_TOOLS_IMAGE
    return {
        "nodes": nodes,
        "services": {
            "etcd": {
                "image": ETCD_IMAGE,
                "extraArgs": {"election-timeout": "5000", "heartbeat-interval": "500"},
                "snapshot": True,
                "retention": "72h",
                "creation": "12h",
                "backupConfig": {
                    "intervalHours": INTERVAL_HOURS,
                    "retention": RETENTION,
                    "s3BackupConfig": {
                        "accessKey": S3_ACCESS_KEY,
                        "secretKey": S3_SECRET_KEY,
                        "bucketName": S3_BUCKET,
                        "endpoint": S3_ENDPOINT,
                        "folder": S3_FOLDER,
                    },
                    "timeout": 300,
                },
            },
            "kubeApi": {"image": k8s_image, "serviceClusterIpRange": "10.43.0.0/16",
                        "serviceNodePortRange": "30000-32767",
                        "podSecurityConfiguration": "privileged",
                        "secretsEncryptionConfig": {"enabled": True}},
            "kubeController": {"image": k8s_image, "clusterCidr": "10.42.0.0/16",
                               "serviceClusterIpRange": "10.43.0.0/16"},
            "scheduler": {"image": k8s_image},
            "kubelet": {"image": k8s_image, "clusterDomain": "cluster.local",
                        "infraContainerImage": KDM_IMAGES["podInfraContainer"],
                        "clusterDnsServer": "10.43.0.10"},
            "kubeproxy": {"image": k8s_image},
        },
        "network": {"plugin": "canal", "options": {
            "canal_flannel_backend_port": "8472", "canal_flannel_backend_type": "vxlan",
            "canal_flannel_backend_vni": "1"}},
        "authentication": {"strategy": "x509"},
        "systemImages": images,
        "sshKeyPath": SSH_KEY,
        "sshAgentAuth": False,
        "authorization": {"mode": "rbac"},
        "ignoreDockerVersion": None,
        "enableCriDockerd": None,
        "kubernetesVersion": K8S_VERSION,
        "ingress": {"provider": "nginx", "defaultBackend": False},
        "clusterName": "local",
        "cloudProvider": {},
        "prefixPath": "/",
        "winPrefixPath": "c:/",
        "addonJobTimeout": 45,
        "bastionHost": {},
        "monitoring": {"provider": "metrics-server", "replicas": 1},
        "restore": {},
        "rotateEncryptionKey": False,
        "dns": {"provider": "coredns"},
    }


def go_json(obj):
    """json.MarshalIndent(obj, "", "  "): 2 spaces, no trailing newline, and Go's HTML-safe
    escapes of <, > and & (which only ever occur inside strings)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_file(path, data, mode):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# On the nodes
# ---------------------------------------------------------------------------------------
def node_cert_files(node, bundle):
    """What cert-deployer writes on this node (spec §2.3-2.4): per certificate its key,
    cert and kubeconfig, each as `echo "$value"` writes it (one trailing newline)."""
    names = ["kube-ca", "kube-proxy", "kube-node"]
    if node.etcd:
        names += [k for k in bundle if k.startswith("kube-etcd-")]
    if node.controlplane:
        names += ["kube-apiserver", "kube-service-account-token", "kube-controller-manager",
                  "kube-scheduler", "kube-apiserver-requestheader-ca",
                  "kube-apiserver-proxy-client"]
    files = {}
    for name in names:
        c = bundle[name]
        file_base = c["envName"].lower().replace("_", "-")
        if c["keyPEM"] and not (name == "kube-ca" and not node.controlplane):
            files[f"{file_base}-key.pem"] = c["keyPEM"]
        if c["certificatePEM"]:
            files[f"{file_base}.pem"] = c["certificatePEM"]
        if c["configEnvName"] and c["config"]:
            files[c["configEnvName"].lower().replace("_", "-") + ".yaml"] = c["config"]
    return {k: v.rstrip("\n") + "\n" for k, v in files.items()}


def deploy_certs(node, bundle):
    # One tar through `docker exec`: the end state of cert-deployer's loop.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("etc/kubernetes", "etc/kubernetes/ssl"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, time.time()
            tar.addfile(ti)
        for fname, text in sorted(node_cert_files(node, bundle).items()):
            data = text.encode()
            ti = tarfile.TarInfo(f"etc/kubernetes/ssl/{fname}")
            ti.size, ti.mode, ti.mtime = len(data), 0o600, time.time()
            tar.addfile(ti, io.BytesIO(data))
    in_node(node, "tar", "-x", "-p", "--no-same-owner", "-C", "/", "-f", "-", input=buf.getvalue())


def link_log(node, container):
    """rke-log-linker: /var/lib/rancher/rke/log/<name>_<id>.log -> the json log."""
    cid = in_node(node, "docker", "inspect", "-f", "{{.Id}}", container).decode().strip()
    in_node(node, "sh", "-c", "mkdir -p /var/lib/rancher/rke/log && ln -sf "
            f"/var/lib/docker/containers/{cid}/{cid}-json.log /var/lib/rancher/rke/log/{container}_{cid}.log")


def run_etcd(node, etcd_hosts):
    """BuildEtcdProcess + RunEtcdPlane for etcd tag v3.4.23 on k8s v1.30 (spec §4)."""
    crt = node.crt_name
    opts = {
        "name": f"etcd-{node.hostname}",
        "data-dir": "/var/lib/rancher/etcd/",
        "listen-client-urls": f"https://{node.listen}:2379",
        "initial-advertise-peer-urls": f"https://{node.internal}:2380",
        "listen-peer-urls": f"https://{node.listen}:2380",
        "initial-cluster-token": "etcd-cluster-1",
        "initial-cluster": ",".join(f"etcd-{h.hostname}=https://{h.internal}:2380" for h in etcd_hosts),
        "initial-cluster-state": "new",
        "trusted-ca-file": f"{SSL}/kube-ca.pem",
        "peer-trusted-ca-file": f"{SSL}/kube-ca.pem",
        "cert-file": f"{SSL}/{crt}.pem",
        "key-file": f"{SSL}/{crt}-key.pem",
        "peer-cert-file": f"{SSL}/{crt}.pem",
        "peer-key-file": f"{SSL}/{crt}-key.pem",
        "advertise-client-urls": f"https://{node.internal}:2379",      # tag >= v3.4.3-rancher99
        "cipher-suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        # KDM's etcd options for v1.23..v1.30 (so the bare --client-cert-auth flags are not added)
        "client-cert-auth": "true",
        "peer-client-cert-auth": "true",
        # services.etcd.extra_args defaults
        "election-timeout": "5000",
        "heartbeat-interval": "500",
    }
    args = [f"--{k}={v}" for k, v in opts.items()]
    random.shuffle(args)   # Go map iteration order: random on every run
    endpoint = "https://127.0.0.1:2379" if node.listen == "0.0.0.0" else f"https://{node.listen}:2379"
    env = ["ETCDCTL_API=3", f"ETCDCTL_CACERT={SSL}/kube-ca.pem", f"ETCDCTL_CERT={SSL}/{crt}.pem",
           f"ETCDCTL_KEY={SSL}/{crt}-key.pem", f"ETCDCTL_ENDPOINTS={endpoint}"]
    arch = in_node(node, "docker", "info", "-f", "{{.Architecture}}").decode().strip()
    env.append(f"ETCD_UNSUPPORTED_ARCH={'arm64' if arch == 'aarch64' else arch}")
    # etcd-fix-perm: chmod 700 of the data dir before etcd starts.
    in_node(node, "sh", "-c", "mkdir -p /var/lib/etcd && chmod 700 /var/lib/etcd")
    docker_run(node, "etcd",
               {"Image": ETCD_IMAGE, "Cmd": ["/usr/local/bin/etcd", *args], "Env": env,
                "Labels": {"io.rancher.rke.container.name": "etcd"}},
               {"Binds": ["/var/lib/etcd:/var/lib/rancher/etcd/", "/etc/kubernetes:/etc/kubernetes"],
                "NetworkMode": "host", "RestartPolicy": {"Name": "always"}})
    link_log(node, "etcd")


def run_rolling_snapshots(node):
    """RunEtcdSnapshotSave(once=false) with backup_config and S3 (spec §5.1)."""
    cmd = ["/opt/rke-tools/rke-etcd-backup", "etcd-backup", "save",
           "--cacert", f"{SSL}/kube-ca.pem", "--cert", f"{SSL}/kube-node.pem",
           "--key", f"{SSL}/kube-node-key.pem", "--name", "etcd-rolling-snapshots",
           f"--endpoints={node.internal}:2379",
           f"--creation={INTERVAL_HOURS}h", f"--retention={RETENTION * INTERVAL_HOURS}h",
           "--s3-backup=true", f"--s3-endpoint={S3_ENDPOINT}", f"--s3-bucketName={S3_BUCKET}",
           "--s3-region=", f"--s3-folder={S3_FOLDER}"]
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    docker_run(node, "etcd-rolling-snapshots",
               {"Image": RKE_TOOLS_IMAGE, "Cmd": cmd,
                "Env": [f"S3_ACCESS_KEY={b64(S3_ACCESS_KEY)}", f"S3_SECRET_KEY={b64(S3_SECRET_KEY)}"]},
               {"Binds": [f"{SNAPSHOT_DIR}/:/backup", "/etc/kubernetes:/etc/kubernetes"],
                "NetworkMode": "host", "RestartPolicy": {"Name": "always"}})
    link_log(node, "etcd-rolling-snapshots")


class Etcdctl:
    """The host's etcdctl with the kube-node client (what RKE's health check uses)."""

    def __init__(self, ca, crt, key):
        self.base = ["etcdctl", "--cacert", ca, "--cert", crt, "--key", key, "--dial-timeout", "3s"]

    def __call__(self, node, *args, check=True):
        env = dict(os.environ, ETCDCTL_API="3")
        p = subprocess.run(self.base + ["--endpoints", f"https://{node.listen_from_host}:2379", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if check and p.returncode != 0:
            die(f"etcdctl {' '.join(args)} on {node.name}: {p.stderr.decode(errors='replace').strip()}")
        return p.returncode, p.stdout.decode()


def go_zip(entries):
    """compressFiles/AddFileToZip of rke-tools as Go's archive/zip writes it: entries named
    by their absolute path, Deflate, data descriptors (Go streams), version 2.0 made on Unix,
    the file's mode in the external attributes (plus the MS-DOS read-only bit when not
    writable), and Modified = time.Unix(0, 0): Go writes that as an extended-timestamp extra
    field of 0 and an MS-DOS date computed without clamping, (1970-1980)<<9 wrapped to 16
    bits, which reads back as 2098-01-01 00:00:00. zipfile writes the same header fields;
    writing to a stream it cannot seek makes it use data descriptors, as Go does."""
    class Stream:   # write-only: no tell/seek, so zipfile streams
        def __init__(self):
            self.buf = io.BytesIO()

        def write(self, b):
            return self.buf.write(b)

        def flush(self):
            pass

    out = Stream()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            zi = zipfile.ZipInfo(name, date_time=(2098, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = ((0o100000 | mode) << 16) | (0 if mode & 0o200 else 0x01)
            zi.extra = b"UT\x05\x00\x01\x00\x00\x00\x00"   # 0x5455, flags 1, mtime 0
            z.writestr(zi, data)
    return out.buf.getvalue()


def take_snapshots(cluster, etcdctl, name, state_text, state_mode):
    """One round: for every etcd host in order, mark the data, `etcdctl snapshot save` from
    that host's own member into /opt/rke/etcd-snapshots/<name>, then zip it with
    /etc/kubernetes/<name>.rkestate as rke-tools does and drop the unzipped files.
    Returns {node name: zip bytes}."""
    zips = {}
    for node in [n for n in cluster if n.etcd]:
        # Written through this member: its put returns once this member has applied it.
        etcdctl(node, "put", "/rke-lab/taken-on", node.name)
        etcdctl(node, "put", "/rke-lab/snapshot", name)
        # The state file the snapshot container finds: one-time saves get the local
        # .rkestate copied in by cluster-state-deployer (chmod 400); the rolling container
        # writes the kube-system/full-cluster-state secret itself (os.Create: 0644).
        in_node(node, "sh", "-c", f"cat > '/etc/kubernetes/{name}.rkestate' && chmod {state_mode:o} "
                f"'/etc/kubernetes/{name}.rkestate'", input=state_text.encode())
        in_node(node, "mkdir", "-p", SNAPSHOT_DIR)
        in_node(node, "docker", "run", "--name", "etcd-snapshot-once", "--net", "host",
                "-e", "ETCDCTL_API=3",
                "-v", f"{SNAPSHOT_DIR}/:/backup", "-v", "/etc/kubernetes:/etc/kubernetes",
                ETCD_IMAGE, "etcdctl", f"--endpoints={node.internal}:2379",
                f"--cacert={SSL}/kube-ca.pem", f"--cert={SSL}/kube-node.pem",
                f"--key={SSL}/kube-node-key.pem", "snapshot", "save", f"/backup/{name}")
        in_node(node, "docker", "rm", "etcd-snapshot-once")
        snap, state = f"{SNAPSHOT_DIR}/{name}", f"/etc/kubernetes/{name}.rkestate"
        modes = in_node(node, "stat", "-c", "%a", snap, state).decode().split()
        data = go_zip([(f"/backup/{name}", in_node(node, "cat", snap), int(modes[0], 8)),
                       (state, in_node(node, "cat", state), int(modes[1], 8))])
        in_node(node, "sh", "-c", f"cat > '{snap}.zip' && chmod 0600 '{snap}.zip' && rm -f '{snap}' '{state}'",
                input=data)
        zips[node.name] = data
        log(f"  {node.name}: {snap}.zip ({len(data)} bytes)")
    return zips


# ---------------------------------------------------------------------------------------
def main(argv):
    t0 = time.monotonic()
    a, cluster = parse_args(argv)
    etcd_hosts = [n for n in cluster if n.etcd]
    out_dir = os.path.abspath(a.dir)
    os.makedirs(out_dir, exist_ok=True)
    yml_path = os.path.join(out_dir, "cluster.yml")
    state_path = os.path.join(out_dir, "cluster.rkestate")
    kubeconfig_path = os.path.join(out_dir, "kube_config_cluster.yml")
    certs_dir = os.path.join(out_dir, "lab-certs")
    # From nothing: what an earlier run (or rkectl) left for this cluster.yml goes.
    for p in (yml_path, state_path, kubeconfig_path, os.path.join(out_dir, "cluster.rkectl-state")):
        if os.path.exists(p):
            os.remove(p)
    shutil.rmtree(certs_dir, ignore_errors=True)

    work = tempfile.mkdtemp(prefix="rkectl-lab-pki.")
    try:
        pki = Pki(work)
        bundle = make_bundle(pki, cluster, kubeconfig_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # State as `rke up` leaves it: RebuildState wrote desiredState, UpdateClusterCurrentState
    # copied it to currentState after the deploy.
    state_obj = {"rkeConfig": rke_config(cluster), "certificatesBundle": bundle,
                 "encryptionConfig": encryption_config()}
    state_text = go_json({"desiredState": state_obj, "currentState": state_obj})
    write_file(yml_path, cluster_yml(cluster), 0o644)
    write_file(state_path, state_text, 0o600)
    if bundle["kube-admin"]["config"]:
        write_file(kubeconfig_path, bundle["kube-admin"]["config"], 0o640)   # DeployAdminConfig
    # The kube-node client, as files the tests can hand to an etcd client.
    os.makedirs(certs_dir, mode=0o700)
    client = {"KUBE_CA": ("kube-ca.pem", bundle["kube-ca"]["certificatePEM"]),
              "KUBE_NODE_CERT": ("kube-node.pem", bundle["kube-node"]["certificatePEM"]),
              "KUBE_NODE_KEY": ("kube-node-key.pem", bundle["kube-node"]["keyPEM"])}
    for _, (fname, text) in client.items():
        write_file(os.path.join(certs_dir, fname), text, 0o600)
    etcdctl = Etcdctl(*(os.path.join(certs_dir, client[k][0]) for k in ("KUBE_CA", "KUBE_NODE_CERT", "KUBE_NODE_KEY")))

    log("deploying certificates (cert-deployer)")
    for n in cluster:
        deploy_certs(n, bundle)
    log("starting etcd and etcd-rolling-snapshots on " + ",".join(n.name for n in etcd_hosts))
    for n in etcd_hosts:
        run_etcd(n, etcd_hosts)
        run_rolling_snapshots(n)
    deadline = time.monotonic() + 90
    for n in etcd_hosts:
        while etcdctl(n, "endpoint", "health", check=False)[0] != 0:
            if time.monotonic() > deadline:
                logs = in_node(n, "docker", "logs", "--tail", "20", "etcd", check=False)
                die(f"etcd on {n.name} not healthy after 90 s; its last log lines:\n{logs.decode(errors='replace')}")
            time.sleep(0.5)
    for n in etcd_hosts:
        st = in_node(n, "docker", "inspect", "-f", "{{.State.Status}}", "etcd-rolling-snapshots").decode().strip()
        if st != "running":
            die(f"etcd-rolling-snapshots on {n.name} is {st}")
    log(f"etcd healthy on every member ({time.monotonic() - t0:.1f} s)")

    first = etcd_hosts[0]
    etcdctl(first, "put", "/rke-lab/before", "1")
    for k in "abc":
        etcdctl(first, "put", f"/rke-lab/data/{k}", f"value-{k}")

    # `rke etcd snapshot-save` with its default name (RKE's host clock; UTC here).
    one_time = "rke_etcd_snapshot_" + rfc3339(utcnow())
    log(f"one-time snapshot {one_time}")
    zips = take_snapshots(cluster, etcdctl, one_time, state_text, 0o400)
    s3 = s3req.Client(S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY)
    for _, _, key in list(s3.list(S3_BUCKET, S3_FOLDER + "/")):
        s3.checked("DELETE", S3_BUCKET, key)
    s3_key = f"{S3_FOLDER}/{one_time}.zip"
    # Every host tries to upload the same key; after the first one the object exists and
    # the others skip (unversioned bucket): the first etcd host's copy is the one in S3.
    s3.checked("PUT", S3_BUCKET, s3_key, body=zips[first.name], content_type="application/zip")

    # A tick of the rolling container (a second later at least, so the names differ).
    time.sleep(max(0.0, 1.05 - (utcnow().microsecond / 1e6)))
    recurring = rfc3339(utcnow()) + "_etcd"
    log(f"recurring snapshot {recurring}")
    take_snapshots(cluster, etcdctl, recurring, state_text, 0o644)

    elapsed = time.monotonic() - t0
    log(f"done in {elapsed:.1f} s")
    lines = {
        "CLUSTER_YML": yml_path,
        "RKESTATE": state_path,
        "ETCD_NODES": ",".join(n.name for n in etcd_hosts),
        "ETCD_ENDPOINTS": ",".join(f"https://{n.listen_from_host}:2379" for n in etcd_hosts),
        "ONE_TIME_SNAPSHOT": one_time,
        "RECURRING_SNAPSHOT": recurring,
        "SNAPSHOT_DIR": SNAPSHOT_DIR,
        "S3_SNAPSHOT_KEY": s3_key,
        "KUBE_CA": os.path.join(certs_dir, "kube-ca.pem"),
        "KUBE_NODE_CERT": os.path.join(certs_dir, "kube-node.pem"),
        "KUBE_NODE_KEY": os.path.join(certs_dir, "kube-node-key.pem"),
    }
    if bundle["kube-admin"]["config"]:
        lines["KUBECONFIG"] = kubeconfig_path
    for k, v in lines.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main(sys.argv[1:])
