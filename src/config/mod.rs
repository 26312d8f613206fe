//! cluster.yml: reading RKE's file unchanged, applying the reference's defaults, and
//! refusing what cannot work with a diagnostic that points at the line.
//!
//! Flow: serde_yaml parses the text into a document, whose merge keys (`<<: *anchor`) are
//! applied as RKE's YAML decoder applies them ([`merge`]); the document is then
//! deserialised into [`raw::RawConfig`] (RKE's field names, everything optional). serde_yaml's
//! own errors carry a location. Keys that neither RKE nor rkectl reads are named, with the
//! key probably meant ([`known_keys`]): warnings, or problems with [`Options::strict`]. The
//! raw config is then validated into a typed [`Cluster`]; each problem found is located
//! through a [`spans::SpanIndex`] built from the same text. All problems are reported at
//! once, so a user fixes the file in one pass. Nothing here touches the network.
//!
//! Reading the text is `read`'s job; pointing a problem at its place in it, `locate`'s.

pub mod duration;
pub mod known_keys;
pub mod lenient;
mod locate;
pub mod merge;
pub mod model;
pub mod raw;
mod read;
pub mod redact;
pub mod registries;
pub mod spans;
mod ssh_access;

pub use duration::GoDuration;
pub use model::*;
pub use ssh_access::is_openssh_cert;

use crate::secret::Secret;
use lenient::ScalarString;
use locate::{Locator, char_span};
use miette::{Diagnostic, NamedSource, SourceSpan};
use raw::{RawBackupConfig, RawConfig, RawNode, RawS3};
use read::{read_raw, unknown_key};
use spans::SpanIndex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One thing wrong with cluster.yml, located in the file.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ConfigProblem {
    /// What is wrong.
    pub message: String,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    /// Text under the pointer.
    pub label: String,
    #[help]
    pub help: Option<String>,
    /// 1-based line of the problem, when it has a place in the file.
    pub line: Option<usize>,
    /// 1-based column of the problem.
    pub column: Option<usize>,
}

/// cluster.yml could not be used.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read cluster configuration {}: {source}", path.display())]
    #[diagnostic(
        code(rkectl::config::read),
        help("pass the file with --config or set RKE_CONFIG; the default is ./cluster.yml")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid cluster configuration.
    #[error("{file} is not a valid cluster configuration ({} problem{})", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(rkectl::config::invalid))]
    Invalid {
        file: String,
        #[source_code]
        src: NamedSource<String>,
        #[related]
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// The problems found, for tests and `--json`.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A valid cluster.yml with what is needed to point at it later.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The cluster, defaults applied.
    pub cluster: Cluster,
    /// Path of cluster.yml.
    pub path: PathBuf,
    /// The text, for diagnostics about it raised later (e.g. an unreadable `ssh_key_path`).
    pub source: String,
    /// BLAKE3 of the text: a saved plan is pinned to it.
    pub hash: String,
    /// Things that are valid but probably not what the user meant, located in the file.
    pub warnings: Vec<ConfigProblem>,
    spans: SpanIndex,
}

impl LoadedConfig {
    /// A diagnostic about the value at `path` (e.g. `nodes[2].ssh_key_path`), raised after
    /// loading, for checks that need I/O.
    pub fn problem_at(&self, path: &str, message: String, label: &str, help: Option<String>) -> ConfigError {
        let located = Locator { source: &self.source, spans: &self.spans };
        ConfigError::Invalid {
            file: file_name(&self.path),
            src: NamedSource::new(file_name(&self.path), redact::for_display(&self.source)),
            problems: vec![located.at(path, message, label, help)],
        }
    }

    /// The directory cluster.yml is in: state, journal and lock files live next to it.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// cluster.yml's file name without extension (`cluster` for `cluster.yml`).
    pub fn stem(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "cluster".to_string())
    }
}

/// A lone CR (old Mac line ends) breaks a line for YAML and miette but not for our span
/// index; as LF it is the same break for all three, at the same byte offsets.
fn lone_cr_as_lf(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    let mut bytes = text.into_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n') {
            bytes[i] = b'\n';
        }
    }
    String::from_utf8(bytes).expect("CR and LF are ASCII: the text stays UTF-8")
}

