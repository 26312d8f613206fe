//! Reading cluster.yml's text as RKE reads it (merge keys applied) into [`RawConfig`], with
//! the YAML parser's errors and the keys nobody reads turned into located problems.

use super::locate::{Locator, char_span, line_col};
use super::raw::RawConfig;
use super::{ConfigProblem, known_keys, merge, yaml};

/// The document as RKE reads it (merge keys applied) in RKE's field names, and the keys of
/// it that neither RKE nor rkectl reads.
pub(super) fn read_raw(
    text: &str,
    loc: &Locator,
) -> Result<(RawConfig, Vec<known_keys::UnknownKey>), Box<ConfigProblem>> {
    if text.trim().is_empty() {
        return Ok((RawConfig::default(), Vec::new()));
    }
    // Read straight from the text, the parser's errors say where they are in it; read from
    // the document, they do not. The direct reading does not apply merge keys, so it is
    // only used to place an error that the document has too.
    let direct = yaml::from_str::<RawConfig>(text);
    let doc: yaml::Value = match yaml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            // At the same place, the direct reading says it in RKE's terms ("nodes[2]:
            // duplicate field `user`" rather than "duplicate entry with key \"user\"").
            let at = |e: &yaml::Error| e.location().map(|l| l.index());
            let same = direct.as_ref().err().filter(|d| at(d) == at(&e));
            return Err(Box::new(yaml_problem(same.unwrap_or(&e), text)));
        }
    };
    let doc = merge::apply(doc).map_err(|e| {
        Box::new(loc.at_key(
            &e.path,
            merge::MergeError::MESSAGE.to_string(),
            "not a mapping",
            Some("`<<` takes an anchored mapping (`<<: *node`) or a list of them (`<<: [*a, *b]`)".into()),
        ))
    })?;
    let unknown = known_keys::unknown_keys(&doc);
    match yaml::from_value::<RawConfig>(doc.clone()) {
        Ok(raw) => Ok((raw, unknown)),
        Err(e) => {
            // The same error, with the path the parser gives when it reads text: the merged
            // document written out and read again.
            let message = yaml::to_string(&doc)
                .ok()
                .and_then(|t| yaml::from_str::<RawConfig>(&t).err())
                .map_or_else(|| yaml_message(&e), |again| yaml_message(&again));
            match direct {
                Err(d) if yaml_message(&d) == message => Err(Box::new(yaml_problem(&d, text))),
                // Only in the merged document: placed at its path (or the closest place
                // written in the file, such as the mapping that merged it).
                _ => {
                    let path = message
                        .split_once(": ")
                        .map(|(p, _)| p.to_string())
                        .filter(|p| !p.contains(char::is_whitespace))
                        .unwrap_or_default();
                    let help = yaml_help(&message);
                    Err(Box::new(loc.at(&path, message, "here", help)))
                }
            }
        }
    }
}

/// A key of cluster.yml that RKE and rkectl ignore, pointed at.
pub(super) fn unknown_key(loc: &Locator, u: &known_keys::UnknownKey) -> ConfigProblem {
    let place = if u.parent.is_empty() { "at the top level".to_string() } else { format!("in {}", u.parent) };
    let help = match u.suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None if u.known.len() <= 12 => {
            let (own, rke): (Vec<&str>, Vec<&str>) = u.known.iter().copied().partition(|k| k.starts_with("rkectl_"));
            let own = if own.is_empty() { String::new() } else { format!("; rkectl's own: {}", own.join(", ")) };
            format!("the keys RKE reads here are {}{own}", rke.join(", "))
        }
        None => "RKE's cluster.yml reference lists the keys it reads".to_string(),
    };
    loc.at_key(&u.path, format!("unknown key `{}` {place}: rkectl and RKE ignore it", u.key), "unknown key", Some(help))
}

/// The parser's message without the " at line L column C" it appends (the pointer says
/// that already); libyaml's context after it, e.g. ", while scanning a quoted scalar at
/// line 5 column 24", is kept.
fn yaml_message(e: &yaml::Error) -> String {
    let message = e.to_string();
    match message.find(" at line ") {
        Some(i) => message[..i].to_string() + message[i..].find(", ").map_or("", |j| &message[i + j..]),
        None => message,
    }
}

fn yaml_help(message: &str) -> Option<String> {
    Some(if message.contains("invalid type") || message.contains("invalid value") {
        "check the value's type against RKE's cluster.yml reference".to_string()
    } else if message.contains("duplicate") {
        "keep one of them: RKE would silently combine the two".to_string()
    } else {
        "cluster.yml must be valid YAML".to_string()
    })
}

