//! What is generated from the command definitions: shell completions and manual pages,
//! so that they list every subcommand and flag the parser takes.

use super::args::Cli;
use std::path::Path;
use std::process::ExitCode;

/// Prints `shell`'s completion script.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rkectl", &mut script);
    print("completions", &script)
}

/// With `out`, writes a page per command (`rkectl.1`, `rkectl-etcd-snapshot-save.1`…) into
/// that folder; else prints the page of the command `path` names (the top page when empty).
pub fn man(out: Option<&Path>, path: &[String]) -> ExitCode {
    let cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    if let Some(dir) = out {
        return match std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rkectl man: cannot write the pages into {}: {e}", dir.display());
                ExitCode::from(1)
            }
        };
    }
    let mut cmd = cmd;
    // Built first: a subcommand's page is titled with its whole name (rkectl-etcd-…).
    cmd.build();
    let mut page_of = cmd;
    for (i, word) in path.iter().enumerate() {
        let Some(sub) = page_of.find_subcommand(word).filter(|s| !s.is_hide_set()).cloned() else {
            let known: Vec<_> =
                page_of.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
            eprintln!("rkectl man: `{}` is not a command; its pages are: {}", path[..=i].join(" "), known.join(", "));
            return ExitCode::from(2);
        };
        page_of = sub;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let named: String = path.iter().map(|w| format!(" {w}")).collect();
        eprintln!("rkectl man writes roff: read it with `rkectl man{named} | man -l -`");
    }
    let mut page = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page_of).render(&mut page) {
        eprintln!("rkectl man: {e}");
        return ExitCode::from(1);
    }
    print("man", &page)
}

/// Writes generated text to stdout; a closed pipe (`| head`) is no failure.
fn print(what: &str, text: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkectl {what}: {e}");
            ExitCode::from(1)
        }
    }
}