fn file_name(p: &Path) -> String {
    p.display().to_string()
}

/// How cluster.yml is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Refuse keys that neither RKE nor rkectl reads (by default they are warnings).
    pub strict: bool,
}

/// Reads and validates cluster.yml at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, Options::default())
}

/// Reads and validates cluster.yml at `path`, as `options` say.
pub fn load_with(path: &Path, options: Options) -> Result<LoadedConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_with(path, text, options)
}

/// Validates cluster.yml given as text; `path` names it in diagnostics and places state.
pub fn parse(path: &Path, text: String) -> Result<LoadedConfig, ConfigError> {
    parse_with(path, text, Options::default())
}

/// Validates cluster.yml given as text, as `options` say.
pub fn parse_with(path: &Path, text: String, options: Options) -> Result<LoadedConfig, ConfigError> {
    let name = file_name(path);
    let text = lone_cr_as_lf(text);
    let invalid = |problems: Vec<ConfigProblem>, text: &str| ConfigError::Invalid {
        file: name.clone(),
        src: NamedSource::new(name.clone(), redact::for_display(text)),
        problems,
    };
    let spans = match SpanIndex::build(&text) {
        Ok(s) => s,
        Err(deep) => {
            let empty = SpanIndex::default();
            let locator = Locator { source: &text, spans: &empty };
            let p = locator.make(
                Some(char_span(&text, deep.offset)),
                format!("cluster.yml nests deeper than {} levels", spans::MAX_DEPTH),
                "too deep",
                Some("a cluster.yml has a handful of levels; this file is not one".into()),
            );
            return Err(invalid(vec![p], &text));
        }
    };
    let locator = Locator { source: &text, spans: &spans };
    let (raw, unknown) = match read_raw(&text, &locator) {
        Ok(read) => read,
        Err(p) => return Err(invalid(vec![*p], &text)),
    };
    let unknown: Vec<ConfigProblem> = unknown.iter().map(|u| unknown_key(&locator, u)).collect();
    let mut v = Validator { loc: &locator, problems: Vec::new(), warnings: Vec::new() };
    let cluster = v.cluster(raw);
    let Validator { problems, mut warnings, .. } = v;
    if options.strict && !unknown.is_empty() {
        // An unknown key is often why something else is missing: it comes first.
        return Err(invalid(unknown.into_iter().chain(problems).collect(), &text));
    }
    if !problems.is_empty() {
        return Err(invalid(problems, &text));
    }
    warnings.extend(unknown);
    let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
    Ok(LoadedConfig {
        cluster: cluster.expect("no problems means a cluster"),
        path: path.to_path_buf(),
        source: text,
        hash,
        warnings,
        spans,
    })
}

struct Validator<'a> {
    loc: &'a Locator<'a>,
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigProblem>,
}

fn s(v: &Option<ScalarString>) -> Option<String> {
    v.as_ref().map(|x| x.0.trim().to_string()).filter(|x| !x.is_empty())
}

