//! The commands that apply a plan: an action (plan, confirm, apply), a saved plan file,
//! and an unfinished apply; each ends in the library's `apply` and renders its outcome.

use super::interrupts::Interrupts;
use super::*;

pub(super) fn show(plan: &Plan, common: &Common) {
    let mut out = std::io::stdout().lock();
    if common.json {
        drop(out);
        json_line("plan", plan);
    } else {
        let color = logging::colours(std::io::stdout().is_terminal());
        let _ = write!(out, "{}", render(plan, RenderOptions { color, verbose: logging::verbose() }));
    }
}

pub(super) fn confirm(plan: &Plan, common: &Common, what: &str) -> Result<(), CliError> {
    if !plan.needs_confirmation() || common.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            format!("this plan needs confirmation ({what}) and there is no terminal to confirm it"),
            "review the plan above, then re-run with --yes",
        ));
    }
    eprint!("{what}. Type `yes` to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| CliError::input(e.to_string(), "answer yes or no"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(refuse("not confirmed; nothing was changed", "type `yes` to apply, or use --yes"))
    }
}

pub(super) async fn act(common: &Common, action: &Action) -> Result<Moved, CliError> {
    let cfg = load_config(common)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let resolved = inputs::resolve(action, &cfg.cluster)?;
    let locks = lock_cluster(&paths, resolved.spec.template_name())?;
    if paths.journal.exists() {
        return Err(CliError::refused(crate::resume::unfinished(&paths)));
    }
    let prepared = prepare(cfg, common, resolved, false, Some(locks.holder.clone())).await?;
    show(&prepared.plan, common);
    if !prepared.plan.has_changes() {
        return Ok(None);
    }
    let what = prepared.plan.destruction_summary();
    confirm(&prepared.plan, common, &what)?;
    apply(prepared, common, None, locks).await
}

pub(super) async fn apply(
    p: Prepared,
    common: &Common,
    resume: Option<JournalState>,
    locks: Locks,
) -> Result<Moved, CliError> {
    let human: Arc<dyn Reporter> = if common.json {
        Arc::new(reporter::JsonLines)
    } else {
        Arc::new(reporter::Human::new(std::io::stderr().is_terminal(), logging::quiet()))
    };
    if let ActionSpec::EtcdSnapshotSave { name, generated_name: true, .. } = &p.plan.action {
        eprintln!("WARN[0000] Name of the snapshot is not specified using [{name}]");
    }
    let action = p.plan.action.clone();
    logging::info(0, action.start_line());
    let interrupts = Interrupts::listen();
    let request = crate::apply::ApplyRequest {
        connector: connector(common, &p.cfg.cluster),
        prepared: p,
        resume,
        lock_holder: locks.holder.clone(),
        reporter: human.as_ref(),
        parallelism: common.parallelism.map(|n| n as usize),
        stop: Some(interrupts.stop.clone()),
    };
    let result = crate::apply::apply(request).await;
    let signal = interrupts.finish();
    let applied = result.map_err(|e| match (signal, &e) {
        (
            Some(exit),
            crate::apply::ApplyError::Interrupted { .. } | crate::apply::ApplyError::InterruptedBeforeChanges,
        ) => CliError::Interrupted { message: e.to_string(), exit },
        _ if e.changed_cluster() => CliError::ApplyFailed(e.to_string()),
        _ => CliError::refused(e),
    })?;
    let secs = applied.elapsed.as_secs();
    let moved = applied.traffic;
    if moved != Traffic::default() {
        logging::info(
            secs,
            format!(
                "Snapshot bytes moved: {} host to host, {} through this workstation",
                moved.host_to_host_bytes, moved.workstation_bytes
            ),
        );
    }
    logging::info(secs, action.done_line());
    drop(locks);
    Ok(Some(moved))
}

pub(super) async fn apply_file(common: &Common, file: &std::path::Path, s3_flags: &S3Flags) -> Result<Moved, CliError> {
    let saved = plan::file::read(file).map_err(CliError::refused)?;
    let cfg = load_config(common)?;
    plan::file::check_fits(&saved, &cfg, file).map_err(CliError::refused)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let locks = lock_cluster(&paths, saved.action.template_name())?;
    if paths.journal.exists() {
        return Err(CliError::refused(crate::resume::unfinished(&paths)));
    }
    // The file's steps are never run as written: its inputs are compiled again, and what
    // runs is that plan, once the file is proven to hold exactly its steps.
    let fresh = prepare_again(common, cfg, &saved, s3_flags, &locks).await?;
    plan::file::check_unchanged(&saved, &fresh.plan, file).map_err(CliError::refused)?;
    show(&fresh.plan, common);
    if !fresh.plan.has_changes() {
        return Ok(None);
    }
    confirm(&fresh.plan, common, &fresh.plan.destruction_summary())?;
    apply(fresh, common, None, locks).await
}

/// Prepares a saved plan's action again, under the locks already held and with the clock
/// the plan was made with, to compare what it sees now and the steps it compiles with the
/// plan's.
async fn prepare_again(
    common: &Common,
    cfg: LoadedConfig,
    plan: &Plan,
    s3_flags: &S3Flags,
    locks: &Locks,
) -> Result<Prepared, CliError> {
    let r = inputs::for_plan(&plan.action, s3_flags, &cfg.cluster)?;
    let (secrets, keys_from) = (r.secrets(), r.keys_from);
    let connector = connector(common, &cfg.cluster);
    let input =
        crate::prepare::PrepareInput::again(cfg, plan, r.s3, r.state_passphrase, connector, locks.holder.clone());
    prepare_input(input, &secrets, keys_from).await
}

pub(super) async fn resume(common: &Common, s3_flags: &S3Flags, abandon: bool) -> Result<Moved, CliError> {
    let cfg = load_config(common)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    // Under the lock: an apply still running elsewhere owns its journal.
    let locks = lock_cluster(&paths, if abandon { "apply --abandon" } else { "apply (resume)" })?;
    if !paths.journal.exists() {
        return Err(CliError::input(
            format!("nothing to apply: no plan file given and no unfinished apply next to {}", cfg.path.display()),
            "run an action (`rkectl apply etcd snapshot-restore --name …`) or `rkectl apply PLAN_FILE`",
        ));
    }
    if abandon {
        let aside = crate::resume::set_aside(&paths)
            .map_err(|e| CliError::input(e.to_string(), "check the folder's permissions"))?;
        eprintln!("The unfinished apply was set aside as {}", aside.display());
        return Ok(None);
    }
    let j = crate::resume::read_unfinished(&cfg).map_err(CliError::refused)?;
    eprint!("{}", crate::resume::steps_left(&j));
    let r = inputs::for_plan(&j.plan.action, s3_flags, &cfg.cluster)?;
    let prepared = crate::resume::prepare_resume(cfg, &j, r.s3, r.state_passphrase).map_err(CliError::refused)?;
    let plan = &prepared.plan;
    confirm(plan, common, &format!("Finish: {}", plan.destruction_summary()))?;
    apply(prepared, common, Some(j), locks).await
}
