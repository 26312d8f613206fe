//! YAML merge keys (`<<: *anchor`) applied as RKE's YAML decoder, gopkg.in/yaml.v2, applies
//! them, on the document [`super::yaml`] parsed (it does not apply them itself).
//!
//! yaml.v2 decodes a mapping onto its target key by key, in document order. `<<` decodes the
//! merged mapping onto the same target at that point (for a list of mappings, the last
//! first, so that the first wins); a later key overwrites an earlier one, whether the earlier
//! came from a merge or not. What "overwrites" means depends on the Go type being filled:
//! a struct that is already set is decoded into (the fields the new mapping does not name
//! stay), a map keeps its entries and gets the new ones (each replaced whole), anything else
//! (a string, a list) is replaced. The Go types are those of [`super::known_keys`].
//!
//! The YAML crate's `Value::apply_merge` differs from this: keys written beside `<<` win even when
//! they come before it, an anchor that itself merges another leaves a stray `<<` behind, and
//! nothing is merged below the first level.
//!
//! One difference with yaml.v2 is left: a key with no value (null) written over a struct set
//! earlier empties it here, where yaml.v2 leaves a struct that is not behind a pointer as it
//! was.

use super::known_keys::{Shape, join, key_text};
use super::yaml::{Mapping, TaggedValue, Value};

/// A `<<` whose value is not a mapping or a list of mappings (yaml.v2 refuses it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeError {
    /// Where the `<<` key is, as the span index names it (`nodes[1].<<`).
    pub path: String,
}

impl MergeError {
    /// yaml.v2's own words.
    pub const MESSAGE: &'static str = "map merge requires map or sequence of maps as the value";
}

/// `doc` with every merge key applied, as RKE reads it.
pub fn apply(doc: Value) -> Result<Value, MergeError> {
    fresh(doc, super::known_keys::ROOT, "")
}

/// `v` decoded onto nothing (a new value of shape `shape`).
fn fresh(v: Value, shape: Shape, path: &str) -> Result<Value, MergeError> {
    Ok(match v {
        Value::Mapping(src) => {
            let mut out = Mapping::new();
            onto(&mut out, src, shape, path)?;
            Value::Mapping(out)
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| fresh(item, shape.element(), &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Tagged(t) => {
            let TaggedValue { tag, value } = *t;
            Value::Tagged(Box::new(TaggedValue { tag, value: fresh(value, shape, path)? }))
        }
        scalar => scalar,
    })
}

/// Decodes the mapping `src` onto `target`, a mapping of shape `shape`.
fn onto(target: &mut Mapping, src: Mapping, shape: Shape, path: &str) -> Result<(), MergeError> {
    for (k, v) in src {
        if k.as_str() == Some("<<") {
            let error = || MergeError { path: join(path, "<<") };
            let sources = match untag(v) {
                Value::Mapping(m) => vec![m],
                Value::Sequence(items) => items
                    .into_iter()
                    .rev()
                    .map(|item| match untag(item) {
                        Value::Mapping(m) => Ok(m),
                        _ => Err(error()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(error()),
            };
            for m in sources {
                onto(target, m, shape, path)?;
            }
            continue;
        }
        let name = key_text(&k);
        let here = join(path, &name);
        let child = shape.child(&name);
        // Only a struct's fields are decoded in place; a map's entries are made anew.
        let in_place =
            matches!(shape, Shape::Struct(_)) && matches!(child, Shape::Struct(_) | Shape::Map(_) | Shape::Free);
        match (target.get_mut(&k), v) {
            (Some(Value::Mapping(existing)), Value::Mapping(m)) if in_place => onto(existing, m, child, &here)?,
            (_, v) => {
                let value = fresh(v, child, &here)?;
                target.insert(k, value);
            }
        }
    }
    Ok(())
}

fn untag(v: Value) -> Value {
    match v {
        Value::Tagged(t) => untag(t.value),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(yaml: &str) -> Value {
        apply(crate::config::yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn yaml(v: &Value) -> String {
        crate::config::yaml::to_string(v).unwrap()
    }

    #[test]
    fn nodes_take_the_keys_of_a_shared_anchor_and_keep_their_own() {
        let v = merged(
            "x-node: &node {user: root, role: [etcd], port: 2222}\nnodes:\n  - <<: *node\n    address: a\n  - <<: *node\n    address: b\n    port: 22\n",
        );
        assert_eq!(
            yaml(&v["nodes"]),
            "- user: root\n  role:\n  - etcd\n  port: 2222\n  address: a\n- user: root\n  role:\n  - etcd\n  port: 22\n  address: b\n"
        );
    }

    #[test]
    fn later_keys_win_even_over_a_merge_and_the_first_of_a_list_wins() {
        // yaml.v2 decodes in document order: a key written before `<<` is overwritten by it.
        let v = merged(
            "a: &a {user: a, port: 1}\nb: &b {user: b, port: 2, docker_socket: /b}\nnodes:\n  - user: mine\n    <<: [*a, *b]\n",
        );
        assert_eq!(yaml(&v["nodes"][0]), "user: a\nport: 1\ndocker_socket: /b\n");
    }

    #[test]
    fn an_anchor_that_merges_another_is_applied_whole() {
        let v = merged("a: &a {user: root}\nb: &b {<<: *a, role: [etcd]}\nnodes:\n  - <<: *b\n    address: x\n");
        assert_eq!(yaml(&v["nodes"][0]), "user: root\nrole:\n- etcd\naddress: x\n");
    }

    #[test]
    fn structs_are_merged_into_maps_get_new_entries_lists_are_replaced() {
        let v = merged(
            "defaults: &d\n  etcd:\n    snapshot: true\n    extra_args: {a: '1', b: '2'}\n    extra_binds: [/x]\n    backup_config: {interval_hours: 6}\nservices:\n  <<: *d\n  etcd:\n    extra_args: {b: '3'}\n    extra_binds: [/y]\n    backup_config: {retention: 2}\n",
        );
        assert_eq!(
            yaml(&v["services"]),
            "etcd:\n  snapshot: true\n  extra_args:\n    a: '1'\n    b: '3'\n  extra_binds:\n  - /y\n  backup_config:\n    interval_hours: 6\n    retention: 2\n"
        );
    }

    #[test]
    fn entries_of_a_free_form_map_are_replaced_whole() {
        let v = merged("l: &l {app: {a: 1}}\nnodes:\n  - labels:\n      <<: *l\n      app: {b: 2}\n");
        assert_eq!(yaml(&v["nodes"][0]["labels"]), "app:\n  b: 2\n");
    }

    #[test]
    fn a_merge_of_a_scalar_is_refused_where_it_is() {
        let doc = crate::config::yaml::from_str("nodes:\n  - <<: root\n").unwrap();
        assert_eq!(apply(doc), Err(MergeError { path: "nodes[0].<<".into() }));
        let doc = crate::config::yaml::from_str("a: &a {x: 1}\n<<: [*a, 2]\n").unwrap();
        assert_eq!(apply(doc), Err(MergeError { path: "<<".into() }));
    }
}
