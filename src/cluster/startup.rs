//! The wait a cluster's start-up shares between `start` and a restore: its nodes' containers
//! run again, so berth reads admin.conf, waits for the API server's `/readyz`, releases the
//! leader leases the stopped (or saved) scheduler and controller-manager left, and waits for
//! every restarted node to be Ready by a status its kubelet posted since. The controllers' wait
//! comes after it at each caller (restore makes its spares meanwhile).

use std::time::Duration;

use super::{kubeconfig_for, Result};
use crate::kube::Restarted;
use crate::runtime::Runtime;

/// When the start-up's waits ended, in seconds from the operation's own clock.
#[derive(Debug, Clone, Copy)]
pub struct Reached {
    /// The API server answered `/readyz`.
    pub readyz: f64,
    /// Every node was Ready by a fresh status.
    pub ready: f64,
}

/// The cluster's kubeconfig entries, once the control plane's admin.conf can be read (systemd
/// must have mounted the node's filesystems first).
pub async fn admin_kubeconfig(docker: &dyn Runtime, cluster: &str, deadline: tokio::time::Instant) -> Result<serde_yaml::Value> {
    let what = "the control plane's admin.conf could be read";
    crate::wait::until_some(what, deadline, Duration::from_millis(200), crate::wait::poll_only(), || async {
        kubeconfig_for(docker, cluster, false).await.map(Some).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| crate::kube::KubeError::from(e).into())
}

/// Waits for `/readyz`, releases the leader leases nobody renewed since `restarted.since`, and
/// waits for `expected` nodes Ready, each of `restarted.nodes` by a status posted since then.
pub async fn wait_fresh_ready(
    client: &::kube::Client,
    restarted: &Restarted,
    expected: usize,
    clock: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Result<Reached> {
    crate::kube::wait_for_readyz(client, deadline).await?;
    let readyz = clock.elapsed().as_secs_f64();
    let released = crate::kube::release_stale_leases(client, restarted.since, &restarted.nodes).await?;
    tracing::info!("stale leader leases released: {released:?}");
    crate::kube::wait_for_nodes_ready(client, expected, Some(restarted), deadline).await?;
    Ok(Reached { readyz, ready: clock.elapsed().as_secs_f64() })
}
