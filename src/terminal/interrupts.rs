//! Ctrl-C and SIGTERM, from the start of a command to its end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// SIGINT and SIGTERM for the whole command. Before its steps run (reading cluster.yml,
/// the pre-flight look at the hosts, the confirmation prompt), the first signal ends the
/// command at once: nothing has changed, and the lock is released as the command unwinds.
/// While steps run, the first stops scheduling (running steps finish, the journal stays
/// consistent) and a second one exits at once, which the journal survives as it survives a
/// crash.
pub struct Interrupts {
    /// Cancelled by the first signal.
    pub stop: tokio_util::sync::CancellationToken,
    /// The exit code of the first signal (130, 143), 0 while none came.
    exit: Arc<AtomicU8>,
    /// When the steps started (the apply's clock, which stamps its log lines); from then
    /// on a signal stops scheduling instead of ending the command.
    started: Arc<std::sync::OnceLock<std::time::Instant>>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupts {
    /// Listens from now on (inside the runtime); the first signal cancels [`Interrupts::stop`].
    pub fn listen() -> Interrupts {
        use tokio::signal::unix::{SignalKind, signal};
        let stop = tokio_util::sync::CancellationToken::new();
        let exit = Arc::new(AtomicU8::new(0));
        let started = Arc::new(std::sync::OnceLock::new());
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            // Without handlers the signals keep their default action: the journal still
            // lets the next apply resume.
            return Interrupts { stop, exit, started, listener: None };
        };
        let listener = tokio::spawn({
            let (stop, exit, started) = (stop.clone(), exit.clone(), started.clone());
            async move {
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                exit.store(code, Ordering::SeqCst);
                if let Some(started) = started.get() {
                    // The apply's clock, as the INFO lines': the warning never reads
                    // earlier than the lines before it.
                    eprintln!(
                        "WARN[{:04}] Interrupted: no new step starts, the running ones finish; interrupt again to stop at once",
                        started.elapsed().as_secs()
                    );
                }
                stop.cancel();
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                std::process::exit(code);
            }
        });
        Interrupts { stop, exit, started, listener: Some(listener) }
    }

    /// Steps start running: a signal from now on stops scheduling.
    pub fn applying(&self) -> tokio_util::sync::CancellationToken {
        self.started.get_or_init(std::time::Instant::now);
        self.stop.clone()
    }

    /// Resolves when a signal came before any step ran (and never once steps run).
    pub async fn before_steps(&self) {
        self.stop.cancelled().await;
        if self.started.get().is_some() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether a signal came before any step ran.
    pub fn came_before_steps(&self) -> bool {
        self.stop.is_cancelled() && self.started.get().is_none()
    }

    /// The exit code of the signal that came, if one did.
    pub fn signal(&self) -> Option<u8> {
        match self.exit.load(Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}
