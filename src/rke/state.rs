//! `cluster.rkestate`: RKE's state file, the source of truth for the cluster's PKI.
//!
//! RKE writes it beside cluster.yml (`GetStateFilePath`: the config's path with its last
//! extension replaced by `.rkestate`) as indented JSON, mode 0600:
//! `{"desiredState": {rkeConfig, certificatesBundle, encryptionConfig}, "currentState": {…}}`.
//! rkectl reads the certificates from `currentState` (what is deployed), else
//! `desiredState`, and writes back only certificate entries it issued, into both states,
//! in RKE's entry format. Everything else in the file is kept as it was, in its order, so a
//! round trip through rkectl changes nothing RKE wrote.

use super::pki::{CA_NAME, CertPair, NODE_NAME, Pki, PkiError, cert_path, key_path};
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RkeStateError {
    #[error("cannot read RKE's state {}: {source}", path.display())]
    #[diagnostic(code(rkectl::rkestate::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("RKE's state {} is not valid: {reason}", path.display())]
    #[diagnostic(
        code(rkectl::rkestate::invalid),
        help(
            "it holds the cluster's PKI; restore it from a backup (or from the full-cluster-state secret in kube-system) rather than deleting it"
        )
    )]
    Invalid { path: PathBuf, reason: String },
    #[error("RKE's state {} has no kube-ca certificate with its key", path.display())]
    #[diagnostic(
        code(rkectl::rkestate::no_ca),
        help(
            "rkectl reads the cluster's CA from the state RKE writes; run `rke up` once, or restore the file from a backup"
        )
    )]
    NoCa { path: PathBuf },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pki(#[from] PkiError),
}

/// `cluster.yml` → `cluster.rkestate`, RKE's rule: the last extension is replaced.
pub fn path_for(config: &Path) -> PathBuf {
    let stem = config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "cluster".into());
    let name = format!("{stem}.rkestate");
    match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(name),
        _ => PathBuf::from(name),
    }
}

/// RKE's state file, held as JSON so that nothing rkectl does not model is lost.
#[derive(Debug, Clone)]
pub struct RkeState {
    path: PathBuf,
    doc: Map<String, Value>,
}

const DESIRED: &str = "desiredState";
const CURRENT: &str = "currentState";
const BUNDLE: &str = "certificatesBundle";

