//! `nodes`: each host, its SSH access, roles and taints.

use super::Shape::*;
use super::{Key, k};

/// `RKEConfigNode`.
pub(super) const RKE_CONFIG_NODE: &[Key] = &[
    k("nodeName", Value),
    k("address", Value),
    k("port", Value),
    k("internal_address", Value),
    k("role", Value),
    k("hostname_override", Value),
    k("user", Value),
    k("docker_socket", Value),
    k("ssh_agent_auth", Value),
    k("ssh_key", Value),
    k("ssh_key_path", Value),
    k("ssh_cert", Value),
    k("ssh_cert_path", Value),
    k("labels", Free),
    k("taints", List(RKE_TAINT)),
];

/// `RKETaint`.
pub(super) const RKE_TAINT: &[Key] = &[k("key", Value), k("value", Value), k("effect", Value), k("timeAdded", Value)];
