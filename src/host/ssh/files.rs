//! Files on the node: read, written, listed and removed by node scripts run over the session.

use super::*;
use openssh::ChildStdin;

/// Chunk size when streaming to a node.
const STREAM_CHUNK: usize = 256 * 1024;

impl SshHost {
    /// Spawns `sh -c SCRIPT rkectl ARGS...` on the node.
    pub(super) fn script(&self, script: &str, args: &[&str]) -> openssh::OwningCommand<ConnRef> {
        Session::to_raw_command(self.conn.clone(), remote_command(script, args))
    }

    /// Runs a node script to completion, feeding `input`; a non-zero exit is not an error here.
    /// One that does not finish within [`WaitLimits::script`] is an error: its local end is
    /// killed, which closes its channel.
    pub(super) async fn run(
        &self,
        op: &str,
        script: &str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> HostResult<Finished> {
        let limit = self.waits.script;
        match tokio::time::timeout(limit, self.run_unbounded(op, script, args, input)).await {
            Ok(finished) => finished,
            Err(_) => Err(self.io_err(
                op,
                format!(
                    "{}: the node script did not finish within {} s; the node's disk or a mount \
                     may not be answering (the script may still be running there)",
                    args.first().copied().unwrap_or_default(),
                    limit.as_secs_f64()
                ),
                false,
            )),
        }
    }

    async fn run_unbounded(&self, op: &str, script: &str, args: &[&str], input: Option<&[u8]>) -> HostResult<Finished> {
        for a in args {
            if a.contains('\0') {
                return Err(self.io_err(op, "a path contains a NUL byte", false));
            }
        }
        let mut cmd = self.script(script, args);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn().await {
            Ok(c) => c,
            Err(e) => return Err(self.ssh_err(op, e).await),
        };
        let stdin = child.stdin().take();
        let mut stdout = child.stdout().take().expect("piped stdout");
        let mut stderr = child.stderr().take().expect("piped stderr");
        let feed = async move {
            if let (Some(mut w), Some(data)) = (stdin, input) {
                w.write_all(data).await?;
                w.shutdown().await?;
            }
            Ok::<(), io::Error>(())
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (fed, o, e) = tokio::join!(feed, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        let stderr_text = String::from_utf8_lossy(&err).trim().to_string();
        let code = match status {
            Ok(s) => s.code(),
            Err(e) => return Err(self.ssh_err(op, e).await),
        };
        if let Err(e) = fed.and(o.map(drop)).and(e.map(drop)) {
            // The remote side's own complaint says more than our broken pipe.
            if code.is_some_and(|c| c != 0) && !stderr_text.is_empty() {
                return Ok(Finished { code: code.unwrap_or(-1), stdout: out, stderr: stderr_text });
            }
            if let Some(lost) = self.lost(op).await {
                return Err(lost);
            }
            return Err(self.io_err(op, e.to_string(), transient_io(&e)));
        }
        Ok(Finished { code: code.unwrap_or(-1), stdout: out, stderr: stderr_text })
    }

    /// An error for a script that exited non-zero, quoting what it said.
    fn script_failed(&self, op: &str, path: &str, f: &Finished) -> HostError {
        let said = if f.stderr.is_empty() { format!("exit code {}", f.code) } else { one_line(&f.stderr) };
        let reason = format!("{path}: {said}");
        let transient = is_transient_text(&reason);
        self.io_err(op, reason, transient)
    }

    /// Best-effort removal of a temporary file after a failed write.
    async fn discard(&self, tmp: &str) {
        let _ = self.run("remove temporary file", r#"rm -f -- "$1""#, &[tmp], None).await;
    }
}

/// The file's contents, or `None` if it does not exist ([`Host::read_file`]).
pub(super) async fn read_file(host: &SshHost, path: &str) -> HostResult<Option<Vec<u8>>> {
    let f = host.run("read file", READ_SCRIPT, &[path], None).await?;
    match f.code {
        0 => Ok(Some(f.stdout)),
        EXIT_ABSENT => Ok(None),
        _ if f.stderr.contains("No such file or directory") => Ok(None),
        _ => Err(host.script_failed("read file", path, &f)),
    }
}

/// The SHA-256 of a file, or `None` if it does not exist ([`Host::sha256_file`]).
pub(super) async fn sha256_file(host: &SshHost, path: &str) -> HostResult<Option<String>> {
    let f = host.run("hash file", SHA256_SCRIPT, &[path], None).await?;
    match f.code {
        0 => {
            let out = String::from_utf8_lossy(&f.stdout);
            let hex = out.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(hex))
            } else {
                Err(host.io_err("hash file", format!("{path}: unexpected output of sha256sum"), false))
            }
        }
        EXIT_ABSENT => Ok(None),
        _ => Err(host.script_failed("hash file", path, &f)),
    }
}

/// Writes a file atomically, creating parent folders ([`Host::write_file`]).
pub(super) async fn write_file(host: &SshHost, path: &str, data: &[u8], mode: u32) -> HostResult<()> {
    let tmp = temp_name(path);
    let mode = format!("{:o}", mode & 0o7777);
    let size = data.len().to_string();
    let script = format!("{RECEIVE_SCRIPT_NOEXEC}\n{FINISH_SCRIPT}");
    let f = host.run("write file", &script, &[path, &tmp, &mode, &size], Some(data)).await;
    match f {
        Ok(f) if f.code == 0 => Ok(()),
        Ok(f) => {
            host.discard(&tmp).await;
            Err(host.script_failed("write file", path, &f))
        }
        Err(e) => {
            host.discard(&tmp).await;
            Err(e)
        }
    }
}

/// `len` bytes of a file from `offset` ([`Host::read_range`]).
pub(super) async fn read_range(host: &SshHost, path: &str, offset: u64, len: u64) -> HostResult<Vec<u8>> {
    let f = host.run("read file", RANGE_SCRIPT, &[path, &offset.to_string(), &len.to_string()], None).await?;
    match f.code {
        0 => Ok(f.stdout),
        EXIT_ABSENT => Err(host.io_err("read file", format!("{path}: no such file"), false)),
        _ => Err(host.script_failed("read file", path, &f)),
    }
}

/// Removes a file; `Ok(false)` if there was none ([`Host::remove_file`]).
pub(super) async fn remove_file(host: &SshHost, path: &str) -> HostResult<bool> {
    let f = host.run("remove file", REMOVE_SCRIPT, &[path], None).await?;
    match f.code {
        0 => Ok(true),
        EXIT_ABSENT => Ok(false),
        _ => Err(host.script_failed("remove file", path, &f)),
    }
}

/// The names of the folders in a folder ([`Host::list_dirs`]).
pub(super) async fn list_dirs(host: &SshHost, path: &str) -> HostResult<Vec<String>> {
    let f = host.run("list folder", DIRS_SCRIPT, &[path], None).await?;
    match f.code {
        0 => Ok(f
            .stdout
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()),
        EXIT_ABSENT => Ok(Vec::new()),
        _ => Err(host.script_failed("list folder", path, &f)),
    }
}

/// Removes a folder and everything in it ([`Host::remove_tree`]).
pub(super) async fn remove_tree(host: &SshHost, path: &str) -> HostResult<bool> {
    let f = host.run("remove folder", TREE_SCRIPT, &[path], None).await?;
    match f.code {
        0 => Ok(true),
        EXIT_ABSENT => Ok(false),
        _ => Err(host.script_failed("remove folder", path, &f)),
    }
}

/// The files of a folder ([`Host::list_dir`]).
pub(super) async fn list_dir(host: &SshHost, path: &str) -> HostResult<Vec<DirEntry>> {
    let f = host.run("list folder", LIST_SCRIPT, &[path], None).await?;
    match f.code {
        0 => Ok(parse_listing(&f.stdout)),
        EXIT_ABSENT => Ok(Vec::new()),
        _ => Err(host.script_failed("list folder", path, &f)),
    }
}

/// Streams a file's contents ([`Host::open_read`]).
pub(super) async fn open_read(host: &SshHost, path: &str) -> HostResult<ByteStream> {
    const OP: &str = "open file";
    if path.contains('\0') {
        return Err(host.io_err(OP, "a path contains a NUL byte", false));
    }
    let mut cmd = host.script(OPEN_SCRIPT, &[path]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(e) => return Err(host.ssh_err(OP, e).await),
    };
    let mut stdout = child.stdout().take().expect("piped stdout");
    let mut stderr = child.stderr().take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        v
    });
    let mut marker = [0u8; 1];
    let opened = stdout.read(&mut marker).await;
    if matches!(opened, Ok(1)) && marker[0] == b'K' {
        return Ok(Box::new(RemoteReader {
            stdout,
            what: format!("{path} on {}", host.addr),
            finish: Finish::Pending(Box::new((child, stderr_task))),
        }));
    }
    drop(stdout);
    let status = child.wait().await;
    let said = String::from_utf8_lossy(&stderr_task.await.unwrap_or_default()).trim().to_string();
    let code = match status {
        Ok(s) => s.code().unwrap_or(-1),
        Err(e) => return Err(host.ssh_err(OP, e).await),
    };
    if code == EXIT_ABSENT {
        return Err(host.io_err(OP, format!("{path}: no such file"), false));
    }
    if opened.is_err()
        && let Some(lost) = host.lost(OP).await
    {
        return Err(lost);
    }
    Err(host.script_failed(OP, path, &Finished { code, stdout: Vec::new(), stderr: said }))
}

