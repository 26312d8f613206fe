//! cluster.yml as diagnostics show it: the values of keys that hold secrets masked.
//!
//! miette prints the lines around a problem; a problem next to `secret_key:` or inside a
//! node with an inline `ssh_key` would print the secret. Each masked character becomes as
//! many `*` as it has bytes, so every span computed on the real text stays valid.

/// Keys whose values are secrets wherever they appear (S3, nodes, bastion, registries).
const SECRET_KEYS: &[&str] = &["secret_key", "access_key", "ssh_key", "password", "session_token"];

/// `text` with the value of every secret-bearing key masked, byte for byte.
pub fn for_display(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Indentation of a secret key whose block scalar (`ssh_key: |`) is being masked.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if let Some(key_indent) = block {
            if line.trim().is_empty() || indent > key_indent {
                out.push_str(&mask(line));
                continue;
            }
            block = None;
        }
        match secret_value_start(line) {
            Some((key_indent, at)) => {
                let (head, value) = line.split_at(at);
                out.push_str(head);
                out.push_str(&mask(value));
                let v = value.trim();
                if v.starts_with('|') || v.starts_with('>') || v.is_empty() {
                    // The value continues on the lines below, more indented than the key.
                    block = Some(key_indent);
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Where the value of a secret key starts on `line` (`[- ]key: value`), with the key's
/// indentation.
fn secret_value_start(line: &str) -> Option<(usize, usize)> {
    let body = line.trim_start_matches([' ', '\t']);
    let mut key_start = line.len() - body.len();
    let mut rest = body;
    if let Some(r) = rest.strip_prefix("- ") {
        key_start += 2 + (r.len() - r.trim_start().len());
        rest = r.trim_start();
    }
    let key = SECRET_KEYS
        .iter()
        .find(|k| rest.strip_prefix(**k).is_some_and(|after| after.trim_start_matches([' ', '\t']).starts_with(':')))?;
    let colon = key_start + rest.find(':').expect("checked above");
    debug_assert!(rest.len() > key.len());
    Some((key_start, colon + 1))
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

    #[test]
    fn secret_values_are_masked_and_offsets_kept() {
        let text = "services:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        access_key: AKIAEXAMPLE\n        secret_key: \"s3cr€t\"\n        bucket_name: b\nnodes:\n  - address: 10.0.0.1\n    ssh_key: |-\n      -----BEGIN OPENSSH PRIVATE KEY-----\n      b3BlbnNzaC1rZXktdjEAAAAA\n\n      -----END OPENSSH PRIVATE KEY-----\n    user: root\n  - ssh_key: inline-secret\n    address: 10.0.0.2\n";
        let shown = for_display(text);
        assert_eq!(shown.len(), text.len());
        for secret in ["AKIAEXAMPLE", "s3cr€t", "PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAA", "inline-secret"] {
            assert!(!shown.contains(secret), "{secret} shows:\n{shown}");
        }
        for kept in ["bucket_name: b", "    user: root", "address: 10.0.0.2", "secret_key: ", "ssh_key: "] {
            assert!(shown.contains(kept), "{kept} is gone:\n{shown}");
        }
        // Lines stay where they were: same count, same starts.
        let starts = |t: &str| t.match_indices('\n').map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(starts(&shown), starts(text));
    }

    #[test]
    fn keys_that_only_end_like_secret_keys_are_left_alone() {
        let text = "nodes:\n  - ssh_key_path: /root/.ssh/id_rsa\n    my_password_hint: none\n";
        assert_eq!(for_display(text), text);
    }
}