impl Validator<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>, label: &str, help: Option<&str>) {
        let p = self.loc.at(path, message.into(), label, help.map(str::to_string));
        self.problems.push(p);
    }

    fn warning(&mut self, path: &str, message: impl Into<String>, label: &str, help: Option<&str>) {
        let p = self.loc.at(path, message.into(), label, help.map(str::to_string));
        self.warnings.push(p);
    }

    fn cluster(&mut self, raw: RawConfig) -> Option<Cluster> {
        let cluster_ssh = self.cluster_ssh(&raw.ssh_key_path, &raw.ssh_cert_path, raw.ssh_agent_auth);
        let raw_nodes = raw.nodes.unwrap_or_default();
        if raw_nodes.is_empty() {
            let p = self.loc.at_key(
                "nodes",
                "cluster.yml lists no nodes".into(),
                "no nodes here",
                Some("add at least one node with the etcd role under `nodes:`".into()),
            );
            self.problems.push(p);
        }
        let mut nodes = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        for (i, rn) in raw_nodes.into_iter().enumerate() {
            if let Some(n) = self.node(i, rn, &cluster_ssh) {
                if let Some(first) = seen.insert(n.address.0.clone(), i) {
                    self.problem(
                        &format!("nodes[{i}].address"),
                        format!("duplicate node address {} (also nodes[{first}])", n.address),
                        "duplicate address",
                        Some("every node must have its own address; remove or change one of them"),
                    );
                }
                // RKE compares hostnames after lower-casing them (its defaults do), across
                // every node: two of them would be the same Kubernetes node and etcd member.
                if let Some(first) = seen_names.insert(n.hostname().to_string(), i) {
                    self.problem(
                        &format!("nodes[{i}]"),
                        format!(
                            "duplicate node name {} (also nodes[{first}]); as an etcd member it would be etcd-{}",
                            n.hostname(),
                            n.hostname()
                        ),
                        "duplicate node name",
                        Some("RKE refuses it too: give each node its own hostname_override"),
                    );
                }
                nodes.push(n);
            }
        }
        if !nodes.is_empty() && !nodes.iter().any(|n| n.has_role(Role::Etcd)) {
            let p = self.loc.at_key(
                "nodes",
                "no node has the etcd role".into(),
                "no etcd node among these",
                Some("add `etcd` to the `role:` list of at least one node".into()),
            );
            self.problems.push(p);
        }
        let services = raw.services.unwrap_or_default();
        let etcd_raw = services.etcd.unwrap_or_default();
        let bastion = raw.bastion_host.and_then(|b| self.bastion(b, &cluster_ssh));
        let auths: Vec<&SshAuth> = nodes.iter().map(|n| &n.ssh).chain(bastion.iter().map(|b| &b.ssh)).collect();
        self.unused_cluster_cert(&cluster_ssh, &auths);
        let registries = self.registries(raw.private_registries.unwrap_or_default());
        let images = raw.system_images.unwrap_or_default();
        // RKE takes the etcd image from system_images and overwrites services.etcd.image; a
        // default registry goes in front of the default image only.
        let image = s(&images.etcd)
            .unwrap_or_else(|| registries::with_default_registry(DEFAULT_ETCD_IMAGE, registries.default_url()));
        self.registry_for_pulls(&registries, &image);
        if let Some(ignored) = s(&etcd_raw.image).filter(|i| i != &image) {
            self.warning(
                "services.etcd.image",
                format!("services.etcd.image `{ignored}` is ignored, as RKE ignores it: etcd runs {image}"),
                "ignored",
                Some("set the image under system_images.etcd"),
            );
        }
        let kube_api = services.kube_api.unwrap_or_default();
        let kubernetes_service_ips = self.service_ips(&kube_api.service_cluster_ip_range);
        let cluster_domain = s(&services.kubelet.unwrap_or_default().cluster_domain)
            .unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_string());
        if s(&images.rkectl_tools).is_some() {
            self.warning(
                "system_images.rkectl_tools",
                "system_images.rkectl_tools is ignored: rkectl needs no image of its own any more",
                "ignored",
                Some("helpers run in the etcd image, with rkectl's binary copied to the nodes; remove the line"),
            );
        }
        let extra_args: BTreeMap<String, String> =
            etcd_raw.extra_args.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let extra_binds = etcd_raw.extra_binds.unwrap_or_default().into_iter().map(|v| v.0).collect();
        let extra_env = etcd_raw.extra_env.unwrap_or_default().into_iter().map(|v| v.0).collect();

        let legacy_on = etcd_raw.snapshot.map(|b| b.0).unwrap_or(false);
        let creation = self.duration("services.etcd.creation", &etcd_raw.creation, DEFAULT_CREATION);
        let retention = self.duration("services.etcd.retention", &etcd_raw.retention, DEFAULT_RETENTION);
        let (recurring, s3) = match etcd_raw.backup_config {
            Some(bc) => self.backup_config(bc, legacy_on, creation, retention),
            None if legacy_on => (RecurringSnapshots::Legacy { creation: creation?, retention: retention? }, None),
            None => (RecurringSnapshots::Disabled, None),
        };
        if !self.problems.is_empty() {
            return None;
        }
        Some(Cluster {
            name: s(&raw.cluster_name).unwrap_or_else(|| "local".to_string()),
            nodes,
            ignore_docker_version: raw.ignore_docker_version.map(|b| b.0).unwrap_or(false),
            etcd: EtcdService { image, extra_args, extra_binds, extra_env, recurring, s3 },
            kubernetes_version: s(&raw.kubernetes_version),
            kubernetes_service_ips: kubernetes_service_ips?,
            cluster_domain,
            bastion,
            registries,
        })
    }

    fn duration(&mut self, path: &str, raw: &Option<ScalarString>, default: Duration) -> Option<GoDuration> {
        let Some(text) = s(raw) else {
            return Some(GoDuration(default));
        };
        match GoDuration::parse(&text) {
            Ok(d) if d.0.is_zero() => {
                self.problem(
                    path,
                    format!("{} must be longer than zero", last(path)),
                    "zero duration",
                    Some("write a duration like `5m0s` or `24h`"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    path,
                    format!("invalid {}: {e}", last(path)),
                    "not a duration",
                    Some("Go-style durations: `5m0s`, `24h`, `1h30m`"),
                );
                None
            }
        }
    }

    /// The first address of each range of `service_cluster_ip_range` (RKE's
    /// `GetKubernetesServiceIP`: the network address plus one).
    fn service_ips(&mut self, raw: &Option<ScalarString>) -> Option<Vec<std::net::IpAddr>> {
        let text = s(raw).unwrap_or_else(|| DEFAULT_SERVICE_CLUSTER_IP_RANGE.to_string());
        let mut out = Vec::new();
        for range in text.split(',').map(str::trim) {
            match first_service_ip(range) {
                Some(ip) => out.push(ip),
                None => {
                    self.problem(
                        "services.kube-api.service_cluster_ip_range",
                        format!("`{range}` is not a CIDR range"),
                        "not a CIDR",
                        Some("write it as RKE does, e.g. 10.43.0.0/16"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn backup_config(
        &mut self,
        bc: RawBackupConfig,
        legacy_on: bool,
        creation: Option<GoDuration>,
        retention: Option<GoDuration>,
    ) -> (RecurringSnapshots, Option<S3Settings>) {
        let base = "services.etcd.backup_config";
        let s3 = bc.s3backupconfig.and_then(|raw| self.s3(&format!("{base}.s3backupconfig"), raw));
        let enabled = bc.enabled.map(|b| b.0).unwrap_or(true);
        let interval = self.positive_count(
            &format!("{base}.interval_hours"),
            bc.interval_hours.map(|i| i.0),
            DEFAULT_INTERVAL_HOURS,
            "interval_hours",
            "hours between snapshots",
        );
        let count = self.positive_count(
            &format!("{base}.retention"),
            bc.retention.map(|i| i.0),
            DEFAULT_RETENTION_COUNT,
            "retention",
            "number of snapshots to keep",
        );
        if let Some(t) = bc.timeout
            && t.0 <= 0
        {
            self.problem(
                &format!("{base}.timeout"),
                "backup_config.timeout must be a positive number of seconds",
                "not positive",
                None,
            );
        }
        if !enabled {
            // RKE then applies no defaults and starts the service with a zero interval, which
            // exits at once: no recurring snapshots, whatever the legacy settings say.
            if legacy_on {
                self.warning(
                    &format!("{base}.enabled"),
                    "backup_config.enabled is false, so no recurring snapshots are taken, as with RKE (services.etcd.snapshot: true does not bring them back)",
                    "recurring snapshots off",
                    Some("remove `enabled: false` to take snapshots"),
                );
            }
            return (RecurringSnapshots::Disabled, s3);
        }
        let (Some(interval_hours), Some(retention_count)) = (interval, count) else {
            return (RecurringSnapshots::Disabled, s3);
        };
        let overrides_legacy = match (legacy_on, creation, retention) {
            (true, Some(c), Some(r)) => Some((c, r)),
            _ => None,
        };
        let drill = bc.rkectl_drill.is_some_and(|b| b.0);
        if bc.rkectl_drill.is_some() {
            self.warning(
                &format!("{base}.rkectl_drill"),
                "rkectl_drill is rkectl's own setting: RKE ignores it, and its own etcd-rolling-snapshots does not drill (rkectl replaces that service when this is true)",
                "rkectl only",
                Some("with `true`, each recurring snapshot is restored in scratch space and read right after it is taken; a failure is an error line in the service's log"),
            );
        }
        (RecurringSnapshots::BackupConfig { interval_hours, retention: retention_count, overrides_legacy, drill }, s3)
    }

    fn positive_count(&mut self, path: &str, value: Option<i64>, default: u32, name: &str, what: &str) -> Option<u32> {
        match value {
            None => Some(default),
            Some(v) if v >= 1 && v <= i64::from(u32::MAX) => Some(v as u32),
            Some(v) => {
                let (message, label) = if v < 1 {
                    (format!("{name} must be at least 1, not {v}"), "must be a positive whole number")
                } else {
                    (format!("{name} must be between 1 and {}, not {v}", u32::MAX), "too large")
                };
                self.problem(path, message, label, Some(&format!("{name} is the {what}")));
                None
            }
        }
    }

    fn s3(&mut self, base: &str, raw: RawS3) -> Option<S3Settings> {
        let bucket = s(&raw.bucket_name);
        if bucket.is_none() {
            self.problem(
                base,
                "s3backupconfig has no bucket_name",
                "bucket_name missing",
                Some("add `bucket_name: <bucket>` to s3backupconfig"),
            );
        }
        let endpoint = s(&raw.endpoint);
        if endpoint.is_none() {
            self.problem(
                base,
                "s3backupconfig has no endpoint",
                "endpoint missing",
                Some("RKE refuses it too: add `endpoint: s3.amazonaws.com` (or your S3 server)"),
            );
        }
        let endpoint = endpoint.unwrap_or_default();
        if let Some(ca) = s(&raw.custom_ca)
            && !is_pem_certificate(&ca)
        {
            self.problem(
                &format!("{base}.custom_ca"),
                "custom_ca is not a PEM certificate",
                "not a certificate",
                Some("RKE refuses it too: paste the CA certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----"),
            );
        }
        if endpoint.contains(char::is_whitespace) {
            self.problem(
                &format!("{base}.endpoint"),
                format!("S3 endpoint `{endpoint}` contains spaces"),
                "bad endpoint",
                None,
            );
        }
        Some(S3Settings {
            endpoint,
            bucket: bucket?,
            region: s(&raw.region),
            folder: s(&raw.folder),
            custom_ca: s(&raw.custom_ca),
            access_key: Secret::new(s(&raw.access_key).unwrap_or_default()),
            secret_key: Secret::new(s(&raw.secret_key).unwrap_or_default()),
            session_token: None,
        })
    }

    fn node(&mut self, i: usize, rn: RawNode, cluster_ssh: &ssh_access::ClusterSsh) -> Option<Node> {
        let base = format!("nodes[{i}]");
        let address = s(&rn.address);
        if address.is_none() {
            self.problem(
                &base,
                format!("node {} has no address", i + 1),
                "address missing",
                Some("every node needs `address:` (an IP or a resolvable name)"),
            );
        }
        if let Some(a) = &address
            && let Err(why) = host_address(a)
        {
            // It is what ssh dials (a leading `-` would be read as an option) and, without
            // internal_address, what etcd's flags name.
            self.problem(
                &format!("{base}.address"),
                format!("`{a}` is not a host address: {why}"),
                "bad address",
                Some(HOST_ADDRESS_HELP),
            );
        }
        let port = self.ssh_port(&format!("{base}.port"), &rn.port);
        let user = s(&rn.user);
        if let Some(u) = &user
            && let Err(why) = ssh_user(u)
        {
            self.problem(
                &format!("{base}.user"),
                format!("user `{u}` cannot be given to ssh: {why}"),
                "bad user",
                Some("the SSH user name of the node, as `ssh -l` takes it: no spaces, no shell metacharacters, no leading `-`"),
            );
        }
        if user.is_none() {
            self.problem(
                &base,
                format!("node {} has no user", address.as_deref().unwrap_or("?")),
                "user missing",
                Some("add `user:` with the SSH user for this node"),
            );
        }
        let mut roles = Vec::new();
        let raw_roles = rn.role.unwrap_or_default();
        if raw_roles.is_empty() {
            self.problem(
                &base,
                format!("node {} has no role", address.as_deref().unwrap_or("?")),
                "role missing",
                Some("add `role: [etcd]` (or controlplane, worker)"),
            );
        }
        for (j, r) in raw_roles.iter().enumerate() {
            match Role::parse(r.0.trim()) {
                Some(role) if !roles.contains(&role) => roles.push(role),
                Some(_) => {}
                None => self.problem(
                    &format!("{base}.role[{j}]"),
                    format!("unknown role `{}`", r.0),
                    "unknown role",
                    Some("roles are etcd, controlplane and worker"),
                ),
            }
        }
        let docker_socket = s(&rn.docker_socket).unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string());
        if !docker_socket.starts_with('/') {
            self.problem(
                &format!("{base}.docker_socket"),
                format!("docker_socket `{docker_socket}` is not an absolute path"),
                "not absolute",
                Some("the default is /var/run/docker.sock"),
            );
        }
        let own = ssh_access::OwnSsh {
            key: &rn.ssh_key,
            key_path: &rn.ssh_key_path,
            cert: &rn.ssh_cert,
            cert_path: &rn.ssh_cert_path,
            agent: rn.ssh_agent_auth,
        };
        let ssh = self.ssh_auth(&base, own, cluster_ssh);
        let hostname_override = s(&rn.hostname_override);
        // RKE defaults the name to the address and lower-cases it, then requires a DNS-1123
        // subdomain: it becomes the Kubernetes node name and the etcd member `etcd-<name>`.
        let hostname = hostname_override.clone().or_else(|| address.clone()).map(|h| h.to_lowercase());
        if let Some(h) = &hostname
            && let Err(why) = dns1123_subdomain(h)
        {
            let (at, what) = if hostname_override.is_some() {
                (format!("{base}.hostname_override"), "hostname_override")
            } else {
                (format!("{base}.address"), "the address (used as the node name without hostname_override)")
            };
            self.problem(
                &at,
                format!("node name `{h}` is not a valid DNS-1123 subdomain: {why}"),
                "not a valid node name",
                Some(&format!(
                    "RKE refuses it too: {what} must be lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit"
                )),
            );
        }
        let internal_address = s(&rn.internal_address);
        if let Some(a) = &internal_address
            && let Err(why) = host_address(a)
        {
            // It is spliced into etcd's `--initial-cluster` list: a `,` or `=` would add members.
            self.problem(
                &format!("{base}.internal_address"),
                format!("`{a}` is not a host address: {why}"),
                "bad address",
                Some(HOST_ADDRESS_HELP),
            );
        }
        Some(Node {
            index: i,
            address: HostAddr(address?),
            port: port?,
            user: user?,
            roles,
            hostname_override,
            hostname: hostname?,
            internal_address,
            ssh,
            docker_socket,
        })
    }
}

/// The network address of `cidr` plus one.
fn first_service_ip(cidr: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (addr, bits) = cidr.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            Some(IpAddr::V4(Ipv4Addr::from((u32::from(a) & mask).wrapping_add(1))))
        }
        IpAddr::V6(a) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            Some(IpAddr::V6(Ipv6Addr::from((u128::from(a) & mask).wrapping_add(1))))
        }
        _ => None,
    }
}

const HOST_ADDRESS_HELP: &str = "an IP address, or a host name of letters, digits, `-`, `_` and `.`";

/// Why `a` is not an IP address or a host name, if it is not. Addresses become ssh's
/// destination and parts of etcd's flags (`--initial-cluster=etcd-a=https://ADDR:2380,…`),
/// so anything else could add an option or a member.
fn host_address(a: &str) -> Result<(), &'static str> {
    if a.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if a.len() > 253 {
        return Err("a host name is at most 253 characters long");
    }
    if a.starts_with(['-', '.']) {
        return Err("it starts with `-` or `.`");
    }
    match a.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
        Some(c) if c.is_whitespace() || c.is_control() => Err("it holds a space or a control character"),
        Some(_) => Err("it is not an IP address, and a host name holds only letters, digits, `-`, `_` and `.`"),
        None => Ok(()),
    }
}

