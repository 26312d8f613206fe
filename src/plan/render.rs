//! Rendering a plan for people: per-host diffs of state, then the steps in order.
//!
//! Diffs are computed with `similar` over the before/after lines of each host, so an
//! unchanged line keeps its place and only what moves is marked `-`/`+`. Colours are
//! added only when the caller says the output is a terminal; the text is otherwise
//! identical, which is what the golden tests compare.

use super::{HostChange, Plan};
use crate::model::action::ActionSpec;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write;

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// ANSI colours for `-`/`+` lines.
    pub color: bool,
    /// Show what does not change too (`-v`); by default a host's unchanged lines are
    /// counted, not listed, as Terraform hides unchanged attributes.
    pub verbose: bool,
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

/// The plan as text.
pub fn render(plan: &Plan, opts: RenderOptions) -> String {
    let mut out = String::with_capacity(256 + plan.steps.len() * 80);
    let hosts = plan.changes.iter().filter(|c| c.host != "s3").count();
    let _ = writeln!(
        out,
        "rkectl plan: {} (cluster {}, {hosts} host{})",
        plan.title,
        plan.cluster_name,
        if hosts == 1 { "" } else { "s" }
    );
    if plan.is_destructive() {
        let _ = writeln!(out, "{}", paint(opts.color, "1;31", "DESTRUCTIVE: this plan deletes or replaces data."));
    }
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if !plan.has_changes() {
        let _ = writeln!(out, "\nNo changes. {}", no_changes_because(&plan.action));
        return out;
    }
    let _ = writeln!(out, "\nState (- before, + after):");
    for c in &plan.changes {
        render_change(&mut out, c, opts);
    }
    let _ = writeln!(out, "\nSteps ({}):", plan.step_count());
    let width = plan.steps.iter().map(|s| s.kind().name().len()).max().unwrap_or(0);
    let mut n = 0;
    for s in &plan.steps {
        if s.kind().is_order_only() {
            let _ = writeln!(out, "  ── {} ──", s.action.describe());
            continue;
        }
        n += 1;
        let host = s.host.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "(cluster)".into());
        let _ = writeln!(out, "  {n:>3}. {:<width$}  {host:<15}  {}", s.kind().name(), s.action.describe());
    }
    out
}

fn render_change(out: &mut String, c: &HostChange, opts: RenderOptions) {
    let _ = writeln!(out, "  {}", c.label);
    let before = c.before.join("\n") + "\n";
    let after = c.after.join("\n") + "\n";
    if before == after && c.always_shown.is_empty() {
        if opts.verbose {
            for l in &c.before {
                let _ = writeln!(out, "      {l}");
            }
            let _ = writeln!(out, "      (unchanged)");
        } else {
            let n = c.before.len();
            let _ = writeln!(out, "      ({n} unchanged {}; -v shows {})", items(n), them(n));
        }
        return;
    }
    let diff = TextDiff::from_lines(&before, &after);
    let mut hidden = 0;
    for change in diff.iter_all_changes() {
        let line = change.value().trim_end_matches('\n');
        if line.is_empty() {
            continue;
        }
        let text = match change.tag() {
            ChangeTag::Delete => paint(opts.color, "31", &format!("    - {line}")),
            ChangeTag::Insert => paint(opts.color, "32", &format!("    + {line}")),
            ChangeTag::Equal if !opts.verbose && !c.always_shown.iter().any(|l| l == line) => {
                hidden += 1;
                continue;
            }
            ChangeTag::Equal => format!("      {line}"),
        };
        let _ = writeln!(out, "{text}");
    }
    if hidden > 0 {
        let _ = writeln!(out, "      (and {hidden} unchanged {}; -v shows {})", items(hidden), them(hidden));
    }
}

fn items(n: usize) -> &'static str {
    if n == 1 { "item" } else { "items" }
}

fn them(n: usize) -> &'static str {
    if n == 1 { "it" } else { "them" }
}

/// Why a plan without changes has none, in the action's terms.
fn no_changes_because(action: &ActionSpec) -> &'static str {
    match action {
        ActionSpec::EtcdSnapshotPrune { .. } => "No snapshot is pruned.",
        ActionSpec::EtcdSnapshotDelete { .. } => "The snapshot is already gone.",
        _ => "The hosts already match cluster.yml.",
    }
}
