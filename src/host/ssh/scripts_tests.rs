//! The node scripts, run here as `ssh` runs them on a node (`sh -c SCRIPT rkectl ARGS…`):
//! under the machine's `sh` with its tools, and under busybox alone (its `sh` and applets
//! the only commands on `PATH`), as on a node whose userland is busybox. Folders that may
//! not be read are tried as an unprivileged user (`setpriv` to `nobody` when the tests run
//! as root, who may read anything).

use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A shell and the commands it finds.
enum Shell {
    /// The machine's `sh` and `PATH`.
    System,
    /// busybox's `sh`, with a `PATH` of busybox applets only.
    Busybox(PathBuf),
}

/// A folder of links to every busybox applet; the test fails without busybox, which
/// `tests/lab/lab up` installs.
fn busybox(dir: &Path) -> Shell {
    let bin = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox is needed for this test: apt-get install busybox (tests/lab/lab up installs it)");
    let out = Command::new(&bin).arg("--list").output().expect("busybox --list");
    let applets = dir.join("busybox-bin");
    fs::create_dir(&applets).unwrap();
    for a in String::from_utf8_lossy(&out.stdout).lines().filter(|a| !a.is_empty()) {
        symlink(&bin, applets.join(a)).unwrap();
    }
    assert!(applets.join("sh").exists() && applets.join("stat").exists(), "busybox has no sh or stat");
    Shell::Busybox(applets)
}

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Runs `script` with `args` as `$1…`, as an unprivileged user when `unprivileged`.
fn run(shell: &Shell, script: &str, args: &[&str], unprivileged: bool) -> Ran {
    let mut argv: Vec<String> = Vec::new();
    if unprivileged && running_as_root() {
        argv.extend(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"].map(String::from));
    }
    let mut c = match shell {
        Shell::System => {
            argv.push("sh".into());
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
        Shell::Busybox(dir) => {
            argv.push(dir.join("sh").display().to_string());
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]).env_clear().env("PATH", dir);
            c
        }
    };
    c.arg("-c").arg(script).arg("rkectl").args(args);
    let out = c.output().expect("run the script");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn file(path: &Path, bytes: usize, mtime: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(bytes as u64).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn mode(path: &Path, m: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
}

/// A folder the unprivileged user can reach, holding `snaps/` (files of every kind),
/// `closed/inner/` (behind a folder only root may search) and `noread/` (searchable, not
/// readable).
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    mode(t.path(), 0o755);
    let snaps = t.path().join("snaps");
    fs::create_dir(&snaps).unwrap();
    file(&snaps.join("a.zip"), 10, 1_700_000_000);
    file(&snaps.join(".hidden"), 3, 1_700_000_001);
    file(&snaps.join("..dots"), 0, 1_700_000_002);
    file(&snaps.join("tab\tname"), 1, 1_700_000_003);
    fs::create_dir(snaps.join("sub")).unwrap();
    fs::create_dir(snaps.join(".rkectl")).unwrap();
    symlink("a.zip", snaps.join("link")).unwrap();
    mode(&snaps, 0o755);
    let inner = t.path().join("closed/inner");
    fs::create_dir_all(&inner).unwrap();
    file(&inner.join("f"), 1, 1_700_000_000);
    // Not even its owner may search it (an unprivileged run of these tests is its owner).
    mode(&t.path().join("closed"), 0o000);
    let noread = t.path().join("noread");
    fs::create_dir(&noread).unwrap();
    file(&noread.join("f"), 1, 1_700_000_000);
    mode(&noread, 0o311);
    t
}

fn shells(t: &tempfile::TempDir) -> Vec<(&'static str, Shell)> {
    vec![("sh", Shell::System), ("busybox", busybox(t.path()))]
}

#[test]
fn listings_work_with_posix_sh_and_busybox_alone() {
    let t = tree();
    let snaps = t.path().join("snaps").display().to_string();
    for (name, sh) in shells(&t) {
        let r = run(&sh, LIST_SCRIPT, &[&snaps], false);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let want = vec![
            DirEntry { name: "..dots".into(), size: 0, modified: 1_700_000_002 },
            DirEntry { name: ".hidden".into(), size: 3, modified: 1_700_000_001 },
            DirEntry { name: "a.zip".into(), size: 10, modified: 1_700_000_000 },
            DirEntry { name: "tab\tname".into(), size: 1, modified: 1_700_000_003 },
        ];
        assert_eq!(parse_listing(&r.stdout), want, "{name}: regular files only, hidden ones included");
        let r = run(&sh, DIRS_SCRIPT, &[&snaps], false);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.stdout, b"sub\0", "{name}");
        let absent = t.path().join("snaps/nope").display().to_string();
        let deeper = t.path().join("nope/deeper").display().to_string();
        for script in [LIST_SCRIPT, DIRS_SCRIPT, READ_SCRIPT] {
            for p in [&absent, &deeper] {
                let r = run(&sh, script, &[p], true);
                assert_eq!(r.code, EXIT_ABSENT, "{name}: {p}: {}", r.stderr);
            }
        }
        let r = run(&sh, READ_SCRIPT, &[&format!("{snaps}/a.zip")], false);
        assert_eq!((r.code, r.stdout.len()), (0, 10), "{name}: {}", r.stderr);
    }
}

#[test]
fn a_folder_that_cannot_be_read_is_an_error_naming_it_not_an_absent_one() {
    let t = tree();
    let closed = t.path().join("closed").display().to_string();
    let behind = format!("{closed}/inner");
    let noread = t.path().join("noread").display().to_string();
    for (name, sh) in shells(&t) {
        for (script, path, names) in [
            (LIST_SCRIPT, &behind, &closed),
            (DIRS_SCRIPT, &behind, &closed),
            (READ_SCRIPT, &format!("{behind}/f"), &closed),
            (REMOVE_SCRIPT, &format!("{behind}/f"), &closed),
            (LIST_SCRIPT, &noread, &noread),
            (DIRS_SCRIPT, &noread, &noread),
        ] {
            let r = run(&sh, script, &[path], true);
            assert_eq!(r.code, 4, "{name}: {path} must be an error, not absent (exit {}): {}", r.code, r.stderr);
            assert!(r.stderr.contains(names.as_str()), "{name}: the error names {names}: {}", r.stderr);
        }
    }
    mode(&t.path().join("closed"), 0o755);
    mode(&t.path().join("noread"), 0o755);
    assert!(t.path().join("closed/inner/f").exists(), "nothing was removed");
}
