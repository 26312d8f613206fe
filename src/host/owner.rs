//! Which invocation of rkectl a helper belongs to.
//!
//! Every pool of connections is one invocation (an apply, or a read-only look such as
//! `plan` or `snapshot-list`) with its own [`OwnerId`]. On every node it dials it holds a
//! claim for that id (`rkectl agent hold-lock --owner ID`, see
//! [`crate::agent::node_lock`]) as long as its connection lives, and every helper container
//! it starts carries the id in the [`OWNER_LABEL`]. So a sweep knows whose a helper is and
//! whether its owner is still there, and removes only what a gone owner left.
//!
//! An apply also holds the node's lock, so its helpers keep the reference's names (RKE's
//! `etcd-snapshot-once`, `etcd-restore`, …): no other apply acts on that node meanwhile. A
//! read-only look holds no lock and may run beside an apply, so its helpers are named after
//! its id too ([`Owner::helper`]): two invocations never share a container name, and a
//! read-only look never removes a container it did not start.

use super::ContainerSpec;
use std::fmt;

/// The label on a helper container naming the invocation that started it.
pub const OWNER_LABEL: &str = "io.rkectl.owner";

/// The id of one invocation: 16 lowercase hex digits, safe in a file or container name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(String);

impl OwnerId {
    /// A new, unpredictable id.
    pub fn new() -> OwnerId {
        use std::hash::{BuildHasher, Hasher};
        // std's hasher keys are seeded randomly per process; the pid and the time make two
        // pools of one process differ too.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        OwnerId(format!("{:016x}", h.finish()))
    }

    /// The id written as `s`, if it is one (what a label or a file name on a node says).
    pub fn parse(s: &str) -> Option<OwnerId> {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| OwnerId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for OwnerId {
    fn default() -> Self {
        OwnerId::new()
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One invocation, as the nodes it dials see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: OwnerId,
    /// The record of the node lock it holds on every node it dials (an apply's), if any.
    pub node_lock: Option<String>,
}

impl Owner {
    /// A read-only look: its own id, no node lock.
    pub fn read_only() -> Owner {
        Owner { id: OwnerId::new(), node_lock: None }
    }

    /// Whether it holds the node lock of every node it dials.
    pub fn holds_node_lock(&self) -> bool {
        self.node_lock.is_some()
    }

    /// `spec` labelled as this invocation's, under its reference name: what an apply runs
    /// while it holds the node's lock.
    pub fn label(&self, mut spec: ContainerSpec) -> ContainerSpec {
        spec.labels.insert(OWNER_LABEL.into(), self.id.to_string());
        spec
    }

    /// `spec` as this invocation's helper: labelled, and, when it holds no node lock, named
    /// after its id (its secret files too), so that it never meets another invocation's.
    pub fn helper(&self, spec: ContainerSpec) -> ContainerSpec {
        let mut spec = self.label(spec);
        if !self.holds_node_lock() {
            let own = format!("{}-{}", spec.name, self.id);
            for f in &mut spec.secret_files {
                f.host_path = f.host_path.replace(&format!("/{}-", spec.name), &format!("/{own}-"));
            }
            spec.name = own;
        }
        spec
    }
}

/// The owner a container's labels name, if any.
pub fn owner_of(labels: &std::collections::BTreeMap<String, String>) -> Option<OwnerId> {
    labels.get(OWNER_LABEL).and_then(|v| OwnerId::parse(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_new_each_time_and_read_back() {
        let (a, b) = (OwnerId::new(), OwnerId::new());
        assert_ne!(a, b);
        assert_eq!(OwnerId::parse(a.as_str()), Some(a));
        for bad in ["", "../../etc/passwd", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0"] {
            assert_eq!(OwnerId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_read_only_helper_is_named_after_its_owner_and_an_apply_keeps_the_reference_name() {
        let spec = ContainerSpec::new("etcd-checksum-checker", "etcd");
        let look = Owner::read_only();
        let mine = look.helper(spec.clone());
        assert_eq!(mine.name, format!("etcd-checksum-checker-{}", look.id));
        assert_eq!(owner_of(&mine.labels), Some(look.id.clone()));
        assert_ne!(Owner::read_only().helper(spec.clone()).name, mine.name, "two looks never share a name");
        let apply = Owner { id: OwnerId::new(), node_lock: Some("pid 1".into()) };
        let theirs = apply.helper(spec);
        assert_eq!(theirs.name, "etcd-checksum-checker");
        assert_eq!(owner_of(&theirs.labels), Some(apply.id));
    }
}
