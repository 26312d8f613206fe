//! cluster.yml as diagnostics show it: the values of keys that hold secrets masked.
//!
//! miette prints the lines around a problem; a problem next to `secret_key:` or inside a
//! node with an inline `ssh_key` would print the secret. Each masked character becomes as
//! many `*` as it has bytes, so every span computed on the real text stays valid.
//!
//! Which keys hold secrets is decided by the shape of their name, not a list of exact
//! names: RKE's own (`secret_key`, `ssh_key`, `password`, `aws_secret_access_key`,
//! `aws_session_token`, `aadClientSecret`, `apic_user_key`…), anything else that ends in a
//! secret noun (`…_token`, `…_passphrase`), and misspellings of them (`secret_kye`,
//! `acess_key`: the keys `--strict` warns about, whose line the warning shows). Keys that
//! only name where a secret is (`ssh_key_path`, `…_file`) or a public part (`ssh_cert`)
//! are left alone. Access key ids are masked with their keys, as `access_key` always was.
//!
//! The text is read line by line, not parsed: diagnostics also show files that do not
//! parse, and the lines after a syntax error must be masked too. A line is scanned for
//! `key: value` pairs at its start (after `- ` markers) and after every `{` or `,` of a
//! flow collection, which may span lines (`s3backupconfig: {secret_key: …}`); quoted
//! strings are skipped as a whole.

/// Words that make a key a secret when its name ends with one of them.
const SECRET_NOUNS: &[&str] =
    &["secret", "secrets", "token", "password", "passwd", "passphrase", "credential", "credentials"];
/// Words that make `…_key` a secret (`ssh_key`, `client_key`); a bare `key` or
/// `rotate_encryption_key` is not one.
const KEY_QUALIFIERS: &[&str] =
    &["secret", "access", "private", "ssh", "session", "api", "client", "user", "signing", "tls"];
/// Secret key names written without separators, for misspellings of them (`secretkye`).
const JOINED: &[&str] = &[
    "secretkey",
    "accesskey",
    "accesskeyid",
    "secretaccesskey",
    "sshkey",
    "privatekey",
    "sessiontoken",
    "clientsecret",
    "apikey",
    "apitoken",
];

/// `text` with the value of every secret-bearing key masked, byte for byte.
pub fn for_display(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    // Indentation of a secret key whose value continues on the lines below, more indented.
    let mut block: Option<usize> = None;
    // Flow collections (`{`, `[`) open at the start of the line.
    let mut depth = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if let Some(key_indent) = block
            && (line.trim().is_empty() || indent(line) > key_indent)
        {
            out.push_str(&mask(line));
            depth = brackets(line, depth);
            continue;
        }
        let scan = scan_line(line, depth);
        depth = scan.depth;
        block = match scan.then {
            Some(Then::Continues(k)) => Some(k),
            // An empty value is a mapping below (its keys are judged by their own names), or a
            // secret on the lines below (`ssh_key:` then the PEM, or a list of tokens).
            Some(Then::Empty(k)) => next_line(&lines[i + 1..]).filter(|l| indent(l) > k && !nested(l)).map(|_| k),
            None => None,
        };
        let mut at = 0;
        for (start, end) in scan.masks {
            out.push_str(&line[at..start]);
            out.push_str(&mask(&line[start..end]));
            at = end;
        }
        out.push_str(&line[at..]);
    }
    out
}

/// Whether a key of this name holds a secret (see the module's doc).
pub fn looks_secret(key: &str) -> bool {
    let mut w = words(key);
    // An access key's id goes with its key (`aws_access_key_id`).
    if w.len() > 1 && w.last().is_some_and(|l| l == "id") {
        w.pop();
    }
    let Some(last) = w.last() else { return false };
    if near(last, SECRET_NOUNS) {
        return true;
    }
    if w.len() >= 2 && near(last, &["key", "keys"]) && near(&w[w.len() - 2], KEY_QUALIFIERS) {
        return true;
    }
    let joined = w.concat();
    joined.len() >= 6 && JOINED.iter().any(|j| strsim::damerau_levenshtein(&joined, j) <= 2)
}

/// `word` is one of `vocab`, or one typo away from it.
fn near(word: &str, vocab: &[&str]) -> bool {
    vocab.iter().any(|v| word == *v || (word.len() >= 3 && strsim::damerau_levenshtein(word, v) <= 1))
}