/// Writes a stream to a file atomically; returns the byte count ([`Host::write_stream`]).
pub(super) async fn write_stream(host: &SshHost, path: &str, mut data: ByteStream, mode: u32) -> HostResult<u64> {
    const OP: &str = "write file";
    if path.contains('\0') {
        return Err(host.io_err(OP, "a path contains a NUL byte", false));
    }
    let tmp = temp_name(path);
    let mut cmd = host.script(RECEIVE_SCRIPT, &[path, &tmp]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(e) => return Err(host.ssh_err(OP, e).await),
    };
    let mut stdin = child.stdin().take().expect("piped stdin");
    let mut stderr = child.stderr().take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        v
    });

    let copied = copy_into(&mut data, &mut stdin).await;
    drop(stdin);
    let status = child.wait().await;
    let said = String::from_utf8_lossy(&stderr_task.await.unwrap_or_default()).trim().to_string();

    let outcome = match (copied, status) {
        (_, Err(e)) => Err(host.ssh_err(OP, e).await),
        // The node's own complaint (a full disk…) explains a broken pipe best.
        (_, Ok(s)) if !s.success() => Err(host.script_failed(
            OP,
            path,
            &Finished { code: s.code().unwrap_or(-1), stdout: Vec::new(), stderr: said },
        )),
        (Err(Broke::Source(e)), Ok(_)) => {
            Err(host.io_err(OP, format!("{path}: the data to write failed: {e}"), transient_io(&e)))
        }
        (Err(Broke::Sink(e)), Ok(_)) => Err(match host.lost(OP).await {
            Some(lost) => lost,
            None => host.io_err(OP, format!("{path}: {e}"), transient_io(&e)),
        }),
        (Ok(n), Ok(_)) => Ok(n),
    };
    let total = match outcome {
        Ok(n) => n,
        Err(e) => {
            // Only a complete, checked file is renamed into place; the rest goes.
            host.discard(&tmp).await;
            return Err(e);
        }
    };
    finish_write(host, path, &tmp, mode, total).await
}

