//! Every key RKE's cluster.yml knows, at every depth, and a walker that names the keys of a
//! document that neither RKE nor rkectl reads.
//!
//! RKE reads cluster.yml with gopkg.in/yaml.v2 into its Go type `RancherKubernetesEngineConfig`
//! and silently drops every key it does not know: `s3_backup_config:` (the key is
//! `s3backupconfig`) leaves snapshots on the hosts while the user believes they go to S3.
//! rkectl reads a subset of the same file, so a key unknown to RKE is unknown to rkectl too.
//!
//! The table below mirrors the Go types of rancher/rke v1.6.3 (commit 40c5dd4, 2024-10-04):
//! `types/rke_types.go`, `types/backup_types.go` and `types/update_strategy_types.go`, from
//! `RancherKubernetesEngineConfig` down, one constant per Go struct, named after it. It was
//! derived once from their yaml tags, with yaml.v2's rules:
//!
//! - a field's key is its `yaml:"name"` tag; a tag with no name (`yaml:",omitempty"`), or no
//!   yaml tag at all, gives the field name lower-cased (`S3BackupConfig` → `s3backupconfig`,
//!   `Iface` → `iface`); `yaml:"-"` is no key;
//! - `yaml:",inline"` splices the embedded struct's keys (`BaseService` into every service);
//! - maps with free keys (`extra_args`, `labels`, `node_selector`, `options`…) are
//!   [`Shape::Free`]: keys below them are the user's own;
//! - sections RKE re-reads with Kubernetes' JSON decoders after yaml.v2
//!   (`admission_configuration`, `audit_log.configuration.policy`,
//!   `event_rate_limit.configuration`, `secrets_encryption_config.custom_config`, every
//!   `update_strategy`, `ingress.extra_envs`/`extra_volumes`/`extra_volume_mounts`) are
//!   [`Shape::Free`] too: Kubernetes checks them, with its own spelling rules;
//! - `tolerations` are Kubernetes' `core/v1.Toleration`, which has no yaml tags: yaml.v2
//!   knows its fields by their lower-cased names (`tolerationseconds`), as RKE's own
//!   reference writes them.
//!
//! Two keys are rkectl's own (RKE ignores both, `--strict` refuses neither, and each has its
//! own warning): `system_images.rkectl_tools`, the image older rkectl versions ran their
//! helpers in, no longer used; and `services.etcd.backup_config.rkectl_drill`, a drill of each
//! recurring snapshot.
//!
//! The table is one file per section of cluster.yml (`nodes.rs`, `etcd.rs`, `services.rs`,
//! `network.rs`…), in the order RKE declares its fields; `unknown.rs` walks a document with
//! it.

mod access;
mod addons;
mod cloud_provider;
mod etcd;
mod network;
mod nodes;
mod root;
mod services;
mod system_images;
mod unknown;

pub use unknown::{UnknownKey, join, key_text, suggest, unknown_keys};

/// A key RKE knows, and what its value holds.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as cluster.yml spells it.
    pub name: &'static str,
    /// What is below it.
    pub shape: Shape,
}

/// What a key's value holds, as far as keys go.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A scalar, or a list of scalars: no keys below.
    Value,
    /// Anything: a map whose keys the user chooses, or a Kubernetes object RKE re-reads.
    /// Keys below are not checked.
    Free,
    /// A mapping with these keys (a Go struct).
    Struct(&'static [Key]),
    /// A list of mappings with these keys (a Go slice of structs).
    List(&'static [Key]),
    /// A mapping from names the user chooses to mappings with these keys (a Go map of structs).
    Map(&'static [Key]),
}

impl Shape {
    /// The shape of `key`'s value in a mapping of this shape (`Value` for a key RKE does not
    /// know: nothing below it is read).
    pub fn child(self, key: &str) -> Shape {
        match self {
            Shape::Struct(keys) => keys.iter().find(|k| k.name == key).map_or(Shape::Value, |k| k.shape),
            Shape::Map(keys) => Shape::Struct(keys),
            Shape::Free => Shape::Free,
            Shape::Value | Shape::List(_) => Shape::Value,
        }
    }

    /// The shape of each element of a list of this shape.
    pub fn element(self) -> Shape {
        match self {
            Shape::List(keys) => Shape::Struct(keys),
            Shape::Free => Shape::Free,
            _ => Shape::Value,
        }
    }
}

/// The top level of cluster.yml.
pub const ROOT: Shape = Shape::Struct(root::ROOT_KEYS);

/// A table entry: `k("name", Shape)`.
const fn k(name: &'static str, shape: Shape) -> Key {
    Key { name, shape }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_no_duplicate_key_at_any_place() {
        fn check(keys: &'static [Key], path: &str, count: &mut usize) {
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[..i].iter().any(|o| o.name == k.name), "{path}.{} twice", k.name);
                *count += 1;
                match k.shape {
                    Shape::Struct(sub) | Shape::List(sub) | Shape::Map(sub) => check(sub, &join(path, k.name), count),
                    Shape::Value | Shape::Free => {}
                }
            }
        }
        let mut count = 0;
        check(root::ROOT_KEYS, "", &mut count);
        assert_eq!(count, 558, "keys at every depth, rkectl_tools and rkectl_drill included");
    }
}
