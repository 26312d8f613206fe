//! Ctrl-C and SIGTERM during an apply.

use std::sync::Arc;

/// SIGINT and SIGTERM during a run: the first stops scheduling (running steps finish, the
/// journal stays consistent), a second one exits at once, which the journal survives as
/// it survives a crash.
pub struct Interrupts {
    /// Cancelled by the first signal.
    pub stop: tokio_util::sync::CancellationToken,
    /// The exit code of the first signal (130, 143), 0 while none came.
    exit: Arc<std::sync::atomic::AtomicU8>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupts {
    /// Listens from now on; the first signal cancels [`Interrupts::stop`].
    pub fn listen() -> Interrupts {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{SignalKind, signal};
        let stop = tokio_util::sync::CancellationToken::new();
        let exit = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            // Without handlers the signals keep their default action: the journal still
            // lets the next apply resume.
            return Interrupts { stop, exit, listener: None };
        };
        // Listening starts as the apply does: its clock stamps the warning, so that it never
        // reads earlier than the INFO lines before it.
        let started = std::time::Instant::now();
        let listener = tokio::spawn({
            let (stop, exit) = (stop.clone(), exit.clone());
            async move {
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                exit.store(code, Ordering::SeqCst);
                eprintln!(
                    "WARN[{:04}] Interrupted: no new step starts, the running ones finish; interrupt again to stop at once",
                    started.elapsed().as_secs()
                );
                stop.cancel();
                let code = tokio::select! { _ = int.recv() => 130, _ = term.recv() => 143 };
                std::process::exit(code);
            }
        });
        Interrupts { stop, exit, listener: Some(listener) }
    }

    /// Stops listening; the exit code of the signal that came, if one did.
    pub fn finish(mut self) -> Option<u8> {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        match self.exit.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}
