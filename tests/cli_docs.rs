//! Shell completions and the manual page come from the same clap definitions as the
//! commands: every subcommand and flag is in them.

use std::process::Command;

fn rkectl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rkectl")).args(args).output().expect("run rkectl");
    assert!(out.status.success(), "rkectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_action() {
    for shell in ["bash", "zsh", "fish"] {
        let script = rkectl(&["completions", shell]);
        for word in
            ["snapshot-restore", "snapshot-save", "cleanup", "--use-local-state", "--new-pki", "--include-state"]
        {
            // fish names long flags without their dashes (`-l new-pki`).
            assert!(script.contains(word.trim_start_matches('-')), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rkectl.bash");
    std::fs::write(&path, rkectl(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(check.success(), "bash -n refuses the completion script");
}

#[test]
fn the_man_page_is_roff_and_lists_the_commands() {
    let page = rkectl(&["man"]);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{}", &page[..page.len().min(200)]);
    assert!(page.contains(".TH rkectl"), "no title");
    for word in ["up", "etcd", "plan", "apply", "cleanup", "completions"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_rkectl")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2), "an unknown shell is bad input");
}

/// Every command but the hidden agent, by its whole name (`rkectl etcd snapshot-save`),
/// with the long flags it takes.
fn commands() -> Vec<(String, Vec<String>)> {
    fn walk(cmd: &clap::Command, name: String, out: &mut Vec<(String, Vec<String>)>) {
        let flags = cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()).map(String::from);
        out.push((name.clone(), flags.collect()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            walk(sub, format!("{name} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(&<rkectl::cli::args::Cli as clap::CommandFactory>::command(), "rkectl".into(), &mut out);
    out
}

#[test]
fn every_command_and_every_flag_has_a_help_line() {
    let mut cmd = <rkectl::cli::args::Cli as clap::CommandFactory>::command();
    cmd.build();
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, name: &str, missing: &mut Vec<String>) {
        if cmd.get_about().is_none() && name != "rkectl" {
            missing.push(format!("{name} (the command)"));
        }
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_help().is_none() && !matches!(a.get_id().as_str(), "help" | "version") {
                missing.push(format!(
                    "{name} {}",
                    a.get_long().map(|l| format!("--{l}")).unwrap_or(a.get_id().to_string())
                ));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            walk(sub, &format!("{name} {}", sub.get_name()), missing);
        }
    }
    walk(&cmd, "rkectl", &mut missing);
    assert!(missing.is_empty(), "without a help line:\n{}", missing.join("\n"));
}

#[test]
fn man_writes_a_page_per_command_with_every_flag_and_prints_any_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    rkectl(&["man", "--out", out.to_str().unwrap()]);
    let commands = commands();
    assert!(commands.len() > 10, "{commands:?}");
    for (name, flags) in &commands {
        let file = out.join(format!("{}.1", name.replace(' ', "-")));
        let page = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // roff escapes the dashes of flags (`\-\-name`).
        let plain = page.replace("\\-", "-");
        for flag in flags {
            assert!(plain.contains(&format!("--{flag}")), "{} lacks --{flag}", file.display());
        }
        let args: Vec<&str> = name.split(' ').skip(1).collect();
        let printed = rkectl(&[&["man"][..], &args].concat());
        assert_eq!(printed, page, "rkectl man {} prints another page than {}", args.join(" "), file.display());
    }
    assert!(!out.join("rkectl-agent.1").exists(), "the hidden agent got a page");
    // snapshot-list has no plan: `plan` and `apply` do not offer it.
    assert!(out.join("rkectl-etcd-snapshot-list.1").exists());
    for planned in ["plan", "apply"] {
        let page = out.join(format!("rkectl-{planned}-etcd-snapshot-list.1"));
        assert!(!page.exists(), "{} was written", page.display());
    }
    let unknown = Command::new(env!("CARGO_BIN_EXE_rkectl")).args(["man", "etcd", "snapshot-sav"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("`etcd snapshot-sav` is not a command") && said.contains("snapshot-save"), "{said}");
}

#[test]
fn no_color_turns_colours_off_even_on_a_terminal() {
    // One process: the variable is read when asked.
    unsafe { std::env::remove_var("NO_COLOR") };
    assert!(rkectl::terminal::logging::colours(true));
    assert!(!rkectl::terminal::logging::colours(false));
    unsafe { std::env::set_var("NO_COLOR", "1") };
    assert!(!rkectl::terminal::logging::colours(true), "NO_COLOR=1 on a terminal");
    unsafe { std::env::set_var("NO_COLOR", "") };
    assert!(rkectl::terminal::logging::colours(true), "an empty NO_COLOR means unset (no-color.org)");
}

#[test]
fn the_common_flags_are_taken_before_the_command_as_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("other.yml");
    std::fs::write(&yml, "nodes:\n  - address: 10.77.0.11\n    user: root\n    role: [etcd]\n").unwrap();
    let yml = yml.to_str().unwrap();
    for args in [
        vec!["--config", yml, "plan", "up", "--offline"],
        vec!["plan", "--config", yml, "up", "--offline"],
        vec!["plan", "up", "--offline", "--config", yml],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rkectl")).args(&args).current_dir(dir.path()).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?}: {said}");
        // The folder has no cluster.yml: the plan of its one node is other.yml's.
        assert!(said.contains("10.77.0.11 [etcd]"), "{args:?}: {said}");
    }
}

#[test]
fn a_flag_given_by_the_environment_is_not_shown_as_required_and_is_still_taken() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rkectl"))
            .args(args)
            .current_dir(dir.path())
            .env("RKECTL_KNOWN_HOSTS", dir.path().join("known_hosts"))
            .env("RKE_CONFIG", dir.path().join("other.yml"))
            .output()
            .unwrap()
    };
    let out = run(&["etcd", "snapshot-restore"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("Usage: rkectl etcd snapshot-restore --name <NAME>\n"), "{said}");
    std::fs::write(dir.path().join("other.yml"), "nodes:\n  - address: 10.77.0.11\n    user: root\n    role: [etcd]\n")
        .unwrap();
    let out = run(&["plan", "up", "--offline"]);
    assert!(out.status.success(), "RKE_CONFIG names the file: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.77.0.11 [etcd]"));
}

#[test]
fn a_closed_output_pipe_is_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.yml"),
        "nodes:\n  - address: 10.77.0.11\n    user: root\n    role: [etcd]\n    hostname_overid: x\n",
    )
    .unwrap();
    // `rkectl … 2>&1 | head -1`: both streams close before rkectl has written them.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkectl"))
        .args(["plan", "up", "--offline"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(0), "a plan that worked exits 0");
}
