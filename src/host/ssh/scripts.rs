//! The node side of file operations: small POSIX `sh` scripts (busybox's too), every path
//! a positional parameter, and the readers that stream their output.

use super::*;

/// What a node script did.
pub(super) struct Finished {
    pub(super) code: i32,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: String,
}

/// A node script that may call `missing PATH` when `[ -e PATH ]` fails: it exits 3 when
/// PATH does not exist, and 4, naming the folder, when a folder on the way cannot be
/// searched (`[ -e ]` is false then too, and a folder rkectl may not read is not an absent
/// one). The scripts use only what POSIX `sh` and busybox both have: no `find -printf`.
macro_rules! node_script {
    ($body:literal) => {
        concat!(
            r#"missing() {
  p=$1
  while :; do
    case $p in
      */*) p=${p%/*}; [ -n "$p" ] || p=/ ;;
      *) p=. ;;
    esac
    if [ -e "$p" ]; then
      if [ -d "$p" ] && [ ! -x "$p" ]; then echo "$p: Permission denied" >&2; exit 4; fi
      exit 3
    fi
    case $p in /|.) exit 3 ;; esac
  done
}
"#,
            $body
        )
    };
}

/// Reads a file; exit 3 when it does not exist.
pub(super) const READ_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
exec cat -- "$1""#
);

/// Prints `$3` bytes of `$1` from byte `$2`; exit 3 when it does not exist. (`tail -c +N`
/// seeks on a regular file, in GNU and busybox alike.)
pub(super) const RANGE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
tail -c "+$(($2 + 1))" -- "$1" | head -c "$3""#
);

/// Prints a file's SHA-256 (`sha256sum`, GNU's and busybox's; `openssl` where neither is);
/// exit 3 when it does not exist.
pub(super) const SHA256_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
if command -v sha256sum >/dev/null 2>&1; then exec sha256sum -- "$1"; fi
if command -v openssl >/dev/null 2>&1; then exec openssl dgst -sha256 -r "$1"; fi
echo "neither sha256sum nor openssl is on this node" >&2
exit 4"#
);

/// Removes a file; exit 3 when there was none.
pub(super) const REMOVE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || [ -L "$1" ] || missing "$1"
exec rm -f -- "$1""#
);

/// Lists regular files (not symlinks) as NUL-terminated `name\tsize\tmtime` records; exit
/// 3 when absent, 4 when the folder cannot be read. `stat -c` is GNU's and busybox's; a
/// file that goes while it is listed is left out.
pub(super) const LIST_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
cd -- "$1" || exit 4
[ -r . ] || { echo "$1: Permission denied" >&2; exit 4; }
for f in * .[!.]* ..?*; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  if ! s=$(stat -c '%s %Y' -- "$f"); then
    [ -e "$f" ] || continue
    exit 4
  fi
  printf '%s\t%s\t%s\0' "$f" "${s% *}" "${s#* }"
done
exit 0"#
);

/// Lists the folders in a folder as NUL-terminated names; exit 3 when absent, 4 when it
/// cannot be read.
pub(super) const DIRS_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
cd -- "$1" || exit 4
[ -r . ] || { echo "$1: Permission denied" >&2; exit 4; }
for d in */; do [ -d "$d" ] && printf '%s\0' "${d%/}"; done
exit 0"#
);

/// Removes a folder and what is in it; exit 3 when there was none.
pub(super) const TREE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
exec rm -rf -- "$1""#
);

/// Opens a file, then prints one `K` so the caller knows it opened before any data flows.
pub(super) const OPEN_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
if [ -d "$1" ]; then echo "$1: is a directory" >&2; exit 4; fi
exec < "$1" || exit 4
printf K
exec cat"#
);

/// Creates the parent folder and receives stdin into the temporary file `$2`.
pub(super) const RECEIVE_SCRIPT: &str = r#"mkdir -p -- "$(dirname -- "$1")" || exit 4
umask 077
exec cat > "$2""#;

/// Checks the temporary file `$2` holds `$4` bytes, sets mode `$3`, syncs it and renames it
/// over `$1`; the temporary file never survives a failure.
pub(super) const FINISH_SCRIPT: &str = r#"n=$(wc -c < "$2") || { rm -f -- "$2"; exit 4; }
if [ "$n" -ne "$4" ]; then rm -f -- "$2"; echo "received $n of $4 bytes" >&2; exit 4; fi
chmod -- "$3" "$2" || { rm -f -- "$2"; exit 4; }
sync -- "$2" 2>/dev/null
mv -f -- "$2" "$1" || { rm -f -- "$2"; exit 4; }
sync -- "$(dirname -- "$1")" 2>/dev/null
exit 0"#;

