//! Saved plans are values with an integrity check: a plan read back from a file is applied
//! only when its steps are exactly those the compiler makes from the same inputs (the
//! action, cluster.yml, what the hosts show now, the clock the plan was made with).
//!
//! The observed fingerprint and the cluster hash say the plan's inputs have not changed;
//! they say nothing of the steps, which a file carries as plain JSON. A file edited by hand,
//! or by a CI job that carries it, could drop the `verify-snapshot` steps a restore waits
//! for, or add a `clean-host`, and still match both. So the steps are compiled again and
//! compared here, kind, host, parameters and edges, and the first difference is named. The
//! caller then runs the compiled plan, never the file's.

use super::{Plan, Step, StepId};
use miette::Diagnostic;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// The first way a saved plan's steps differ from the compiled plan's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Difference {
    /// A step the compiler plans is not in the saved plan.
    #[error("step {position} of the compiled plan, {step}, is not in the file")]
    Missing { position: usize, step: String },
    /// The saved plan has a step the compiler does not plan (or has one twice).
    #[error("the file's step {position}, {step}, is not in the compiled plan")]
    Added { position: usize, step: String },
    /// A step of that id is another kind of step.
    #[error("the file's step `{id}` is a `{saved}` step, the compiled plan's a `{compiled}` step")]
    Kind { id: StepId, saved: String, compiled: String },
    /// A step runs on another host.
    #[error("the file's step `{id}` runs on {saved}, the compiled plan's on {compiled}")]
    Host { id: StepId, saved: String, compiled: String },
    /// A step's parameters differ.
    #[error("the file's step `{id}` has `{field}` {saved}, the compiled plan's {compiled}")]
    Parameter { id: StepId, field: String, saved: String, compiled: String },
    /// A step waits for other steps.
    #[error("the file's step `{id}` waits for [{saved}], the compiled plan's for [{compiled}]")]
    Edges { id: StepId, saved: String, compiled: String },
}

/// A saved plan refused because its steps are not what the compiler makes from its inputs.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("the plan in {} is not the plan rkectl compiles from its inputs: {difference}", file.display())]
#[diagnostic(
    code(rkectl::plan::altered),
    help(
        "nothing was changed. Its steps are not what rkectl plans from its action and the hosts as they are: the file was edited after `rkectl plan --out` wrote it (or the state files beside cluster.yml changed since). Plan again and review the new file before applying it"
    )
)]
pub struct NotAsCompiled {
    /// The plan file.
    pub file: PathBuf,
    /// Its first difference from the compiled plan.
    pub difference: Difference,
}

/// A plan made with `--offline`: it did not look at the hosts, so nothing may apply it.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("an offline plan cannot be applied: it did not look at the hosts")]
#[diagnostic(code(rkectl::refused), help("plan again without --offline"))]
pub struct OfflinePlan;

/// Refuses a plan made offline (read back from a file, or handed to the library's apply).
pub fn check_online(plan: &Plan) -> Result<(), OfflinePlan> {
    match plan.observed {
        super::Observed::Offline => Err(OfflinePlan),
        super::Observed::Online(_) => Ok(()),
    }
}

/// Checks that `saved` has exactly the steps of `compiled` (the same inputs compiled
/// again): each step's id, kind, host, parameters and the steps it waits for. The order
/// of the list does not matter (the edges order a run); a step missing is reported
/// first, then a step added, then a step changed, each in plan order: a removed or added
/// step is what a reader needs to hear, and it usually changes its neighbours' edges too.
pub fn check_as_compiled(saved: &Plan, compiled: &Plan) -> Result<(), Difference> {
    let mut by_id: HashMap<&StepId, &Step> = HashMap::with_capacity(saved.steps.len());
    let mut extra = None;
    for (i, s) in saved.steps.iter().enumerate() {
        if by_id.insert(&s.id, s).is_some() && extra.is_none() {
            extra = Some((i, s));
        }
    }
    let compiled_ids: HashMap<&StepId, &Step> = compiled.steps.iter().map(|s| (&s.id, s)).collect();
    if let Some((i, s)) = compiled.steps.iter().enumerate().find(|(_, s)| !by_id.contains_key(&s.id)) {
        return Err(Difference::Missing { position: i + 1, step: name(s) });
    }
    let added = saved.steps.iter().enumerate().find(|(_, s)| !compiled_ids.contains_key(&s.id));
    if let Some((i, s)) = added.or(extra) {
        return Err(Difference::Added { position: i + 1, step: name(s) });
    }
    for want in &compiled.steps {
        compare_step(by_id[&want.id], want)?;
    }
    Ok(())
}