/// The lower-cased words of a key: `snake_case`, `kebab-case` and `camelCase` alike.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut after_lower = false;
    for c in key.trim().chars() {
        if matches!(c, '_' | '-' | '.' | ' ') {
            out.extend((!cur.is_empty()).then(|| std::mem::take(&mut cur)));
            after_lower = false;
            continue;
        }
        if c.is_uppercase() && after_lower {
            out.push(std::mem::take(&mut cur));
        }
        after_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    out.extend((!cur.is_empty()).then_some(cur));
    out
}

/// What follows a line's last secret value.
enum Then {
    /// It goes on over the lines below that are more indented than its key (at this column).
    Continues(usize),
    /// It is empty on this line (its key at this column).
    Empty(usize),
}

struct Scan {
    /// Byte ranges to mask.
    masks: Vec<(usize, usize)>,
    /// Flow collections open after the line.
    depth: usize,
    then: Option<Then>,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(b: &[u8], mut at: usize, end: usize) -> usize {
    while at < end && is_blank(b[at]) {
        at += 1;
    }
    at
}

/// After the indentation and any `- ` markers.
fn body_start(line: &str) -> usize {
    let b = line.as_bytes();
    let end = content_end(line);
    let mut at = skip_blanks(b, 0, end);
    while at < end && b[at] == b'-' && (at + 1 == end || is_blank(b[at + 1])) {
        at = skip_blanks(b, at + 1, end);
    }
    at
}

fn content_end(line: &str) -> usize {
    line.trim_end_matches(['\n', '\r']).len()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// Just after the closing quote of the string that starts at `at`, if it closes on the line.
fn quoted_close(b: &[u8], at: usize, end: usize) -> Option<usize> {
    let q = b[at];
    let mut i = at + 1;
    while i < end {
        match b[i] {
            b'\\' if q == b'"' => i += 2,
            b'\'' if q == b'\'' && i + 1 < end && b[i + 1] == b'\'' => i += 2,
            c if c == q => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Just after the quoted string that starts at `at`: its closing quote, or the line's end.
fn quoted_end(b: &[u8], at: usize, end: usize) -> usize {
    quoted_close(b, at, end).unwrap_or(end)
}

/// The key of a `key: value` pair starting at `at`, and where its colon is.
fn key_at(line: &str, at: usize, end: usize, depth: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let (key, after) = if at < end && matches!(b[at], b'"' | b'\'') {
        let close = quoted_close(b, at, end)?;
        (&line[at + 1..close - 1], skip_blanks(b, close, end))
    } else {
        let mut i = at;
        while i < end && !matches!(b[i], b':' | b',' | b'{' | b'}' | b'[' | b']' | b'#') {
            i += 1;
        }
        (line[at..i].trim_end(), i)
    };
    let ends_key = |i: usize| i >= end || is_blank(b[i]) || (depth > 0 && matches!(b[i], b',' | b'}' | b']'));
    (after < end && b[after] == b':' && ends_key(after + 1) && !key.is_empty()).then_some((key, after))
}

/// Finds the secret values on one line; `depth` is the flow nesting at its start.
fn scan_line(line: &str, mut depth: usize) -> Scan {
    let b = line.as_bytes();
    let end = content_end(line);
    let mut masks = Vec::new();
    let mut then = None;
    let mut at = body_start(line);
    let mut candidate = true;
    while at < end {
        if candidate {
            candidate = false;
            if let Some((key, colon)) = key_at(line, at, end, depth) {
                let value = skip_blanks(b, colon + 1, end);
                if looks_secret(key) || (key == "key" && pem_like(&line[value..end])) {
                    let (value_end, t) = value_extent(b, value, end, depth, at);
                    if value_end > value {
                        masks.push((value, value_end));
                    }
                    then = t.or(then);
                    at = value_end.max(value);
                } else {
                    at = colon + 1;
                }
                continue;
            }
        }
        match b[at] {
            b'"' | b'\'' => at = quoted_end(b, at, end),
            b'{' | b'[' => {
                depth += 1;
                candidate = true;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b',' if depth > 0 => {
                candidate = true;
                at += 1;
            }
            b'#' if at == 0 || is_blank(b[at - 1]) => break,
            _ => at += 1,
        }
        if candidate {
            at = skip_blanks(b, at, end);
        }
    }
    Scan { masks, depth, then }
}

/// A bare `key:` is a taint's or toleration's name, or etcd's private key (PEM): only the
/// latter's value is masked.
fn pem_like(value: &str) -> bool {
    let v = value.trim_start_matches(['"', '\'']);
    v.is_empty() || v.starts_with(['|', '>', '#']) || v.starts_with("-----") || v.contains("PRIVATE KEY")
}

/// Where the secret value starting at `at` ends on its line, and whether it goes on below.
fn value_extent(b: &[u8], at: usize, end: usize, depth: usize, key_indent: usize) -> (usize, Option<Then>) {
    if at >= end || b[at] == b'#' {
        return (at, (depth == 0).then_some(Then::Empty(key_indent)));
    }
    match b[at] {
        b'"' | b'\'' => match quoted_close(b, at, end) {
            Some(close) => (close, None),
            // A quoted string that goes on over the next lines.
            None => (end, Some(Then::Continues(key_indent))),
        },
        b'|' | b'>' => (end, Some(Then::Continues(key_indent))),
        // A mapping: its keys are judged by their own names.
        b'{' => (at, None),
        b'[' => {
            let inner = skip_blanks(b, at + 1, end);
            if inner < end && b[inner] == b'{' {
                return (at, None);
            }
            // A list of secrets: masked to its closing bracket (quotes skipped).
            let mut nest = 0usize;
            let mut i = at;
            while i < end {
                match b[i] {
                    b'"' | b'\'' => {
                        i = quoted_end(b, i, end);
                        continue;
                    }
                    b'[' => nest += 1,
                    b']' => {
                        nest -= 1;
                        if nest == 0 {
                            return (i + 1, None);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            (end, Some(Then::Continues(key_indent)))
        }
        _ if depth > 0 => {
            let mut i = at;
            while i < end && !matches!(b[i], b',' | b'}' | b']') {
                i += 1;
            }
            while i > at && is_blank(b[i - 1]) {
                i -= 1;
            }
            (i, None)
        }
        // A plain value, and whatever follows it on more indented lines (its continuation).
        _ => (end, Some(Then::Continues(key_indent))),
    }
}

/// The next line with content (neither blank nor only a comment).
fn next_line<'a>(lines: &[&'a str]) -> Option<&'a str> {
    lines.iter().copied().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

/// Whether `line` starts a mapping entry (`key:` or `- key:`): a nested mapping, not a value.
fn nested(line: &str) -> bool {
    let at = body_start(line);
    key_at(line, at, content_end(line), 0).is_some()
}

/// The flow nesting after `line`, starting from `depth` (quotes skipped).
fn brackets(line: &str, mut depth: usize) -> usize {
    let b = line.as_bytes();
    let end = content_end(line);
    let mut i = 0;
    while i < end {
        match b[i] {
            b'"' | b'\'' => {
                i = quoted_end(b, i, end);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    depth
}

/// Every character but line breaks and blanks as `*` (one per byte).
fn mask(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, '\n' | '\r' | ' ' | '\t') { c.to_string() } else { "*".repeat(c.len_utf8()) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` masked: every secret gone, every kept fragment still there, lines in place.
    fn check(text: &str, secrets: &[&str], kept: &[&str]) {
        let shown = for_display(text);
        assert_eq!(shown.len(), text.len());
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} shows:\n{shown}");
        }
        for k in kept {
            assert!(shown.contains(k), "{k} is gone:\n{shown}");
        }
        let starts = |t: &str| t.match_indices('\n').map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(starts(&shown), starts(text));
    }

    #[test]
    fn secret_values_are_masked_and_offsets_kept() {
        let text = "services:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        access_key: AKIAEXAMPLE\n        secret_key: \"s3cr€t\"\n        bucket_name: b\nnodes:\n  - address: 10.0.0.1\n    ssh_key: |-\n      -----BEGIN OPENSSH PRIVATE KEY-----\n      b3BlbnNzaC1rZXktdjEAAAAA\n\n      -----END OPENSSH PRIVATE KEY-----\n    user: root\n  - ssh_key: inline-secret\n    address: 10.0.0.2\n";
        check(
            text,
            &["AKIAEXAMPLE", "s3cr€t", "PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAA", "inline-secret"],
            &["bucket_name: b", "    user: root", "address: 10.0.0.2", "secret_key: ", "ssh_key: "],
        );
    }

    #[test]
    fn keys_that_only_name_where_a_secret_is_are_left_alone() {
        let text = "nodes:\n  - ssh_key_path: /root/.ssh/id_rsa\n    ssh_cert: ssh-ed25519-cert-v01@openssh.com AAAA\n    my_password_hint: none\n    rotate_encryption_key: true\n    taints:\n      - key: node-role.kubernetes.io/etcd\n        value: \"true\"\n";
        assert_eq!(for_display(text), text);
    }

    #[test]
    fn aws_keys_tokens_and_passwords_are_masked_whatever_their_exact_name() {
        let text = "private_registries:\n  - url: r.example.com\n    user: ci\n    password: hunter22hunter\n    ecr_credential_plugin:\n      aws_access_key_id: AKIAREGISTRY\n      aws_secret_access_key: REGSECRETKEY\n      aws_session_token: REGSESSION\ncloud_provider:\n  azureCloudProvider:\n    aadClientSecret: AZURESECRET\n    aadClientCertPassword: AZUREPASS\nstate_passphrase: MYPASSPHRASE\n";
        check(
            text,
            &[
                "hunter22hunter",
                "AKIAREGISTRY",
                "REGSECRETKEY",
                "REGSESSION",
                "AZURESECRET",
                "AZUREPASS",
                "MYPASSPHRASE",
            ],
            &["url: r.example.com", "user: ci", "ecr_credential_plugin:", "azureCloudProvider:"],
        );
    }

    #[test]
    fn flow_style_maps_are_masked_value_by_value() {
        let text = "services:\n  etcd:\n    backup_config:\n      s3backupconfig: {bucket_name: b, access_key: AKIAFLOW, \"secret_key\": 'FLOW, SECRET', endpoint: s3 amazonaws.com}\n      other: {a: [x, {session_token: TOKENINLIST}]}\n      spread: {\n        secret_key: SPREADSECRET,\n        bucket_name: kept\n      }\n";
        check(
            text,
            &["AKIAFLOW", "FLOW, SECRET", "TOKENINLIST", "SPREADSECRET"],
            &[
                "{bucket_name: b, access_key: ",
                "endpoint: s3 amazonaws.com}",
                "a: [x, {session_token: ",
                "bucket_name: kept",
            ],
        );
    }

    #[test]
    fn misspelled_secret_keys_are_masked() {
        let text = "s3backupconfig:\n  secret_kye: MISSPELT1\n  secert_key: MISSPELT2\n  acess_key: MISSPELT3\n  secretkey: MISSPELT4\n  pasword: MISSPELT5\n  bucket_nmae: kept\n";
        check(text, &["MISSPELT1", "MISSPELT2", "MISSPELT3", "MISSPELT4", "MISSPELT5"], &["bucket_nmae: kept"]);
    }

    #[test]
    fn a_secret_on_the_lines_below_its_key_is_masked_and_a_mapping_below_is_not() {
        let text = "ssh_key:\n  -----BEGIN OPENSSH PRIVATE KEY-----\n  KEYBODY\nsecrets_encryption_config:\n  enabled: true\ntokens:\n  - TOKEN1\n  - TOKEN2\nsecret_key: \"ONE\n  TWO\"\nkey: |\n  ETCDKEY\nuser: root\n";
        check(
            text,
            &["PRIVATE KEY", "KEYBODY", "TOKEN1", "TOKEN2", "ONE", "TWO", "ETCDKEY"],
            &["secrets_encryption_config:\n  enabled: true\n", "user: root"],
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_keeps_its_length_and_its_lines(
            text in "(secret_key|ssh_key|key|tokens|: |- |[a-z_:{}\\[\\],'\"#|> \\-\n\r\t\\\\€]){0,80}"
        ) {
            let shown = for_display(&text);
            proptest::prop_assert_eq!(shown.len(), text.len());
            let breaks = |t: &str| t.match_indices(['\n', '\r']).map(|(i, _)| i).collect::<Vec<_>>();
            proptest::prop_assert_eq!(breaks(&shown), breaks(&text));
        }
    }

    #[test]
    fn of_rkes_own_keys_only_those_that_hold_secrets_look_secret() {
        fn walk(shape: crate::config::known_keys::Shape, out: &mut std::collections::BTreeSet<&'static str>) {
            use crate::config::known_keys::Shape;
            if let Shape::Struct(keys) | Shape::List(keys) | Shape::Map(keys) = shape {
                for k in keys {
                    if out.insert(k.name) {
                        walk(k.shape, out);
                    }
                }
            }
        }
        let mut all = std::collections::BTreeSet::new();
        walk(crate::config::known_keys::ROOT, &mut all);
        let secret: Vec<&str> = all.iter().copied().filter(|k| looks_secret(k)).collect();
        assert_eq!(
            secret,
            [
                "aadClientCertPassword",
                "aadClientSecret",
                "access_key",
                "apic_user_key",
                "aws_access_key_id",
                "aws_secret_access_key",
                "aws_session_token",
                // The name of a Kubernetes secret: masked too, which costs nothing.
                "image_pull_secret",
                "kafka_client_key",
                "password",
                "secret_key",
                "ssh_key",
                "token",
            ]
        );
    }
}
