//! Naming the keys of a document that RKE does not know, and the key probably meant.

use super::{Key, ROOT, Shape};
use crate::config::yaml::{Mapping, Value};

/// A key of the document that neither RKE nor rkectl reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Where the key is, as [`crate::config::spans::SpanIndex`] names it:
    /// `services.etcd.backup_config.s3_backup_config`, `nodes[1].usr`.
    pub path: String,
    /// Where the mapping holding it is (empty at the top level).
    pub parent: String,
    /// The key as written.
    pub key: String,
    /// The known key closest to it at that place, when one is close enough to be a typo.
    pub suggestion: Option<&'static str>,
    /// Every key RKE knows at that place.
    pub known: Vec<&'static str>,
}

/// Every key of `doc` (merge keys already applied) that RKE does not know, in document order.
pub fn unknown_keys(doc: &Value) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    walk(doc, ROOT, "", &mut out);
    out
}

fn walk(v: &Value, shape: Shape, path: &str, out: &mut Vec<UnknownKey>) {
    match (shape, untagged(v)) {
        (Shape::Struct(keys), Value::Mapping(m)) => walk_struct(m, keys, path, out),
        (Shape::List(keys), Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Value::Mapping(m) = untagged(item) {
                    walk_struct(m, keys, &format!("{path}[{i}]"), out);
                }
            }
        }
        (Shape::Map(keys), Value::Mapping(m)) => {
            for (k, item) in m {
                if let Value::Mapping(inner) = untagged(item) {
                    walk_struct(inner, keys, &join(path, &key_text(k)), out);
                }
            }
        }
        // Free-form, scalars, and values of the wrong type (RKE refuses those itself).
        _ => {}
    }
}

fn walk_struct(m: &Mapping, keys: &'static [Key], path: &str, out: &mut Vec<UnknownKey>) {
    for (k, v) in m {
        let name = key_text(k);
        let here = join(path, &name);
        match keys.iter().find(|key| key.name == name) {
            Some(key) => walk(v, key.shape, &here, out),
            None => out.push(UnknownKey {
                path: here,
                parent: path.to_string(),
                suggestion: suggest(&name, keys),
                known: keys.iter().map(|k| k.name).collect(),
                key: name,
            }),
        }
    }
}

fn untagged(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untagged(&t.value),
        v => v,
    }
}

/// A mapping key as text, as the span index names it (keys are strings in cluster.yml;
/// other scalars are written out, anything else is a placeholder).
pub fn key_text(k: &Value) -> String {
    match untagged(k) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Sequence(_) => "[…]".to_string(),
        Value::Mapping(_) => "{…}".to_string(),
        Value::Tagged(_) => unreachable!("untagged"),
    }
}

/// `path.key`, or `key` at the top level.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The known key most like `key`, if it is like enough to be what was meant: the same
/// letters once case, `_` and `-` are set aside, a few letters off (Damerau-Levenshtein,
/// normalised to the length), or a start of it (`bucket` for `bucket_name`).
pub fn suggest(key: &str, known: &[Key]) -> Option<&'static str> {
    fn norm(s: &str) -> String {
        s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
    }
    let typed = norm(key);
    let mut best: Option<(f64, &'static str)> = None;
    for k in known {
        let candidate = norm(k.name);
        let mut score = strsim::normalized_damerau_levenshtein(&typed, &candidate);
        let shorter = typed.chars().count().min(candidate.chars().count());
        if shorter >= 4 && (candidate.starts_with(&typed) || typed.starts_with(&candidate)) {
            score = score.max(SIMILAR);
        }
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, k.name));
        }
    }
    best.filter(|(score, _)| *score >= SIMILAR).map(|(_, name)| name)
}

/// How alike (1 is the same) two keys must be for one to be suggested for the other.
const SIMILAR: f64 = 0.7;

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(yaml: &str) -> Vec<(String, Option<&'static str>)> {
        let doc: Value = crate::config::yaml::from_str(yaml).unwrap();
        unknown_keys(&doc).into_iter().map(|u| (u.path, u.suggestion)).collect()
    }

    #[test]
    fn a_misspelled_s3backupconfig_is_named_with_the_key_meant() {
        let found = unknown(
            "services:\n  etcd:\n    backup_config:\n      interval_hours: 6\n      s3_backup_config:\n        bucket_name: b\n",
        );
        assert_eq!(found, [("services.etcd.backup_config.s3_backup_config".to_string(), Some("s3backupconfig"))]);
    }

    #[test]
    fn a_typo_in_a_node_is_named_with_its_index() {
        let found = unknown(
            "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n  - address: 10.0.0.2\n    usr: root\n    role: [etcd]\n    ssh_keypath: /k\n",
        );
        assert_eq!(
            found,
            [("nodes[1].usr".to_string(), Some("user")), ("nodes[1].ssh_keypath".to_string(), Some("ssh_key_path"))]
        );
    }

    #[test]
    fn keys_under_free_form_maps_are_the_users_own() {
        let found = unknown(
            "nodes:\n  - address: a\n    labels: {anything: goes, s3_backup_config: x}\nservices:\n  etcd:\n    extra_args: {listen-metrics-urls: x}\n  kube-api:\n    admission_configuration: {apiVersion: v1, plugins: [{name: x, configuration: {whatever: 1}}]}\n    audit_log:\n      configuration:\n        policy: {rules: [{level: Metadata}]}\nnetwork:\n  update_strategy: {rollingUpdate: {maxUnavailable: 6}}\n",
        );
        assert_eq!(found, []);
    }

    #[test]
    fn maps_of_structs_check_the_keys_of_each_entry() {
        let found = unknown(
            "cloud_provider:\n  vsphereCloudProvider:\n    virtual_center:\n      vc1.example: {user: u, pasword: p}\n",
        );
        assert_eq!(
            found,
            [("cloud_provider.vsphereCloudProvider.virtual_center.vc1.example.pasword".to_string(), Some("password"))]
        );
    }

    #[test]
    fn every_part_of_the_full_example_is_known() {
        let text = include_str!("../../../examples/rke-cluster-full.yml");
        assert_eq!(unknown(text), []);
    }

    #[test]
    fn tolerations_are_read_by_their_lower_cased_field_names() {
        // yaml.v2 knows Kubernetes' Toleration by its Go field names, lower-cased: RKE drops
        // the JSON spelling `tolerationSeconds`.
        let found = unknown("network:\n  tolerations:\n    - {key: k, operator: Exists, tolerationSeconds: 300}\n");
        assert_eq!(found, [("network.tolerations[0].tolerationSeconds".to_string(), Some("tolerationseconds"))]);
    }

    #[test]
    fn suggestions_are_made_only_for_near_misses() {
        let top = match ROOT {
            Shape::Struct(keys) => keys,
            _ => unreachable!(),
        };
        assert_eq!(suggest("cluster-name", top), Some("cluster_name"));
        assert_eq!(suggest("Nodes", top), Some("nodes"));
        assert_eq!(suggest("sytem_images", top), Some("system_images"));
        assert_eq!(suggest("former_nodes", top), None);
        assert_eq!(suggest("x", top), None);
        assert_eq!(suggest("", top), None);
    }
}
