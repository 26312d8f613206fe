//! The members' own steps: certificates, the etcd container, the recurring snapshot
//! service, and the summary of what changes on each host.

use super::*;

impl<'a> Builder<'a> {
    /// Certificates go to a member's host when its CA file is missing or is not the
    /// cluster's CA, its own certificate or key is missing, or its certificate does not
    /// carry the names the member is reached by now (its address, internal address or
    /// hostname_override changed: etcd would advertise an address its certificate does not
    /// name). Other files that are there and chained to the cluster's CA are left alone:
    /// they are RKE's, and RKE's cert-deployer does not rewrite them either.
    pub(super) fn plan_deploy_certs(&self, node: &Node) -> Option<StepAction> {
        let member = etcd::member_name(node);
        if self.offline() {
            return Some(StepAction::DeployCerts { member, replaces: None });
        }
        let files = self.facts(&node.address).and_then(|f| f.certs.clone()).unwrap_or_default();
        let ca_ok = files.ca.is_some() && files.ca.as_ref() == self.input.pki_ca;
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
            return Some(StepAction::DeployCerts {
                member,
                replaces: Some(Replacement { what: format!("the certificate {path}"), why }),
            });
        }
        let replaces = match (&files.ca, self.input.pki_ca) {
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
        Some(StepAction::DeployCerts { member, replaces })
    }

    pub(super) fn plan_start_etcd(&self, node: &'a Node) -> Option<StepAction> {
        let host = &node.address;
        let member = etcd::member_name(node);
        if let ActionSpec::EtcdSnapshotRestore { .. } = self.input.action {
            return Some(StepAction::StartEtcd {
                member,
                initial_cluster: InitialCluster::AllEtcdNodes,
                cluster_state: ClusterState::New,
                replaces: None,
                restart: false,
            });
        }
        let facts = self.facts(host);
        let arch = facts.map(|f| f.arch.as_str()).filter(|a| !a.is_empty()).unwrap_or("x86_64");
        let current = facts.and_then(|f| f.containers.get(names::ETCD));
        let differences =
            current.map(|c| crate::etcd::member::differences(self.cluster(), node, arch, c)).unwrap_or_default();
        let up_to_date = current.is_some_and(|c| c.running) && differences.is_empty();
        let new_certs = self.planned.contains(&(host.clone(), StepKind::DeployCerts));
        if up_to_date && !new_certs {
            return None;
        }
        // etcd reads its trusted CA only when it starts, and keeps the connections it made
        // with its old certificate: a member whose container stays restarts to take the
        // certificates just placed.
        let restart = up_to_date && new_certs;
        let replaces = match current {
            Some(c) if c.made_by != MadeBy::Rkectl && !differences.is_empty() => Some(Replacement {
                what: format!("the etcd container {}", made_by(c.made_by)),
                why: format!("cluster.yml asks for a different one: {}", differences.join(", ")),
            }),
            _ => None,
        };
        let others_running = self.running_members().iter().any(|n| &n.address != host);
        let joining = self.planned.contains(&(host.clone(), StepKind::MemberAdd));
        let (cluster_state, initial_cluster) = if joining {
            // A joining member's initial cluster is the current members plus itself.
            let mut hosts: Vec<HostAddr> = self.running_members().iter().map(|n| n.address.clone()).collect();
            if !hosts.contains(&node.address) {
                hosts.push(node.address.clone());
            }
            (ClusterState::Existing, InitialCluster::Hosts { hosts })
        } else if others_running || current.is_some() {
            (ClusterState::Existing, InitialCluster::AllEtcdNodes)
        } else {
            (ClusterState::New, InitialCluster::AllEtcdNodes)
        };
        Some(StepAction::StartEtcd { member, initial_cluster, cluster_state, replaces, restart })
    }