fn yaml_problem(e: &yaml::Error, text: &str) -> ConfigProblem {
    let message = yaml_message(e);
    // Line and column come from the span, as for every other problem, so that the numbers
    // and the pointer can never disagree (libyaml counts line breaks miette does not).
    let span = e.location().map(|loc| char_span(text, loc.index()));
    let (line, column) = match span {
        Some(s) => {
            let (l, c) = line_col(text, s.offset());
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let help = yaml_help(&message);
    ConfigProblem { message, span, label: "here".into(), help, line, column }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{NODE, parse_text};

    #[test]
    fn an_unknown_key_is_a_warning_at_its_line_with_the_key_meant() {
        let text =
            format!("{NODE}services:\n  etcd:\n    backup_config:\n      s3_backup_config:\n        bucket_name: b\n");
        let cfg = parse_text(&text, false).unwrap();
        assert_eq!(cfg.cluster.etcd.s3, None, "RKE ignores it, and so does rkectl");
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert_eq!(
            w.message,
            "unknown key `s3_backup_config` in services.etcd.backup_config: rkectl and RKE ignore it"
        );
        assert_eq!(w.help.as_deref(), Some("did you mean `s3backupconfig`?"));
        assert_eq!((w.line, w.column), (Some(8), Some(7)));
        let span = w.span.unwrap();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "s3_backup_config");
    }

    #[test]
    fn keys_without_a_near_miss_list_what_rke_reads_there() {
        let text = format!("{NODE}services:\n  etcd:\n    backup_config:\n      weekly: true\n");
        let cfg = parse_text(&text, false).unwrap();
        assert_eq!(
            cfg.warnings[0].help.as_deref(),
            Some(
                "the keys RKE reads here are enabled, interval_hours, retention, s3backupconfig, safe_timestamp, timeout; rkectl's own: rkectl_drill"
            )
        );
    }

    #[test]
    fn nodes_sharing_an_anchor_get_its_keys() {
        let text = "nodes:\n  - &node\n    address: 10.0.0.1\n    user: root\n    role: [etcd]\n    port: 2222\n  - <<: *node\n    address: 10.0.0.2\n";
        let c = parse_text(text, true).unwrap().cluster;
        assert_eq!(c.nodes[1].user, "root");
        assert_eq!((c.nodes[1].address.as_str(), c.nodes[1].port), ("10.0.0.2", 2222));
        assert_eq!(c.etcd_nodes().count(), 2);
    }

    #[test]
    fn merges_inside_maps_rkectl_reads_are_applied_not_refused() {
        // Read without merging, `<<` would be an extra_args entry whose value is a map.
        let text = format!(
            "{NODE}x-args: &args {{election-timeout: '5000'}}\nservices:\n  etcd:\n    extra_args:\n      <<: *args\n      heartbeat-interval: '500'\n"
        );
        let cfg = parse_text(&text, false).unwrap();
        assert_eq!(cfg.cluster.etcd.extra_args.get("election-timeout").map(String::as_str), Some("5000"));
        assert_eq!(cfg.cluster.etcd.extra_args.len(), 2);
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.starts_with("unknown key `x-args` at the top level"), "{}", w.message);
    }

    #[test]
    fn a_type_error_that_only_a_merge_makes_points_at_the_merging_node() {
        let text = "x: &bad {user: [a, b], role: [etcd]}\nnodes:\n  - address: 10.0.0.1\n    <<: *bad\n";
        let err = parse_text(text, false).unwrap_err();
        let [p] = err.problems() else { panic!("{:?}", err.problems()) };
        assert_eq!(p.message, "nodes[0].user: invalid type: sequence, expected a string");
        assert_eq!(p.line, Some(3), "the node that merged it");
    }

    #[test]
    fn type_errors_written_in_the_file_keep_the_parsers_place() {
        let text = "nodes:\n  - address: 10.0.0.1\n    user: [a, b]\n    role: [etcd]\n";
        let err = parse_text(text, false).unwrap_err();
        let [p] = err.problems() else { panic!("{:?}", err.problems()) };
        assert_eq!(p.message, "nodes[0].user: invalid type: sequence, expected a string");
        assert_eq!((p.line, p.column), (Some(3), Some(11)));
    }

    #[test]
    fn a_merge_of_a_scalar_is_refused_at_its_key() {
        let text = "nodes:\n  - address: 10.0.0.1\n    <<: root\n";
        let err = parse_text(text, false).unwrap_err();
        let [p] = err.problems() else { panic!("{:?}", err.problems()) };
        assert_eq!(p.message, "map merge requires map or sequence of maps as the value");
        assert_eq!((p.line, p.column), (Some(3), Some(5)));
    }

    #[test]
    fn a_repeated_key_is_refused_where_rkectl_reads_and_where_it_does_not() {
        // The parser points at the mapping that holds the key twice (line 1: the whole file).
        for (text, line) in [
            (format!("{NODE}network: {{plugin: canal}}\nnetwork: {{plugin: flannel}}\n"), 1),
            (format!("{NODE}    labels: {{a: '1', a: '2'}}\n"), 5),
        ] {
            let err = parse_text(&text, false).unwrap_err();
            let [p] = err.problems() else { panic!("{:?}", err.problems()) };
            assert!(p.message.contains("duplicate entry"), "{}", p.message);
            assert_eq!(p.line, Some(line), "{}", p.message);
            assert_eq!(p.help.as_deref(), Some("keep one of them: RKE would silently combine the two"));
        }
    }

    #[test]
    fn an_empty_document_or_comments_only_still_lists_no_nodes() {
        for text in ["", "# nothing\n", "~\n"] {
            let err = parse_text(text, false).unwrap_err();
            assert!(err.problems()[0].message.contains("lists no nodes"), "{text:?}: {:?}", err.problems());
        }
    }
}
