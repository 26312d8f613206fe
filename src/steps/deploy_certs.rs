//! `deploy-certs`: places the cluster's CA and a member's certificate and key on its host,
//! where RKE's cert-deployer puts them, when they are missing, another CA's, or do not
//! name the member as it is reached now.

use super::{Executor, Kind};
use crate::config::{HostAddr, Node};
use crate::etcd;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::model::step::Replacement;
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Places the member's certificates and the CA on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployCerts {
    pub member: String,
    pub replaces: Option<Replacement>,
}

impl DeployCerts {
    /// Certificates go to a member's host when its CA file is missing or is not the
    /// cluster's CA, its own certificate or key is missing, or its certificate does not
    /// carry the names the member is reached by now (its address, internal address or
    /// hostname_override changed: etcd would advertise an address its certificate does not
    /// name). Other files that are there and chained to the cluster's CA are left alone:
    /// they are RKE's, and RKE's cert-deployer does not rewrite them either.
    fn plan_one(b: &Builder<'_>, node: &Node) -> Option<Self> {
        let member = etcd::member_name(node);
        let files = b.facts(&node.address).and_then(|f| f.certs.clone()).unwrap_or_default();
        let ca_ok = files.ca.is_some() && files.ca.as_ref() == b.input.pki_ca;
        if ca_ok && files.cert && files.key {
            let path = crate::etcd::member::tls_files(node).cert;
            let why = match &files.cert_sans {
                None => "it holds no certificate rkectl can read".to_string(),
                Some(sans) => {
                    let names = crate::rke::pki::member_names(node);
                    let missing = sans.missing(&names);
                    if missing.is_empty() {
                        return None;
                    }
                    format!(
                        "it does not name {} (cluster.yml's address, internal_address or hostname_override of this node)",
                        missing.join(", ")
                    )
                }
            };
            return Some(DeployCerts {
                member,
                replaces: Some(Replacement { what: format!("the certificate {path}"), why }),
            });
        }
        let replaces = match (&files.ca, b.input.pki_ca) {
            (Some(have), Some(want)) if have != want => Some(Replacement {
                what: format!("the certificates in {}", crate::rke::pki::CERT_DIR),
                why: format!(
                    "its kube-ca.pem is another CA ({}) than the cluster's PKI ({})",
                    have.short(),
                    want.short()
                ),
            }),
            _ => None,
        };
        Some(DeployCerts { member, replaces })
    }

}

impl Kind for DeployCerts {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let node = b.node(host).expect("certificates go to etcd nodes");
        Ok(DeployCerts::plan_one(b, node).into_iter().collect())
    }

    fn describe(&self) -> String {
        format!("place CA and certificates of {}", self.member)
    }

    fn replaces(&self) -> Option<&Replacement> {
        self.replaces.as_ref()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.insert(Resource::Certificates, format!("the cluster's CA, {}'s certificate and key", self.member));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let member = &self.member;
        let host = ex.host(addr).await?;
        let node = ex.node(addr)?;
        let pki = ex.pki.as_ref().ok_or_else(|| StepError::fatal("the cluster has no PKI in its state file"))?;
        let files = pki
            .member_files(node)
            .ok_or_else(|| StepError::fatal(format!("the PKI has no certificate for {member} ({addr})")))?;
        for (path, content, mode) in files {
            host.write_file(&path, content.expose().as_bytes(), mode).await?;
        }
        ctx.log("certificates", format!("Deployed certificates of [{member}] to host [{addr}]"));
        Ok(())
    }
}
