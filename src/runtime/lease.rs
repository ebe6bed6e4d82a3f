//! Leases: mutual exclusion between berth processes, held as a Docker object — a container
//! named for what it guards, created (never started) from an image the caller has at hand.
//! Docker makes a container of a name once, so whoever creates it holds the lease; only those
//! who may use Docker can hold one (a file in /tmp could be held, or pre-made unusable, by any
//! user), and any such process on any account sees the same lease. The container says who holds
//! it (process, host, since when): a holder that is gone (its process no longer runs on this
//! host, or it has held longer than anyone could) is taken over; one that is not is waited for,
//! and a wait that runs out names it. A lease dropped without [`Lease::release`] (an error's
//! early return, an interrupt that dropped the work holding it) is given back by a task on the
//! runtime, which the command awaits before it exits ([`Lease::settle`]); should the process
//! be killed first, the next taker finds its holder gone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerCreateBody;

use super::{Runtime, RuntimeError};

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// On a lease's container: what it guards. Made from a node's image, it inherits that image's
/// labels (a snapshot image names a cluster): cluster listings pass it over by this one.
pub const LABEL_LEASE: &str = "dev.berth.lease";
const LABEL_HOLDER: &str = "dev.berth.lease.holder";
const LABEL_SINCE: &str = "dev.berth.lease.since";

/// How long a container create that was in flight when its request was dropped may take to
/// land in dockerd.
const IN_FLIGHT: Duration = Duration::from_millis(500);

/// How often a waiting process looks again.
const RETRY: Duration = Duration::from_millis(100);

/// Past this, a holder is taken to be gone whatever its process: no berth operation holds a
/// lease this long.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// How long a taker waits for the removals of this process's dropped leases.
const SETTLE_OWN: Duration = Duration::from_secs(10);

/// How long a berth waits for another to finish choosing addresses on berth's network.
const NETWORK_WAIT: Duration = Duration::from_secs(300);

/// A held lease; give it back with [`Lease::release`].
pub struct Lease {
    container: String,
    removal: Option<futures_util::future::BoxFuture<'static, Result<()>>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("container", &self.container).finish()
    }
}

/// Removals of leases dropped without a release, still running.
static DROPPED: std::sync::Mutex<Vec<tokio::task::JoinHandle<Result<()>>>> = std::sync::Mutex::new(Vec::new());

/// The leases a live [`Lease`] of this process holds, by container name. A lease container that
/// names this process as its holder but is not here was dropped (its removal may still be
/// pending) or landed after its request was dropped: nothing will use it, so it is taken over.
static HELD: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

fn held_here(container: &str) -> bool {
    HELD.lock().unwrap_or_else(|e| e.into_inner()).contains(container)
}

fn set_held(container: &str, held: bool) {
    let mut set = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if held {
        set.insert(container.to_string());
    } else {
        set.remove(container);
    }
}

/// Creates of a lease this process has in flight, by container name: a lease naming this
/// process that no live [`Lease`] holds yet may be one of them, landed in Docker and about to be
/// marked held, not one left behind.
static CREATING: std::sync::Mutex<std::collections::BTreeMap<String, usize>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// One create of a lease in flight, from before its request until it is marked held or failed
/// (or the acquire is dropped: then what lands late is taken over).
struct Creating(String);

impl Creating {
    fn start(container: &str) -> Creating {
        *CREATING.lock().unwrap_or_else(|e| e.into_inner()).entry(container.to_string()).or_default() += 1;
        Creating(container.to_string())
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        let mut creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = creating.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                creating.remove(&self.0);
            }
        }
    }
}

fn creating_here(container: &str) -> bool {
    CREATING.lock().unwrap_or_else(|e| e.into_inner()).contains_key(container)
}

impl Drop for Lease {
    fn drop(&mut self) {
        set_held(&self.container, false);
        if let (Some(removal), Ok(handle)) = (self.removal.take(), tokio::runtime::Handle::try_current()) {
            DROPPED.lock().unwrap_or_else(|e| e.into_inner()).push(handle.spawn(removal));
        }
    }
}