/// `` `verify-snapshot@10.0.0.2` (verify …) ``: the id and what the step does.
fn name(s: &Step) -> String {
    format!("`{}` ({})", s.id, s.action.describe())
}

fn compare_step(saved: &Step, compiled: &Step) -> Result<(), Difference> {
    let id = compiled.id.clone();
    if saved.kind() != compiled.kind() {
        return Err(Difference::Kind {
            id,
            saved: saved.kind().name().to_string(),
            compiled: compiled.kind().name().to_string(),
        });
    }
    if saved.host != compiled.host {
        let on = |h: &Option<crate::config::HostAddr>| h.as_ref().map_or("(the cluster)".into(), |h| h.to_string());
        return Err(Difference::Host { id, saved: on(&saved.host), compiled: on(&compiled.host) });
    }
    let a = serde_json::to_value(&saved.action).expect("a step serialises");
    let b = serde_json::to_value(&compiled.action).expect("a step serialises");
    if let Some((field, x, y)) = first_difference(&a, &b, String::new()) {
        return Err(Difference::Parameter { id, field, saved: shown(x), compiled: shown(y) });
    }
    let (x, y) = (waits_for(saved), waits_for(compiled));
    if x != y {
        let list = |s: BTreeSet<&str>| s.into_iter().collect::<Vec<_>>().join(", ");
        return Err(Difference::Edges { id, saved: list(x), compiled: list(y) });
    }
    Ok(())
}

/// The steps a step waits for, as a set: their order in the file means nothing.
fn waits_for(s: &Step) -> BTreeSet<&str> {
    s.after.iter().map(|d| d.0.as_str()).collect()
}

/// The first field (a dotted path) where two JSON values differ, with both sides.
fn first_difference<'a>(
    a: &'a serde_json::Value,
    b: &'a serde_json::Value,
    path: String,
) -> Option<(String, Option<&'a serde_json::Value>, Option<&'a serde_json::Value>)> {
    use serde_json::Value;
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, at(k)) {
                            return Some(d);
                        }
                    }
                    None => return Some((at(k), Some(v), None)),
                }
            }
            y.iter().find(|(k, _)| !x.contains_key(*k)).map(|(k, w)| (at(k), None, Some(w)))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (v, w))| first_difference(v, w, at(&i.to_string())))
        }
        _ if a == b => None,
        _ => Some((if path.is_empty() { "(the step)".into() } else { path }, Some(a), Some(b))),
    }
}

