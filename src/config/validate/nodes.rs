//! `nodes:`: each entry's address, SSH user and port, roles, docker socket and the node name
//! RKE derives from it, and no two nodes the same host or the same name.

use super::{Validator, s};
use crate::config::lenient::ScalarString;
use crate::config::model::{DEFAULT_DOCKER_SOCKET, HostAddr, Node, Role};
use crate::config::raw::RawNode;
use crate::config::ssh_access;
use std::collections::HashMap;

impl Validator<'_> {
    /// `nodes:`, each entry that can be used, none the same host or name as another.
    pub(super) fn nodes(&mut self, raw_nodes: Vec<RawNode>, cluster_ssh: &ssh_access::ClusterSsh) -> Vec<Node> {
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
            if let Some(n) = self.node(i, rn, cluster_ssh) {
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
        nodes
    }

    /// The `i`th entry of `nodes:`; `None` when it cannot be used (its problems are recorded).
    fn node(&mut self, i: usize, rn: RawNode, cluster_ssh: &ssh_access::ClusterSsh) -> Option<Node> {
        let base = format!("nodes[{i}]");
        let address = self.node_address(&base, i, &rn.address);
        let port = self.ssh_port(&format!("{base}.port"), &rn.port);
        let user = self.node_user(&base, &address, &rn.user);
        let roles = self.node_roles(&base, &address, rn.role.unwrap_or_default());
        let docker_socket = self.docker_socket(&base, &rn.docker_socket);
        let own = ssh_access::OwnSsh {
            key: &rn.ssh_key,
            key_path: &rn.ssh_key_path,
            cert: &rn.ssh_cert,
            cert_path: &rn.ssh_cert_path,
            agent: rn.ssh_agent_auth,
        };
        let ssh = self.ssh_auth(&base, own, cluster_ssh);
        let hostname_override = s(&rn.hostname_override);
        let hostname = self.node_name(&base, &hostname_override, &address);
        let internal_address = self.internal_address(&base, &rn.internal_address);
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

    /// `address`, as written even when it is refused: later messages name the node by it.
    fn node_address(&mut self, base: &str, i: usize, raw: &Option<ScalarString>) -> Option<String> {
        let address = s(raw);
        if address.is_none() {
            self.problem(
                base,
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
        address
    }

    /// `user`, as written even when ssh could not take it.
    fn node_user(&mut self, base: &str, address: &Option<String>, raw: &Option<ScalarString>) -> Option<String> {
        let user = s(raw);
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
                base,
                format!("node {} has no user", address.as_deref().unwrap_or("?")),
                "user missing",
                Some("add `user:` with the SSH user for this node"),
            );
        }
        user
    }

    /// `role`, each role once, in the order written.
    fn node_roles(&mut self, base: &str, address: &Option<String>, raw_roles: Vec<ScalarString>) -> Vec<Role> {
        let mut roles = Vec::new();
        if raw_roles.is_empty() {
            self.problem(
                base,
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
        roles
    }

    /// `docker_socket`, RKE's default when not written.
    fn docker_socket(&mut self, base: &str, raw: &Option<ScalarString>) -> String {
        let docker_socket = s(raw).unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string());
        if !docker_socket.starts_with('/') {
            self.problem(
                &format!("{base}.docker_socket"),
                format!("docker_socket `{docker_socket}` is not an absolute path"),
                "not absolute",
                Some("the default is /var/run/docker.sock"),
            );
        }
        docker_socket
    }

    /// The node name: `hostname_override`, else the address, lower-cased.
    fn node_name(
        &mut self,
        base: &str,
        hostname_override: &Option<String>,
        address: &Option<String>,
    ) -> Option<String> {
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
        hostname
    }

    /// `internal_address`, as written even when it is refused.
    fn internal_address(&mut self, base: &str, raw: &Option<ScalarString>) -> Option<String> {
        let internal_address = s(raw);
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
        internal_address
    }
}

const HOST_ADDRESS_HELP: &str = "an IPv4 address, or a host name of letters, digits, `-`, `_` and `.`";

/// Why `a` is not an IP address or a host name, if it is not. Addresses become ssh's
/// destination and parts of etcd's flags (`--initial-cluster=etcd-a=https://ADDR:2380,…`),
/// so anything else could add an option or a member.
fn host_address(a: &str) -> Result<(), &'static str> {
    match a.parse::<std::net::IpAddr>() {
        // Refused until every URL, flag and socket address rkectl builds brackets it: spliced
        // as it is, `https://fd00::1:2379` names another host and port.
        Ok(std::net::IpAddr::V6(_)) => {
            return Err(
                "rkectl does not support IPv6 node addresses yet (etcd's URLs and the host-to-host copies take IPv4 addresses and host names); give the node's IPv4 address or a host name that resolves to it",
            );
        }
        Ok(std::net::IpAddr::V4(_)) => return Ok(()),
        Err(_) => {}
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