/// Why a copy to a node stopped: the data to write failed, or the node's end of the pipe.
enum Broke {
    Source(io::Error),
    Sink(io::Error),
}

/// Copies `data` into a node script's input, then closes it; returns the byte count.
async fn copy_into(data: &mut ByteStream, stdin: &mut ChildStdin) -> Result<u64, Broke> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = data.read(&mut buf).await.map_err(Broke::Source)?;
        if n == 0 {
            break;
        }
        stdin.write_all(&buf[..n]).await.map_err(Broke::Sink)?;
        total += n as u64;
    }
    stdin.shutdown().await.map_err(Broke::Sink)?;
    Ok(total)
}

/// Moves a received temporary file into place once its size is checked (see
/// [`FINISH_SCRIPT`]); `tmp` is removed if that fails.
async fn finish_write(host: &SshHost, path: &str, tmp: &str, mode: u32, total: u64) -> HostResult<u64> {
    const OP: &str = "write file";
    let mode = format!("{:o}", mode & 0o7777);
    let size = total.to_string();
    let f = host.run(OP, FINISH_SCRIPT, &[path, tmp, &mode, &size], None).await;
    match f {
        Ok(f) if f.code == 0 => Ok(total),
        Ok(f) => {
            host.discard(tmp).await;
            Err(host.script_failed(OP, path, &f))
        }
        Err(e) => {
            host.discard(tmp).await;
            Err(e)
        }
    }
}
