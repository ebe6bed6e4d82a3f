//! `berth stop cluster` / `berth start cluster`. Nodes keep their addresses (pinned on berth's
//! network) and the API server keeps its host port (chosen at create, not left to Docker), so
//! certificates, kubeadm's config and the user's kubeconfig stay valid across a stop.

use std::time::Duration;

use futures_util::future::try_join_all;

use super::{nodes, ClusterError, HostError, NodeInfo, NodeRole, Result};
use crate::config::Protocol;
use crate::runtime::{HostConfig, Runtime};
use crate::ui::Status;

/// Seconds systemd gets to shut a node down before Docker kills it.
const STOP_TIMEOUT_SECS: i32 = 30;

fn by_role<'a>(nodes: &'a [NodeInfo], role: &NodeRole) -> Vec<&'a NodeInfo> {
    nodes.iter().filter(|n| n.role == *role).collect()
}

/// The fixed host ports `host` publishes that something holds now, each named with `node`, the
/// container port and what holds it.
pub(super) fn taken_host_ports(node: &str, host: &HostConfig) -> Vec<String> {
    let mut taken = Vec::new();
    for published in host.published_ports().into_iter().filter(|p| p.host_port != 0) {
        let protocol = Protocol::of_container_port(&published.container_port);
        let address = if published.host_ip.is_empty() { "0.0.0.0" } else { published.host_ip.as_str() };
        if !crate::host_ports::is_free(address, published.host_port, protocol) {
            taken.push(format!(
                "{node} ({}): {}",
                published.container_port,
                crate::host_ports::describe_taken(address, published.host_port, protocol)
            ));
        }
    }
    taken
}

/// The fixed host ports the stopped containers publish must be free before they start: a port
/// something else took while the cluster was stopped is named with what holds it, instead of
/// Docker's "address already in use" halfway through the start.
async fn check_published_ports(docker: &dyn Runtime, stopped: impl Iterator<Item = &NodeInfo>) -> Result<()> {
    let mut taken = Vec::new();
    for node in stopped {
        let host = docker.inspect(&node.name).await?.host_config();
        taken.extend(taken_host_ports(&node.name, &host));
    }
    if taken.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::from(HostError::PortsTaken(taken.join("; "))))
    }
}

/// Stops the Services' load balancers, workers, then control planes, then the API server's load
/// balancer: nothing loses its API server while it still runs.
pub async fn stop(docker: &dyn Runtime, cluster: &str, status: &Status) -> Result<()> {
    let all = nodes(docker, cluster).await?;
    for role in [NodeRole::ServiceLb, NodeRole::Worker, NodeRole::ControlPlane, NodeRole::LoadBalancer] {
        let group = by_role(&all, &role);
        if group.is_empty() {
            continue;
        }
        let step = status.step(format!("Stopping {} node(s): {role}", group.len()));
        try_join_all(group.iter().map(|n| docker.stop_container(&n.name, STOP_TIMEOUT_SECS))).await?;
        step.done();
    }
    Ok(())
}

/// Starts every stopped container of the cluster at once, and waits up to `wait` for
/// the API server's `/readyz` and every node Ready — each node it started by a status its
/// kubelet posted after this start (the Ready condition from before the stop says nothing about
/// now); a node that was running already only needs to be Ready. Once the API server answers,
/// the leader leases the stopped scheduler and controller-manager left are released; once the
/// nodes are Ready, it waits for the restarted controller-manager's controllers, so what is
/// applied next runs at once.
pub async fn start(docker: &dyn Runtime, cluster: &str, wait: Duration, status: &Status) -> Result<()> {
    start_with(docker, &crate::kube::Dial, cluster, wait, status).await
}

