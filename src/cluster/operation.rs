//! What every operation that makes things shares — create, restore, snapshot save, create node,
//! load, log export: it runs until it is done, fails, or a signal stops it; failed or stopped,
//! its undo removes what it made, shielded from further signals; and one error says which
//! operation stopped, on which signal, and what the undo left.
//!
//! ```text
//! op.unless_interrupted(check)            nothing made yet: a signal just stops it
//! op.unless_interrupted(steps)            the work, each step's output the next one's input
//! op.finish(outcome, || undo(made))       Ok as it is; else the undo, and the merged error
//! ```
//!
//! The signal handlers are installed by `crate::interrupt::interrupted()` when the operation's
//! entry point calls it, before its first step.

use std::future::Future;
use std::pin::Pin;

use super::{ClusterError, Result};

/// An operation that makes things, as its errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Restore,
    Save,
    AddNode,
    Load,
    ExportLogs,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Create => "create",
            Operation::Restore => "restore",
            Operation::Save => "snapshot save",
            Operation::AddNode => "create node",
            Operation::Load => "load",
            Operation::ExportLogs => "export logs",
        })
    }
}

/// What the undo said it left, for an interrupted operation's message.
const NOTHING_MADE: &str = "nothing had been made";

/// A signal's future, pinned where the operation's entry point holds it.
pub(super) type Interrupt<'a, I> = Pin<&'a mut I>;

impl Operation {
    /// The error for this operation stopped by `signal`, with what became of its work.
    pub fn interrupted(self, signal: &'static str, outcome: impl Into<String>) -> ClusterError {
        ClusterError::Interrupted { operation: self, signal, outcome: outcome.into() }
    }

    /// `work`'s outcome, unless `interrupt` resolves first: then this operation's
    /// `Interrupted`, saying nothing had been made (the caller's [`finish`](Self::finish) says
    /// otherwise once its undo has run). Biased: a signal that has arrived wins over work that
    /// is also ready.
    pub(super) async fn unless_interrupted<T>(
        self,
        interrupt: &mut Interrupt<'_, impl Future<Output = &'static str>>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            signal = interrupt => Err(self.interrupted(signal, NOTHING_MADE)),
            r = work => r,
        }
    }

    /// `outcome` as it is when it succeeded; otherwise runs `undo`, with further signals caught
    /// and ignored (an undo stopped halfway would leave the mess it exists to prevent), and
    /// returns the error merged with the undo's: an interruption says `undone` (what the undo
    /// removed) or how the undo failed; a failure whose undo failed too carries both.
    pub(super) async fn finish<T, U>(self, outcome: Result<T>, undo: impl FnOnce() -> U, undone: &str) -> Result<T>
    where
        U: Future<Output = Result<()>>,
    {
        let err = match outcome {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let cleanup = {
            let _shield = crate::interrupt::Shielded::new();
            undo().await
        };
        Err(self.after_undo(err, cleanup, undone))
    }

    fn after_undo(self, err: ClusterError, cleanup: Result<()>, undone: &str) -> ClusterError {
        match (err, cleanup) {
            (ClusterError::Interrupted { signal, .. }, Ok(())) => self.interrupted(signal, undone),
            (ClusterError::Interrupted { signal, .. }, Err(e)) => self.interrupted(signal, format!("cleaning up failed too: {e}")),
            (err, Ok(())) => err,
            (err, Err(e)) => ClusterError::CleanupFailed { error: Box::new(err), cleanup: Box::new(e) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupted_operation_names_itself_its_signal_and_what_its_undo_did() {
        let interrupt = async { "SIGTERM" };
        tokio::pin!(interrupt);
        let outcome = Operation::Save.unless_interrupted(&mut interrupt, std::future::pending::<Result<()>>()).await;
        let undone = std::cell::Cell::new(false);
        let err = Operation::Save
            .finish(
                outcome,
                || async {
                    undone.set(true);
                    Ok(())
                },
                "what it had made was removed",
            )
            .await
            .unwrap_err();
        assert!(undone.get());
        assert_eq!(err.to_string(), "snapshot save interrupted (SIGTERM); what it had made was removed");
    }

    #[tokio::test]
    async fn a_failure_keeps_its_own_words_and_a_failed_undo_is_added() {
        let failed = || Err(ClusterError::NotFound("dev".into()));
        let err = Operation::Create.finish::<(), _>(failed(), || async { Ok(()) }, "").await.unwrap_err();
        assert!(matches!(&err, ClusterError::NotFound(name) if name == "dev"), "{err}");
        let err =
            Operation::Create.finish::<(), _>(failed(), || async { Err(ClusterError::NotRunning("dev".into())) }, "").await.unwrap_err();
        assert!(matches!(&err, ClusterError::CleanupFailed { .. }), "{err}");
    }

    #[tokio::test]
    async fn success_runs_no_undo() {
        let value = Operation::Restore.finish(Ok(7), || async { panic!("no undo after success") }, "").await.unwrap();
        assert_eq!(value, 7);
    }
}