/// Why `u` cannot be handed to ssh as a user name, if it cannot: ssh would take a leading
/// `-` for an option, and OpenSSH (9.6 on) refuses shell metacharacters in user names.
fn ssh_user(u: &str) -> Result<(), &'static str> {
    if u.starts_with('-') {
        return Err("it starts with `-`");
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds a space or a control character");
    }
    if u.contains(['\'', '`', '"', ';', '&', '<', '>', '|', '(', ')', '{', '}', '$', '\\']) {
        return Err("it holds a shell metacharacter");
    }
    Ok(())
}

/// Why `name` is not a DNS-1123 subdomain (Kubernetes' rule for node names), if it is not.
fn dns1123_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("it must be 1 to 253 characters long");
    }
    for label in name.split('.') {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !label.chars().all(ok_char) {
            return Err("it may hold only lower-case letters, digits, `-` and `.`");
        }
        if !alnum(label.chars().next()) || !alnum(label.chars().last()) {
            return Err("each part must start and end with a letter or digit");
        }
    }
    Ok(())
}

/// Whether `text` holds a PEM certificate that parses.
fn is_pem_certificate(text: &str) -> bool {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .next()
        .and_then(Result::ok)
        .is_some_and(|p| p.label == "CERTIFICATE" && p.parse_x509().is_ok())
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Expands a leading `~/` the way RKE does for `ssh_key_path`.
pub fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => PathBuf::from(p),
        },
        None => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";

    fn parse_text(text: &str, strict: bool) -> Result<LoadedConfig, ConfigError> {
        parse_with(Path::new("cluster.yml"), text.to_string(), Options { strict })
    }

    #[test]
    fn rkectls_own_drill_key_is_read_and_said_to_be_rkectls_at_its_line_even_under_strict() {
        let text =
            format!("{NODE}services:\n  etcd:\n    backup_config:\n      retention: 4\n      rkectl_drill: true\n");
        let cfg = parse_text(&text, true).unwrap();
        assert!(
            matches!(cfg.cluster.etcd.recurring, RecurringSnapshots::BackupConfig { retention: 4, drill: true, .. }),
            "{:?}",
            cfg.cluster.etcd.recurring
        );
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.starts_with("rkectl_drill is rkectl's own setting: RKE ignores it"), "{}", w.message);
        assert_eq!(w.line, Some(9));
        let plain = format!("{NODE}services:\n  etcd:\n    backup_config:\n      retention: 4\n");
        let cfg = parse_text(&plain, true).unwrap();
        assert!(matches!(cfg.cluster.etcd.recurring, RecurringSnapshots::BackupConfig { drill: false, .. }));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn strict_refuses_unknown_keys_first_and_still_reports_the_rest() {
        let text = "nodes:\n  - adress: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        let lenient = parse_text(text, false).unwrap_err();
        assert_eq!(lenient.problems().len(), 1, "without --strict only the missing address");
        let err = parse_text(text, true).unwrap_err();
        let p = err.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].message, "unknown key `adress` in nodes[0]: rkectl and RKE ignore it");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `address`?"));
        assert_eq!((p[0].line, p[0].column), (Some(2), Some(5)));
        assert_eq!(p[1].message, "node 1 has no address");
        // A file without unknown keys is the same with or without --strict.
        assert!(parse_text(NODE, true).unwrap().warnings.is_empty());
    }
}