    pub(super) fn plan_start_rolling(&mut self, node: &Node) -> Option<StepAction> {
        let cluster = self.cluster();
        let settings = containers::rolling_settings(cluster, node)?;
        let current = self.facts(&node.address).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS));
        let what = |c: &ContainerFacts| format!("etcd-rolling-snapshots {}", made_by(c.made_by));
        let replaces = match current {
            Some(c) if c.made_by == MadeBy::Rkectl => {
                let spec = containers::rolling_snapshots(cluster, node, &settings);
                if c.running && c.spec_hash.as_ref() == spec.labels.get(containers::SPEC_HASH_LABEL) {
                    return None;
                }
                None
            }
            Some(c) => match containers::rke_rolling_mismatch(cluster, c) {
                // RKE's own service already does what cluster.yml asks: it stays.
                None if c.running => {
                    self.kept_rke_rolling.push(node.address.to_string());
                    return None;
                }
                None => Some(Replacement { what: what(c), why: "it is not running".into() }),
                Some(why) => Some(Replacement { what: what(c), why }),
            },
            None => None,
        };
        Some(StepAction::StartRollingSnapshots { settings, replaces })
    }

    pub(super) fn plan_remove_rolling(&self, host: &HostAddr) -> Option<StepAction> {
        let wanted = self.node(host).and_then(|n| containers::rolling_settings(self.cluster(), n)).is_some();
        let current = self.facts(host).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS))?;
        if wanted {
            return None;
        }
        let replaces = (current.made_by != MadeBy::Rkectl).then(|| Replacement {
            what: format!("etcd-rolling-snapshots {}", made_by(current.made_by)),
            why: "cluster.yml enables no recurring snapshots (services.etcd.snapshot is off unless set, as in the reference; RKE itself turns it on by default): set `snapshot: true` or a backup_config to keep them".into(),
        });
        Some(StepAction::RemoveRollingSnapshots { replaces })
    }

    pub(super) fn changes(&self) -> Vec<HostChange> {
        let action = self.input.action;
        let shown = |n: &SnapshotName| match action {
            ActionSpec::EtcdSnapshotPrune { .. } => true,
            _ => action.snapshot() == Some(n),
        };
        let acted_on: HashSet<&HostAddr> = self.steps.iter().filter_map(|s| s.host.as_ref()).collect();
        let mut hosts: Vec<(HostAddr, String)> = self
            .cluster()
            .nodes
            .iter()
            .filter(|n| n.has_role(Role::Etcd) || acted_on.contains(&n.address))
            .map(|n| {
                let roles = n.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
                let name = n.hostname_override.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
                (n.address.clone(), format!("{}{name} [{roles}]", n.address))
            })
            .collect();
        for m in self.input.removed_members {
            hosts.push((m.address.clone(), format!("{} ({}, leaving the cluster)", m.address, m.member)));
        }
        let mut before: BTreeMap<ViewKey, View> = BTreeMap::new();
        for (h, _) in &hosts {
            before.insert(ViewKey::Host(h.clone()), View::from_facts(self.input.observed.host(h), &shown));
        }
        if let Some(v) = View::from_s3(self.input.observed, &shown) {
            before.insert(ViewKey::S3, v);
        }
        let mut after = before.clone();
        for s in &self.steps {
            crate::plan::view::apply(s, &mut after, &self.cluster().etcd.image);
        }
        let mut out: Vec<HostChange> = hosts
            .into_iter()
            .map(|(h, label)| {
                let key = ViewKey::Host(h.clone());
                HostChange {
                    host: h.to_string(),
                    label,
                    before: before.get(&key).map(View::lines).unwrap_or_default(),
                    after: after.get(&key).map(View::lines).unwrap_or_default(),
                }
            })
            .collect();
        if let Some(a) = after.get(&ViewKey::S3) {
            let target = action.s3().map(|t| t.to_string()).unwrap_or_else(|| "S3".into());
            out.push(HostChange {
                host: "s3".into(),
                label: target,
                before: before.get(&ViewKey::S3).map(View::lines).unwrap_or_default(),
                after: a.lines(),
            });
        }
        out
    }
}

fn made_by(m: MadeBy) -> &'static str {
    match m {
        MadeBy::Rke => "that RKE made",
        MadeBy::Rkectl => "that rkectl made",
        MadeBy::Unknown => "that neither RKE nor rkectl made",
    }
}