/// [`start`], reaching the API server through `api`.
async fn start_with(docker: &dyn Runtime, api: &dyn crate::kube::Connect, cluster: &str, wait: Duration, status: &Status) -> Result<()> {
    let all = nodes(docker, cluster).await?;
    check_published_ports(docker, all.iter().filter(|n| !n.state.is_running())).await?;
    let began = tokio::time::Instant::now();
    let mut restarted = crate::kube::Restarted { since: std::time::SystemTime::now(), nodes: Default::default() };
    // All at once: a kubelet or a balancer that comes up before its API server retries, so no
    // order is needed, and starting them together saves a round per role.
    let stopped: Vec<&NodeInfo> = all.iter().filter(|n| !n.state.is_running()).collect();
    restarted.nodes.extend(stopped.iter().map(|n| n.name.clone()));
    if !stopped.is_empty() {
        let step = status.step(format!("Starting {} node(s)", stopped.len()));
        try_join_all(stopped.iter().map(|n| docker.start_container(&n.name))).await?;
        step.done();
    }
    if wait.is_zero() {
        return Ok(());
    }
    let step = status.step("Waiting for Ready");
    let deadline = tokio::time::Instant::now() + wait;
    let doc = super::startup::admin_kubeconfig(docker, cluster, deadline).await?;
    let client = api.connect(&doc).await?;
    let expected = all.iter().filter(|n| n.is_kubernetes_node()).count();
    let reached = super::startup::wait_fresh_ready(&client, &restarted, expected, began, deadline).await?;
    step.done();
    if restarted.nodes.iter().any(|n| all.iter().any(|a| &a.name == n && a.role == NodeRole::ControlPlane)) {
        let step = status.step("Waiting for the controllers");
        crate::kube::wait_for_controllers(&client, deadline).await?;
        step.done();
    }
    let started = all.iter().filter(|n| restarted.nodes.contains(&n.name) && n.is_kubernetes_node()).map(|n| n.name.as_str());
    super::timeline::log_nodes(docker, "start", started, restarted.since).await;
    tracing::info!(
        "start: API server ready (/readyz) at {:.1} s, every node freshly Ready at {:.1} s, controllers running at {:.1} s",
        reached.readyz,
        reached.ready,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::{api_after_a_stop, two_node_cluster, STARTUP_REQUESTS};

    fn started_and_stopped(calls: &[String]) -> Vec<&str> {
        calls.iter().filter(|c| c.starts_with("start ") || c.starts_with("stop ")).map(String::as_str).collect()
    }

    /// Stop takes workers down before the control plane (nothing loses its API server while it
    /// runs); start brings every stopped node back at once.
    #[tokio::test]
    async fn stop_goes_worker_first_and_start_brings_every_node_back() {
        let fake = two_node_cluster();
        stop(&fake, "dev", &Status::quiet()).await.unwrap();
        assert!(fake.containers().values().all(|c| !c.running));
        start(&fake, "dev", Duration::ZERO, &Status::quiet()).await.unwrap();
        assert!(fake.containers().values().all(|c| c.running));
        let calls = fake.calls();
        let mut starts = started_and_stopped(&calls);
        assert_eq!(starts[..2], ["stop dev-worker", "stop dev-control-plane"]);
        starts[2..].sort();
        assert_eq!(starts[2..], ["start dev-control-plane", "start dev-worker"]);
    }

    /// A host port a node publishes, taken while the cluster was stopped: the start names it
    /// and what holds it, and starts nothing (no half-started cluster).
    #[tokio::test]
    async fn a_port_taken_while_stopped_is_named_before_any_node_starts() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let fake = two_node_cluster();
        fake.set_host_config("dev-worker", HostConfig::default().with_published_port("80/tcp", "127.0.0.1", port));
        stop(&fake, "dev", &Status::quiet()).await.unwrap();
        let err = start(&fake, "dev", Duration::ZERO, &Status::quiet()).await.unwrap_err().to_string();
        assert!(err.contains("dev-worker (80/tcp)") && err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(!fake.calls().iter().any(|c| c.starts_with("start ")), "{:?}", fake.calls());
        drop(holder);
        start(&fake, "dev", Duration::ZERO, &Status::quiet()).await.unwrap();
        assert!(fake.containers().values().all(|c| c.running));
    }

    /// A start with a wait goes through the whole chain, in order: `/readyz`, the stopped
    /// scheduler's lease released, every node Ready by a fresh report, the controllers asked.
    #[tokio::test]
    async fn a_start_waits_for_readyz_then_fresh_nodes_then_the_controllers() {
        let fake = two_node_cluster();
        stop(&fake, "dev", &Status::quiet()).await.unwrap();
        let api = api_after_a_stop(true);
        start_with(&fake, &api, "dev", Duration::from_secs(30), &Status::quiet()).await.unwrap();
        api.assert_asked_in_order(STARTUP_REQUESTS);
        api.assert_asked_in_order(&[
            "POST /apis/apps/v1/namespaces/kube-system/replicasets",
            "DELETE /apis/apps/v1/namespaces/kube-system/replicasets/",
        ]);
    }

    /// Nodes whose kubelets have not reported since the start are not Ready yet, however their
    /// old status reads: the wait runs out naming each of them, and asks nothing of the
    /// controllers.
    #[tokio::test(start_paused = true)]
    async fn nodes_without_a_fresh_report_are_named_when_the_wait_runs_out() {
        let fake = two_node_cluster();
        stop(&fake, "dev", &Status::quiet()).await.unwrap();
        let api = api_after_a_stop(false);
        let err = start_with(&fake, &api, "dev", Duration::from_secs(30), &Status::quiet()).await.unwrap_err().to_string();
        for node in ["dev-control-plane", "dev-worker"] {
            assert!(err.contains(&format!("{node} (its kubelet has not reported since the start)")), "{err}");
        }
        assert!(!api.requests().iter().any(|r| r.contains("replicasets")), "{:#?}", api.requests());
    }

    #[tokio::test]
    async fn an_unknown_cluster_is_named() {
        let err = start(&two_node_cluster(), "prod", Duration::ZERO, &Status::quiet()).await.unwrap_err();
        assert!(matches!(&err, ClusterError::NotFound(name) if name == "prod"), "{err}");
    }
}
