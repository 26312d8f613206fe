//! The summary of what changes on each host: views before, and after the steps' effects.

use super::*;

/// Each host's (and S3's) view before the plan and after its steps' effects.
pub(super) fn of(b: &Builder<'_>) -> Vec<HostChange> {
    let action = b.input.action;
    let shown = |n: &SnapshotName| match action {
        ActionSpec::EtcdSnapshotPrune { .. } => true,
        _ => action.snapshot() == Some(n),
    };
    let acted_on: HashSet<&HostAddr> = b.steps.iter().filter_map(|s| s.host.as_ref()).collect();
    let mut hosts: Vec<(HostAddr, String)> = b
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
    for m in b.input.removed_members {
        hosts.push((m.address.clone(), format!("{} ({}, leaving the cluster)", m.address, m.member)));
    }
    let mut before: BTreeMap<ViewKey, View> = BTreeMap::new();
    for (h, _) in &hosts {
        before.insert(ViewKey::Host(h.clone()), View::from_facts(b.input.observed.host(h), &shown));
    }
    if let Some(v) = View::from_s3(b.input.observed, &shown) {
        before.insert(ViewKey::S3, v);
    }
    let mut after = before.clone();
    for s in &b.steps {
        crate::steps::effect::apply(s, &mut after, &b.cluster().etcd.image);
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
                always_shown: always_shown(before.get(&key), after.get(&key)),
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
            always_shown: always_shown(before.get(&ViewKey::S3), Some(a)),
        });
    }
    out
}

/// The lines of either view listed even when they do not change.
fn always_shown(before: Option<&View>, after: Option<&View>) -> Vec<String> {
    let mut lines: Vec<String> = before.into_iter().chain(after).flat_map(View::always_shown).collect();
    lines.sort();
    lines.dedup();
    lines
}
