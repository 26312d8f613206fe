//! A snapshot copied straight from one etcd host to another over the cluster network: a
//! helper on the source serves the file once, a helper on the destination fetches it
//! (mutual TLS with the member certificates, see [`crate::agent::transfer`]). The
//! workstation only starts the two and reads their reports.

use super::Executor;
use crate::agent::report;
use crate::agent::transfer::{EXIT_UNREACHABLE, FetchReport, LISTENING};
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::host::Host;
use crate::host::run::{RunOutput, Silence, run_watched};
use crate::steps::context::{StepCtx, StepError};
use std::sync::Mutex;

/// How a direct copy went, when it did not fail outright.
pub(super) enum Direct {
    /// Every byte arrived; the destination's count and hash.
    Copied(FetchReport),
    /// The hosts could not be used for a direct copy (why): copy another way.
    Unavailable(String),
}

/// The file to copy, from where to where.
pub(super) struct DirectCopy<'a> {
    pub from: &'a HostAddr,
    pub to: &'a HostAddr,
    pub source_file: &'a str,
    pub target: &'a str,
    /// What the copy must be (the plan's pin): the destination keeps nothing else.
    pub want: &'a crate::model::SnapshotFacts,
}

impl Executor {
    /// Copies `c.source_file` on `src` to `c.target` on `dst` directly between the hosts.
    pub(super) async fn copy_direct(
        &self,
        src: &dyn Host,
        dst: &dyn Host,
        c: DirectCopy<'_>,
        ctx: &StepCtx<'_>,
    ) -> Result<Direct, StepError> {
        let (Some(source), Some(dest)) = (self.cluster.node(c.from), self.cluster.node(c.to)) else {
            return Ok(Direct::Unavailable("one of the hosts is not in cluster.yml".into()));
        };
        let is_ip = |a: &str| a.parse::<std::net::IpAddr>().is_ok();
        if !is_ip(source.internal_address()) || !is_ip(dest.internal_address()) {
            return Ok(Direct::Unavailable("the hosts' cluster addresses are not IP addresses".into()));
        }
        let serve = self.own(&containers::serve_snapshot(&self.cluster, source, dest, c.source_file));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel::<u16>();
        let port_tx = Mutex::new(Some(port_tx));
        let mut on_serve_output = |lines: &str| {
            let port = lines.lines().find_map(|l| l.strip_prefix(LISTENING)).and_then(|p| p.trim().parse().ok());
            // Taken only with a port in hand: a line before it (an error, a warning) must not
            // drop the sender, which would read as "no port" while the helper still ends.
            if let Some(port) = port
                && let Some(tx) = port_tx.lock().expect("port lock").take()
            {
                let _ = tx.send(port);
            }
        };
        let serving = run_watched(src, &serve, Silence::HELPER, &mut on_serve_output);
        tokio::pin!(serving);
        let port = tokio::select! {
            ended = &mut serving => {
                return Ok(Direct::Unavailable(format!(
                    "the serving helper on {} ended before it listened ({})",
                    c.from,
                    describe(&ended)
                )));
            }
            port = port_rx => port.expect("the sender lives as long as this function"),
        };
        let fetch = self.own(&containers::fetch_snapshot(&self.cluster, dest, source, port, c.target, c.want));
        let mut forward = |lines: &str| {
            let last = lines.lines().rev().find_map(|l| l.strip_prefix(crate::agent::snapshot::PROGRESS));
            if let Some(bytes) = last.and_then(|b| b.trim().parse().ok()) {
                ctx.bytes(bytes, Some(c.want.size));
            }
        };
        let fetching = async {
            let r = run_watched(dst, &fetch, Silence::HELPER, &mut forward).await;
            if !matches!(&r, Ok(o) if o.exit_code == 0) {
                // Nobody will fetch: the server need not wait for its deadline.
                let _ = src.remove_container(&serve.name).await;
            }
            r
        };
        let (served, fetched) = tokio::join!(serving, fetching);
        let fetched = fetched?;
        match fetched.exit_code {
            0 => {
                let got: FetchReport = report::parse(&fetched.logs).map_err(|e| {
                    StepError::fatal(format!("container {} on host {}: {e}", fetch.name, c.to))
                        .with_logs(fetched.logs.clone())
                })?;
                if let Err(e) = &served {
                    tracing::debug!("the serving helper on {} ended with {e} after the fetch succeeded", c.from);
                }
                Ok(Direct::Copied(got))
            }
            code if code == i64::from(EXIT_UNREACHABLE) => Ok(Direct::Unavailable(last_line(&fetched.logs))),
            code => Err(StepError::transient(format!(
                "the direct copy from {} to {} failed (container {} exited with code {code}): {}",
                c.from,
                c.to,
                fetch.name,
                last_line(&fetched.logs)
            ))
            .with_logs(fetched.logs)),
        }
    }
}

fn describe(r: &crate::host::HostResult<RunOutput>) -> String {
    match r {
        Ok(o) => format!("exit code {}: {}", o.exit_code, last_line(&o.logs)),
        Err(e) => e.to_string(),
    }
}

/// The helper's last line of output (its reason, on failure).
fn last_line(logs: &str) -> String {
    logs.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string()
}
