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