/// A value as it reads in a message: compact JSON, cut short, `(none)` when absent.
fn shown(v: Option<&serde_json::Value>) -> String {
    const MAX: usize = 80;
    let Some(v) = v else { return "(none)".into() };
    let text = v.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::HostAddr;
    use crate::model::action::{ActionSpec, RestoreSearch};
    use crate::model::observed::Observed;
    use crate::model::{Checksum, SnapshotFacts, SnapshotFormat, SnapshotName};
    use crate::steps::StepAction;
    use crate::steps::{Barrier, CleanHost, Dial, VerifySnapshot};

    fn step(id: &str, host: Option<&str>, after: &[&str], action: StepAction) -> Step {
        Step {
            id: StepId(id.into()),
            host: host.map(|h| HostAddr(h.into())),
            after: after.iter().map(|a| StepId(a.to_string())).collect(),
            action,
        }
    }

    fn verify(checksum: &[u8]) -> StepAction {
        StepAction::VerifySnapshot(VerifySnapshot {
            snapshot: SnapshotName::new("snap.db").unwrap(),
            format: SnapshotFormat::Raw,
            expect: Some(SnapshotFacts { size: 3, checksum: Checksum::of(checksum) }),
        })
    }

    /// Two hosts verified, a barrier, then both cleaned: a restore's pre-flight and its
    /// first destructive step.
    pub(crate) fn restore() -> Plan {
        let steps = vec![
            step("dial@10.0.0.1", Some("10.0.0.1"), &[], StepAction::Dial(Dial {})),
            step("dial@10.0.0.2", Some("10.0.0.2"), &[], StepAction::Dial(Dial {})),
            step("verify-snapshot@10.0.0.1", Some("10.0.0.1"), &["dial@10.0.0.1"], verify(b"abc")),
            step("verify-snapshot@10.0.0.2", Some("10.0.0.2"), &["dial@10.0.0.2"], verify(b"abc")),
            step(
                "barrier#1",
                None,
                &["verify-snapshot@10.0.0.1", "verify-snapshot@10.0.0.2"],
                StepAction::Barrier(Barrier { reason: "every copy verified".into() }),
            ),
            step("clean-host@10.0.0.1", Some("10.0.0.1"), &["barrier#1"], StepAction::CleanHost(CleanHost {})),
            step("clean-host@10.0.0.2", Some("10.0.0.2"), &["barrier#1"], StepAction::CleanHost(CleanHost {})),
        ];
        Plan {
            format: crate::plan::FORMAT,
            action: ActionSpec::EtcdSnapshotRestore {
                name: SnapshotName::new("snap.db").unwrap(),
                from: RestoreSearch::Hosts,
            },
            title: "restore".into(),
            cluster_name: "test".into(),
            cluster_hash: "h".into(),
            made_at: 0,
            observed: Observed::Offline,
            observed_fingerprint: "f".into(),
            notes: Vec::new(),
            steps,
            changes: Vec::new(),
        }
    }

    #[test]
    fn the_same_steps_pass_in_any_order() {
        let compiled = restore();
        assert_eq!(check_as_compiled(&compiled.clone(), &compiled), Ok(()));
        let mut saved = compiled.clone();
        saved.steps.reverse();
        saved.steps[0].after.reverse();
        saved.notes.push("a note the compiler did not write is not a step".into());
        assert_eq!(check_as_compiled(&saved, &compiled), Ok(()));
    }

    #[test]
    fn a_removed_verify_step_is_named() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps.remove(3);
        // Re-wired so that the graph still holds: only the step itself is gone.
        saved.steps[3].after.retain(|a| a.0 != "verify-snapshot@10.0.0.2");
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        let step = format!("`verify-snapshot@10.0.0.2` ({})", compiled.steps[3].action.describe());
        assert_eq!(d, Difference::Missing { position: 4, step });
        assert!(
            d.to_string()
                .starts_with("step 4 of the compiled plan, `verify-snapshot@10.0.0.2` (verify snapshot snap.db"),
            "{d}"
        );
    }

    #[test]
    fn an_added_destructive_step_is_named() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps.insert(
            2,
            step("clean-host@10.0.0.3", Some("10.0.0.3"), &["dial@10.0.0.1"], StepAction::CleanHost(CleanHost {})),
        );
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        assert!(
            matches!(&d, Difference::Added { position: 3, step } if step.starts_with("`clean-host@10.0.0.3`")),
            "{d}"
        );
    }

    #[test]
    fn a_step_listed_twice_counts_as_added() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps.push(saved.steps[5].clone());
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        assert!(matches!(&d, Difference::Added { position: 8, .. }), "{d}");
    }

    #[test]
    fn a_step_moved_before_the_barrier_is_named() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps[5].after = vec![StepId("dial@10.0.0.1".into())];
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        assert_eq!(
            d,
            Difference::Edges {
                id: StepId("clean-host@10.0.0.1".into()),
                saved: "dial@10.0.0.1".into(),
                compiled: "barrier#1".into()
            }
        );
    }

    #[test]
    fn a_changed_parameter_is_named_with_its_field() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps[2].action = verify(b"xyz");
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        let Difference::Parameter { id, field, saved: s, compiled: c } = &d else { panic!("{d}") };
        assert_eq!(id.0, "verify-snapshot@10.0.0.1");
        assert_eq!(field, "expect.checksum");
        assert_eq!((s, c), (&format!("\"{}\"", Checksum::of(b"xyz")), &format!("\"{}\"", Checksum::of(b"abc"))));
    }

    #[test]
    fn a_step_of_another_kind_or_host_under_a_known_id_is_named() {
        let compiled = restore();
        let mut saved = compiled.clone();
        saved.steps[2].action = StepAction::CleanHost(CleanHost {});
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        assert!(
            matches!(&d, Difference::Kind { saved, compiled, .. } if saved == "clean-host" && compiled == "verify-snapshot"),
            "{d}"
        );

        let mut saved = compiled.clone();
        saved.steps[5].host = Some(HostAddr("10.0.0.9".into()));
        let d = check_as_compiled(&saved, &compiled).unwrap_err();
        assert!(matches!(&d, Difference::Host { saved, .. } if saved == "10.0.0.9"), "{d}");
    }

    #[test]
    fn long_values_are_cut_short() {
        let long = serde_json::Value::String("x".repeat(200));
        let s = shown(Some(&long));
        assert!(s.chars().count() == 81 && s.ends_with('…'), "{s}");
        assert_eq!(shown(None), "(none)");
    }
}