impl RkeState {
    /// Reads the state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<RkeState>, RkeStateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RkeStateError::Io { path: path.to_path_buf(), source }),
        };
        Self::parse(path, &text).map(Some)
    }

    /// A state from its JSON text (the file, or the copy inside a snapshot archive).
    pub fn parse(path: &Path, text: &str) -> Result<RkeState, RkeStateError> {
        let invalid = |reason: String| RkeStateError::Invalid { path: path.to_path_buf(), reason };
        match serde_json::from_str::<Value>(text).map_err(|e| invalid(e.to_string()))? {
            Value::Object(doc) => Ok(RkeState { path: path.to_path_buf(), doc }),
            _ => Err(invalid("it is not a JSON object".into())),
        }
    }

    /// A state that holds only `pki`, for a cluster that never had one.
    pub fn new(path: &Path, pki: &Pki) -> RkeState {
        let mut s = RkeState { path: path.to_path_buf(), doc: Map::new() };
        s.doc.insert(DESIRED.into(), Value::Object(Map::new()));
        s.doc.insert(CURRENT.into(), Value::Object(Map::new()));
        s.put_pki(pki, &[]);
        s
    }

    /// Where the file is (or will be written).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same state, to be written at another path.
    pub fn at(mut self, path: &Path) -> RkeState {
        self.path = path.to_path_buf();
        self
    }

    fn bundle(&self, state: &str) -> Option<&Map<String, Value>> {
        self.doc.get(state)?.get(BUNDLE)?.as_object().filter(|b| !b.is_empty())
    }

    fn pair(entry: &Value) -> Option<CertPair> {
        let cert = entry.get("certificatePEM")?.as_str().filter(|c| !c.is_empty())?;
        let key = entry.get("keyPEM").and_then(Value::as_str).unwrap_or_default();
        Some(CertPair { cert: cert.to_string(), key: Secret::new(key) })
    }

    /// The PKI in the state: `currentState`'s bundle, else `desiredState`'s; `None` when
    /// neither has certificates.
    pub fn pki(&self) -> Result<Option<Pki>, RkeStateError> {
        let Some(bundle) = self.bundle(CURRENT).or_else(|| self.bundle(DESIRED)) else { return Ok(None) };
        let ca = bundle
            .get(CA_NAME)
            .and_then(Self::pair)
            .filter(|p| !p.key.is_empty())
            .ok_or_else(|| RkeStateError::NoCa { path: self.path.clone() })?;
        let node = bundle.get(NODE_NAME).and_then(Self::pair);
        let etcd = bundle
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{}-", super::pki::ETCD_PREFIX)) && !k.contains("client"))
            .filter_map(|(k, v)| Some((k.clone(), Self::pair(v)?)))
            .collect();
        Ok(Some(Pki { ca, node, etcd }))
    }

    /// Writes the PKI's certificates into both states' bundles: entries missing from the
    /// bundle, and those named in `replace`. Entries already there are left as they are.
    pub fn put_pki(&mut self, pki: &Pki, replace: &[String]) {
        let mut entries: Vec<(&str, &CertPair, &str)> = vec![(CA_NAME, &pki.ca, "system:kube-ca")];
        if let Some(n) = &pki.node {
            entries.push((NODE_NAME, n, "system:node"));
        }
        let etcd_cns: Vec<String> = pki.etcd.keys().map(|k| format!("system:{k}")).collect();
        for ((name, pair), cn) in pki.etcd.iter().zip(&etcd_cns) {
            entries.push((name, pair, cn));
        }
        for state in [DESIRED, CURRENT] {
            let Some(Value::Object(st)) = self.doc.get_mut(state) else { continue };
            // RKE leaves an empty currentState as `{}` until the first `rke up` succeeds;
            // a bundle there would make RKE take the cluster for deployed.
            if state == CURRENT && st.is_empty() && self.doc_has_desired_bundle() {
                continue;
            }
            let Some(Value::Object(st)) = self.doc.get_mut(state) else { continue };
            let bundle = st.entry(BUNDLE).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(bundle) = bundle else { continue };
            for (name, pair, cn) in &entries {
                if !bundle.contains_key(*name) || replace.iter().any(|r| r == name) {
                    bundle.insert(name.to_string(), entry(name, pair, cn));
                }
            }
            // Go writes a map's keys sorted.
            let mut sorted: Vec<(String, Value)> = std::mem::take(bundle).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            bundle.extend(sorted);
        }
    }

    fn doc_has_desired_bundle(&self) -> bool {
        self.bundle(DESIRED).is_some()
    }

    /// The etcd nodes of the deployed configuration (`currentState.rkeConfig.nodes` with
    /// the etcd role): `(address, member name)`.
    pub fn deployed_etcd_nodes(&self) -> Vec<(String, String)> {
        let nodes = self
            .doc
            .get(CURRENT)
            .and_then(|c| c.get("rkeConfig"))
            .and_then(|c| c.get("nodes"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        nodes
            .iter()
            .filter(|n| n.get("role").and_then(Value::as_array).is_some_and(|r| r.iter().any(|r| r == "etcd")))
            .filter_map(|n| {
                let addr = n.get("address")?.as_str()?.to_string();
                let host = n.get("hostnameOverride").and_then(Value::as_str).filter(|h| !h.is_empty());
                let host = host.unwrap_or(&addr).to_lowercase();
                Some((addr, format!("etcd-{host}")))
            })
            .collect()
    }

    /// Every private key in the file (all of RKE's certificates, not only etcd's), for
    /// redacting text that might quote one.
    pub fn private_keys(&self) -> Vec<Secret> {
        let mut out = Vec::new();
        for state in [DESIRED, CURRENT] {
            if let Some(b) = self.bundle(state) {
                for e in b.values() {
                    if let Some(k) = e.get("keyPEM").and_then(Value::as_str).filter(|k| !k.is_empty()) {
                        out.push(Secret::new(k));
                    }
                }
            }
        }
        out
    }

    /// The file's text, as RKE writes it: two-space indentation, no final line break.
    pub fn to_text(&self) -> Secret {
        Secret::new(serde_json::to_string_pretty(&self.doc).expect("a JSON document serialises"))
    }

    /// Writes the file atomically, mode 0600.
    pub fn save(&self) -> Result<(), RkeStateError> {
        crate::local::write_private_atomic(&self.path, self.to_text().expose().as_bytes())
            .map_err(|source| RkeStateError::Io { path: self.path.clone(), source })
    }
}

/// A bundle entry in RKE's `CertificatePKI` form (all twelve keys, in RKE's order).
fn entry(name: &str, pair: &CertPair, common_name: &str) -> Value {
    let env = name.to_uppercase().replace('-', "_");
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("certificatePEM", pair.cert.clone());
    put("keyPEM", pair.key.expose().to_string());
    put("config", String::new());
    put("name", name.to_string());
    put("commonName", common_name.to_string());
    put("ouName", if name == NODE_NAME { "system:nodes".into() } else { String::new() });
    put("envName", env.clone());
    put("path", cert_path(name));
    put("keyEnvName", format!("{env}_KEY"));
    put("keyPath", key_path(name));
    put("configEnvName", String::new());
    put("configPath", String::new());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_path_replaces_the_last_extension_like_rke() {
        assert_eq!(path_for(Path::new("cluster.yml")), PathBuf::from("cluster.rkestate"));
        assert_eq!(path_for(Path::new("/a/b/prod.yaml")), PathBuf::from("/a/b/prod.rkestate"));
        assert_eq!(path_for(Path::new("x/a.b.yml")), PathBuf::from("x/a.b.rkestate"));
        assert_eq!(path_for(Path::new("mycluster")), PathBuf::from("mycluster.rkestate"));
    }

    #[test]
    fn a_round_trip_keeps_what_rke_wrote_and_its_order() {
        let text = r#"{
  "desiredState": {
    "rkeConfig": {
      "zeta": 1,
      "alpha": "keep me"
    },
    "certificatesBundle": {
      "kube-ca": {
        "certificatePEM": "CA",
        "keyPEM": "CAKEY",
        "config": "",
        "name": "kube-ca",
        "commonName": "system:kube-ca",
        "ouName": "",
        "envName": "KUBE_CA",
        "path": "/etc/kubernetes/ssl/kube-ca.pem",
        "keyEnvName": "KUBE_CA_KEY",
        "keyPath": "/etc/kubernetes/ssl/kube-ca-key.pem",
        "configEnvName": "",
        "configPath": ""
      }
    },
    "encryptionConfig": "x"
  },
  "currentState": {}
}"#;
        let s = RkeState::parse(Path::new("c.rkestate"), text).unwrap();
        assert_eq!(s.to_text().expose(), text);
    }
}
