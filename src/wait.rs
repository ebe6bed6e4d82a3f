//! Waiting, one way: run a check until it says done, fails for good, or a deadline passes.
//! Between checks, wait for the next event on a stream of changes (a Kubernetes watch, say) or
//! a fixed interval, whichever comes first — so a change is seen at once and a stream that
//! fails or lags cannot stall the wait. A timeout carries the last thing the check said.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::time::Instant;

/// A stream that yields whenever something waited on may have changed.
pub type Changes = BoxStream<'static, ()>;

/// No change stream: the wait polls.
pub fn poll_only() -> Changes {
    futures_util::stream::pending().boxed()
}

/// What a check found.
pub enum Check<T, E> {
    Done(T),
    /// Not yet; the detail is shown if the wait times out.
    NotYet(String),
    /// Give up now.
    Failed(E),
}

#[derive(Debug, thiserror::Error)]
#[error("{what} not within {waited:?}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
pub struct Timeout {
    pub what: String,
    pub waited: Duration,
    /// The check's last words.
    pub detail: String,
}

/// Why a wait ended without its value.
#[derive(Debug)]
pub enum Ended<E> {
    Timeout(Timeout),
    Failed(E),
}

/// Runs `check` until it is done or fails, or `deadline` passes.
pub async fn until<T, E, F, Fut>(
    what: &str,
    deadline: Instant,
    interval: Duration,
    mut changes: Changes,
    mut check: F,
) -> Result<T, Ended<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Check<T, E>>,
{
    let started = Instant::now();
    loop {
        let detail = match check().await {
            Check::Done(v) => return Ok(v),
            Check::Failed(e) => return Err(Ended::Failed(e)),
            Check::NotYet(detail) => detail,
        };
        if Instant::now() >= deadline {
            return Err(Ended::Timeout(Timeout { what: what.to_string(), waited: started.elapsed(), detail }));
        }
        if let Ok(None) = tokio::time::timeout(interval, changes.next()).await {
            // The stream ended: from here on, poll.
            changes = poll_only();
        }
    }
}

/// [`until`] for checks that never give up: `Ok(Some(v))` is done; `Ok(None)` and `Err(detail)`
/// (say, an API server that is restarting) are "not yet", tried again until `deadline`.
pub async fn until_some<T, F, Fut>(what: &str, deadline: Instant, interval: Duration, changes: Changes, mut check: F) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let checked = until::<T, std::convert::Infallible, _, _>(what, deadline, interval, changes, || {
        let run = check();
        async move {
            match run.await {
                Ok(Some(v)) => Check::Done(v),
                Ok(None) => Check::NotYet(String::new()),
                Err(detail) => Check::NotYet(detail),
            }
        }
    })
    .await;
    checked.map_err(|ended| match ended {
        Ended::Timeout(t) => t,
        Ended::Failed(never) => match never {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn done_failed_and_timed_out() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut n = 0;
        let v: Result<u32, Ended<()>> = until("three tries", deadline, Duration::from_millis(100), poll_only(), || {
            n += 1;
            let n = n;
            async move {
                if n == 3 {
                    Check::Done(n)
                } else {
                    Check::NotYet(format!("try {n}"))
                }
            }
        })
        .await;
        assert_eq!(v.unwrap(), 3);
        let failed: Result<(), Ended<&str>> =
            until("x", deadline, Duration::from_millis(100), poll_only(), || async { Check::Failed("gone") }).await;
        assert!(matches!(failed, Err(Ended::Failed("gone"))));
        let timed_out: Result<(), Ended<()>> =
            until("the sky to fall", deadline, Duration::from_millis(100), poll_only(), || async { Check::NotYet("still up".into()) })
                .await;
        let Err(Ended::Timeout(t)) = timed_out else { panic!("a timeout") };
        assert!(t.to_string().starts_with("the sky to fall not within") && t.to_string().ends_with(": still up"), "{t}");
    }
}