/// Who holds a lease: `pid@host`.
fn me() -> String {
    format!("{}@{}", std::process::id(), hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether a holder (`pid@host`, holding since `since`) is gone: its process no longer runs on
/// this host, or it has held the lease for longer than any operation takes.
fn holder_gone(holder: &str, since: u64, now: u64, alive: impl Fn(u32) -> bool, this_host: &str) -> bool {
    if now.saturating_sub(since) > STALE_AFTER.as_secs() {
        return true;
    }
    match holder.split_once('@') {
        Some((pid, host)) if host == this_host => pid.parse::<u32>().map(|pid| !alive(pid)).unwrap_or(true),
        _ => false,
    }
}

impl Lease {
    /// Takes the lease called `what`, waiting up to `wait` for its holder. `image` is any image
    /// present locally (the lease's container is never started).
    pub async fn acquire(runtime: &dyn Runtime, what: &str, image: &str, wait: Duration) -> Result<Lease> {
        let container = format!("berth-lease-{what}");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let body = super::ContainerBody(ContainerCreateBody {
                image: Some(image.to_string()),
                entrypoint: Some(vec!["true".into()]),
                labels: Some(
                    [
                        (LABEL_LEASE.to_string(), what.to_string()),
                        (LABEL_HOLDER.to_string(), me()),
                        (LABEL_SINCE.to_string(), now().to_string()),
                    ]
                    .into(),
                ),
                network_disabled: Some(true),
                ..Default::default()
            });
            let created = {
                let _creating = Creating::start(&container);
                let created = runtime.create_container(&container, body).await;
                if created.is_ok() {
                    set_held(&container, true);
                }
                created
            };
            match created {
                Ok(_) => return Ok(Lease { removal: Some(runtime.removal(&container)), container }),
                Err(RuntimeError::NameTaken(_)) => {}
                Err(e) => return Err(e),
            }
            let labels = match runtime.inspect(&container).await {
                Ok(info) => info.labels(),
                // Released between our create and our look: try again at once.
                Err(_) => continue,
            };
            let holder = labels.get(LABEL_HOLDER).cloned().unwrap_or_default();
            let since: u64 = labels.get(LABEL_SINCE).and_then(|s| s.parse().ok()).unwrap_or(0);
            // Another acquire of this process whose create has landed but is not yet marked held
            // is a holder like any other: waited for below, not taken over.
            if holder == me() && !held_here(&container) && !creating_here(&container) {
                // This process's, but no live `Lease` holds it: once the removals of dropped
                // leases have run (one of them must not remove the lease taken next), what is
                // left landed late, and is taken over. A failed step's undo takes the lease
                // again right after, and would otherwise wait on itself.
                tracing::info!("lease {what}: left by this process; taking it over");
                Self::settle(SETTLE_OWN).await;
                runtime.remove_container(&container).await?;
                continue;
            }
            let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
            if holder_gone(&holder, since, now(), alive, &hostname()) {
                tracing::info!("lease {what}: its holder {holder} is gone; taking it over");
                runtime.remove_container(&container).await?;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::LeaseHeld { what: what.to_string(), holder, container, waited: wait });
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Takes berth's network lease: held from choosing free addresses (or a subnet) until the
    /// containers holding them exist, so no two berths choose the same.
    pub async fn network(runtime: &dyn Runtime, image: &str) -> Result<Lease> {
        Self::acquire(runtime, "network", image, NETWORK_WAIT).await
    }

    /// Waits, up to `wait`, for the leases dropped without a release to be given back: a
    /// command calls it before it exits, since ending the process would cancel those removals
    /// and leave the lease for the next taker to find stale.
    pub async fn settle(wait: Duration) {
        let pending = std::mem::take(&mut *DROPPED.lock().unwrap_or_else(|e| e.into_inner()));
        if !pending.is_empty() {
            let _ = tokio::time::timeout(wait, futures_util::future::join_all(pending)).await;
        }
    }

    /// Removes every lease this process holds: called as an interrupted command exits, when it
    /// holds none on purpose. Besides the dropped leases [`settle`](Self::settle)
    /// waits for, this takes those whose create was still in flight inside dockerd when an
    /// interrupt dropped the request (the container lands; no `Lease` was ever made for it):
    /// looked for at once and again a moment later. Returns how many it removed.
    pub async fn sweep_mine(runtime: &dyn Runtime) -> Result<usize> {
        let me = me();
        let mut removed = 0;
        for pass in 0..2 {
            if pass > 0 {
                tokio::time::sleep(IN_FLIGHT).await;
            }
            for c in runtime.list_containers(&format!("{LABEL_HOLDER}={me}")).await? {
                runtime.remove_container(&c.name).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Gives the lease back.
    pub async fn release(mut self) -> Result<()> {
        match self.removal.take() {
            Some(removal) => removal.await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    /// A lease dropped by work an interrupt cancelled is given back before the command exits.
    #[tokio::test]
    async fn a_dropped_lease_is_given_back_by_settle() {
        let fake = FakeRuntime::with_images(&["node:1"]);
        let lease = Lease::acquire(&fake, "network", "node:1", Duration::from_secs(1)).await.unwrap();
        drop(lease);
        assert!(fake.containers().contains_key("berth-lease-network"), "not given back yet: the removal runs as a task");
        Lease::settle(Duration::from_secs(5)).await;
        assert!(fake.containers().is_empty(), "{:?}", fake.containers().keys());
    }

    /// A lease container that landed after its request was dropped (no `Lease` for it) is
    /// swept by its holder's mark; another process's lease is left alone.
    #[tokio::test(start_paused = true)]
    async fn a_lease_whose_create_landed_late_is_swept_by_its_holder() {
        let fake = FakeRuntime::with_images(&["node:1"]);
        let lease = Lease::acquire(&fake, "network", "node:1", Duration::from_secs(1)).await.unwrap();
        std::mem::forget(lease);
        let theirs = [(LABEL_LEASE, "snapshot-x"), (LABEL_HOLDER, "1@elsewhere"), (LABEL_SINCE, "0")];
        fake.add_container("berth-lease-snapshot-x", &theirs);
        assert_eq!(Lease::sweep_mine(&fake).await.unwrap(), 1);
        assert_eq!(fake.containers().into_keys().collect::<Vec<_>>(), ["berth-lease-snapshot-x"]);
    }

    /// A lease this process dropped (its removal not run yet) or whose create landed late is
    /// taken over at once by the next acquire here (an undo after a failed step takes the
    /// lease again at once), and the dropped lease's removal does not take the new one.
    #[tokio::test(start_paused = true)]
    async fn this_processs_dropped_or_late_lease_is_taken_over_at_once() {
        let fake = FakeRuntime::with_images(&["img"]);
        let dropped = Lease::acquire(&fake, "own-dropped", "img", Duration::from_secs(1)).await.unwrap();
        drop(dropped);
        let again = Lease::acquire(&fake, "own-dropped", "img", Duration::from_secs(1)).await.unwrap();
        Lease::settle(Duration::from_secs(5)).await;
        assert!(fake.containers().contains_key("berth-lease-own-dropped"), "the dropped lease's removal took the new one");
        again.release().await.unwrap();

        let (holder, since) = (me(), now().to_string());
        fake.add_container("berth-lease-own-late", &[(LABEL_LEASE, "own-late"), (LABEL_HOLDER, &holder), (LABEL_SINCE, &since)]);
        let taken = Lease::acquire(&fake, "own-late", "img", Duration::ZERO).await.unwrap();
        taken.release().await.unwrap();
        assert!(fake.containers().is_empty(), "{:?}", fake.containers().keys());
    }

    #[test]
    fn a_holder_is_gone_when_its_process_is_or_it_held_too_long() {
        let alive = |pid: u32| pid == 42;
        assert!(!holder_gone("42@here", 1000, 1010, alive, "here"), "its process runs");
        assert!(holder_gone("7@here", 1000, 1010, alive, "here"), "its process is gone");
        assert!(!holder_gone("7@elsewhere", 1000, 1010, alive, "here"), "another host's: cannot tell, so wait");
        assert!(holder_gone("42@here", 0, STALE_AFTER.as_secs() + 1, alive, "here"), "held longer than anything takes");
    }

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_and_a_wait_that_runs_out_names_the_holder() {
        let fake = FakeRuntime::with_images(&["img"]);
        let first = Lease::acquire(&fake, "snapshot-warm", "img", Duration::from_secs(1)).await.unwrap();
        let err = Lease::acquire(&fake, "snapshot-warm", "img", Duration::from_secs(1)).await.unwrap_err();
        // Its holder (this process) runs: the wait runs out and names it.
        let me = me();
        assert!(matches!(&err, RuntimeError::LeaseHeld { what, holder, .. } if what == "snapshot-warm" && *holder == me), "{err}");
        first.release().await.unwrap();
        let second = Lease::acquire(&fake, "snapshot-warm", "img", Duration::from_secs(1)).await.unwrap();
        // Dropped without a release (an early return): given back all the same.
        drop(second);
        tokio::task::yield_now().await;
        Lease::acquire(&fake, "snapshot-warm", "img", Duration::from_secs(1)).await.unwrap();
    }

    /// The network lease is a Docker object (no file in a shared directory that another user
    /// could make unusable, or plant a symlink in place of); a lease held by a process berth
    /// cannot see is waited for no longer than the wait, whose error names the holder.
    #[tokio::test(start_paused = true)]
    async fn the_network_lease_touches_no_file_and_a_strangers_hold_runs_out() {
        let fake = FakeRuntime::with_images(&["img"]);
        let held = Lease::network(&fake, "img").await.unwrap();
        assert!(fake.containers().contains_key("berth-lease-network"));
        held.release().await.unwrap();
        assert!(!fake.containers().contains_key("berth-lease-network"));

        // Another host's holder: berth cannot see its process, so it waits, then names it.
        let since = now().to_string();
        fake.add_container("berth-lease-network", &[(LABEL_LEASE, "network"), (LABEL_HOLDER, "4242@elsewhere"), (LABEL_SINCE, &since)]);
        let err = Lease::network(&fake, "img").await.unwrap_err();
        assert!(err.to_string().contains("4242@elsewhere"), "{err}");
    }

    /// A holder killed outright (SIGKILL) never gave its lease back: on its host its process is
    /// gone, and the next taker takes it over at once.
    #[tokio::test(start_paused = true)]
    async fn a_dead_holders_lease_is_taken_over() {
        let fake = FakeRuntime::with_images(&["img"]);
        let dead = format!("{}@{}", u32::MAX, hostname());
        fake.add_container(
            "berth-lease-snapshot-ci",
            &[(LABEL_LEASE, "snapshot-ci"), (LABEL_HOLDER, &dead), (LABEL_SINCE, &now().to_string())],
        );
        let taken = Lease::acquire(&fake, "snapshot-ci", "img", Duration::ZERO).await.unwrap();
        let labels = fake.containers()["berth-lease-snapshot-ci"].labels.clone();
        assert_eq!(labels.get(LABEL_HOLDER), Some(&me()), "held by this process now");
        taken.release().await.unwrap();
    }
}
