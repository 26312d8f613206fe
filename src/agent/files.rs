//! File work on a node: emptying the data folder, moving restored data in, linking logs.

use super::AgentError;
use super::report::{self, Done};
use std::path::Path;

fn sync_dir(p: &Path) {
    if let Ok(d) = std::fs::File::open(p) {
        let _ = d.sync_all();
    }
}

/// Removes everything inside `data_dir` (the folder itself is a mount point and stays).
pub fn clean(data_dir: &Path) -> Result<(), AgentError> {
    let mut removed = 0;
    if data_dir.exists() {
        for entry in std::fs::read_dir(data_dir)? {
            let p = entry?.path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
            removed += 1;
        }
        sync_dir(data_dir);
    }
    println!(
        "{}",
        report::line(&Done {
            changed: removed > 0,
            detail: format!("removed {removed} entries from {}", data_dir.display())
        })
    );
    Ok(())
}

/// Moves `<data_dir>/<staging>/member` to `<data_dir>/member` and removes the staging folder.
pub fn restore_finish(data_dir: &Path, staging: &str) -> Result<(), AgentError> {
    let staged = data_dir.join(staging);
    let member = data_dir.join("member");
    let changed = if staged.join("member").is_dir() {
        if member.exists() {
            std::fs::remove_dir_all(&member)?;
        }
        std::fs::rename(staged.join("member"), &member)?;
        std::fs::remove_dir_all(&staged)?;
        true
    } else if member.is_dir() {
        // Done by an earlier attempt.
        if staged.exists() {
            std::fs::remove_dir_all(&staged)?;
        }
        false
    } else {
        return Err(AgentError::new(format!("no restored data in {} and none in place", staged.display())));
    };
    // etcd refuses a data folder others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    sync_dir(data_dir);
    println!("{}", report::line(&Done { changed, detail: format!("restored data in {}", member.display()) }));
    Ok(())
}

/// Links `<docker_root>/containers/<id>/<id>-json.log` as `<log_dir>/<container>_<id>.log`.
pub fn link_logs(container: &str, id: &str, docker_root: &Path, log_dir: &Path) -> Result<(), AgentError> {
    if id.contains('/') || container.contains('/') {
        return Err(AgentError::new("container name and id cannot contain `/`"));
    }
    std::fs::create_dir_all(log_dir)?;
    let target = docker_root.join("containers").join(id).join(format!("{id}-json.log"));
    let link = log_dir.join(format!("{container}_{id}.log"));
    // Links of earlier containers of the same name point at logs that are gone.
    for entry in std::fs::read_dir(log_dir)? {
        let p = entry?.path();
        let stale = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{container}_")) && n != format!("{container}_{id}.log"));
        if stale && p.is_symlink() {
            std::fs::remove_file(&p)?;
        }
    }
    if link.is_symlink() || link.exists() {
        std::fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(&target, &link)?;
    println!(
        "{}",
        report::line(&Done { changed: true, detail: format!("{} -> {}", link.display(), target.display()) })
    );
    Ok(())
}