/// Diagnoses why the forwarded Docker socket does not answer.
pub(super) const SOCKET_SCRIPT: &str = r#"if [ ! -e "$1" ]; then echo missing
elif [ ! -S "$1" ]; then echo notsocket
elif [ ! -r "$1" ] || [ ! -w "$1" ]; then echo denied
else echo ok; fi"#;

/// [`RECEIVE_SCRIPT`] without the final `exec`, so that [`FINISH_SCRIPT`] can follow it.
pub(super) const RECEIVE_SCRIPT_NOEXEC: &str = r#"mkdir -p -- "$(dirname -- "$1")" || exit 4
umask 077
cat > "$2" || { rm -f -- "$2"; exit 4; }"#;

/// A remote `cat` as a byte stream; its exit status is checked when the data ends, so a
/// failure half-way is an error, never a silently short file.
pub(super) struct RemoteReader {
    pub(super) stdout: ChildStdout,
    /// `PATH on HOST`, for error messages.
    pub(super) what: String,
    pub(super) finish: Finish,
}

pub(super) type Check = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

pub(super) enum Finish {
    /// Data still flowing; the `cat` and the task collecting its stderr.
    Pending(Box<(Child<ConnRef>, JoinHandle<Vec<u8>>)>),
    Checking(Check),
    Done,
}

impl AsyncRead for RemoteReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.finish {
                Finish::Done => return Poll::Ready(Ok(())),
                Finish::Checking(check) => {
                    let r = ready!(check.as_mut().poll(cx));
                    this.finish = Finish::Done;
                    return Poll::Ready(r);
                }
                Finish::Pending(_) => {
                    let what = &this.what;
                    let before = buf.filled().len();
                    if let Err(e) = ready!(Pin::new(&mut this.stdout).poll_read(cx, buf)) {
                        return Poll::Ready(Err(io::Error::new(e.kind(), format!("reading {what}: {e}"))));
                    }
                    if buf.filled().len() > before {
                        return Poll::Ready(Ok(()));
                    }
                    let Finish::Pending(running) = std::mem::replace(&mut this.finish, Finish::Done) else {
                        unreachable!("matched Pending above")
                    };
                    let (child, stderr) = *running;
                    let what = this.what.clone();
                    this.finish = Finish::Checking(Box::pin(async move {
                        let status = child.wait().await;
                        let said = stderr.await.unwrap_or_default();
                        let said = String::from_utf8_lossy(&said);
                        match status {
                            Ok(s) if s.success() => Ok(()),
                            Ok(s) => Err(io::Error::other(format!("reading {what} failed ({s}): {}", one_line(&said)))),
                            Err(e) => Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                format!("reading {what} failed: {}", chain(&e)),
                            )),
                        }
                    }));
                }
            }
        }
    }
}

/// Parses [`LIST_SCRIPT`]'s output: NUL-terminated `name\tsize\tmtime` records.
pub(super) fn parse_listing(raw: &[u8]) -> Vec<DirEntry> {
    let mut entries = Vec::new();
    for record in raw.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Ok(record) = std::str::from_utf8(record) else {
            tracing::warn!("skipping a file whose name is not UTF-8");
            continue;
        };
        // The name may hold tabs; size and mtime never do.
        let mut fields = record.rsplitn(3, '\t');
        let (Some(mtime), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        let seconds = mtime.split('.').next().unwrap_or(mtime);
        let Ok(modified) = seconds.parse::<i64>() else {
            continue;
        };
        entries.push(DirEntry { name: name.to_string(), size, modified });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Quotes a word for a POSIX shell.
pub(super) fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `sh -c 'SCRIPT' rkectl 'ARG1' …`: the arguments become `$1 …` in the script.
pub(super) fn remote_command(script: &str, args: &[&str]) -> String {
    let mut cmd = format!("sh -c {} rkectl", shell_quote(script));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    cmd
}

/// A temporary name next to `path`, so the final rename stays on one filesystem.
pub(super) fn temp_name(path: &str) -> String {
    format!("{path}{}{:016x}", crate::model::TEMP_MARK, random_u64())
}

/// Unpredictable enough for temporary names (std's hasher keys are seeded randomly).
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(remote_command("echo \"$1\"", &["x'y"]), "sh -c 'echo \"$1\"' rkectl 'x'\\''y'");
    }

    #[test]
    fn listing_parses_names_with_tabs_and_spaces() {
        let raw = b"b file\t10\t1700000000.5\0a\tb\t0\t1700000001.0000000000\0junk\0";
        let l = parse_listing(raw);
        assert_eq!(
            l,
            vec![
                DirEntry { name: "a\tb".into(), size: 0, modified: 1_700_000_001 },
                DirEntry { name: "b file".into(), size: 10, modified: 1_700_000_000 },
            ]
        );
    }
}
