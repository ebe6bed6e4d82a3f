//! The signals that stop a berth command — SIGINT (Ctrl-C), SIGTERM, and SIGHUP (the terminal
//! closed) — and the one way commands listen for them: [`interrupted`], installed before the
//! command's first step, and [`Shielded`] while it cleans up.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Set once an [`interrupted`] future has seen its signal.
static RECEIVED: AtomicBool = AtomicBool::new(false);

/// Whether this process was interrupted: work was dropped where it stood, possibly with a
/// Docker request in flight.
pub fn received() -> bool {
    RECEIVED.load(Ordering::Relaxed)
}

const SIGNALS: [(SignalKind, &str); 3] =
    [(SignalKind::interrupt(), "SIGINT"), (SignalKind::terminate(), "SIGTERM"), (SignalKind::hangup(), "SIGHUP")];

fn handlers() -> Vec<(Signal, &'static str)> {
    SIGNALS.iter().map(|(kind, name)| (signal(*kind).unwrap_or_else(|e| panic!("installing a {name} handler: {e}")), *name)).collect()
}

/// Resolves to the signal's name at the first SIGINT, SIGTERM or SIGHUP. The handlers are
/// installed here, when it is called, not when the future is first polled: a signal that
/// arrives between the two would otherwise kill berth outright and leave what it had made.
pub fn interrupted() -> impl std::future::Future<Output = &'static str> {
    let mut handlers = handlers();
    async move {
        let waits = handlers.iter_mut().map(|(s, name)| {
            let name = *name;
            Box::pin(async move {
                s.recv().await;
                name
            })
        });
        let name = futures_util::future::select_all(waits).await.0;
        RECEIVED.store(true, Ordering::Relaxed);
        name
    }
}

/// While it lives, further signals are caught and ignored: a cleanup stopped halfway would
/// leave exactly the mess it exists to prevent.
pub struct Shielded(tokio::task::JoinHandle<()>);

impl Shielded {
    pub fn new() -> Shielded {
        let mut handlers = handlers();
        Shielded(tokio::spawn(async move {
            loop {
                let waits = handlers.iter_mut().map(|(s, _)| Box::pin(s.recv()));
                futures_util::future::select_all(waits).await;
            }
        }))
    }
}

impl Default for Shielded {
    fn default() -> Self {
        Shielded::new()
    }
}

impl Drop for Shielded {
    fn drop(&mut self) {
        self.0.abort();
    }
}
