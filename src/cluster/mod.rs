//! Clusters: create, delete, list, and the facts about one that Docker alone can tell.
//!
//! A cluster is the set of containers labelled `dev.berth.cluster=NAME`; there is no other
//! record. Each operation has its room: `create/` (the options, plan, rendering and the named
//! steps a create runs in order), `snapshot/` (save, list, delete, restore, spares),
//! `members.rs` (adding and removing a node), `lifecycle.rs` and `startup.rs` (stop, start and
//! the wait after one), `service_lb.rs`, `load.rs`, `logs.rs`; `operation.rs` is what the ones
//! that make things share (interrupt, undo, the error). This file lists, reads and deletes
//! clusters.

mod create;
mod error;
#[cfg(test)]
mod fixtures;
pub mod lifecycle;
pub mod load;
pub mod logs;
pub mod members;
mod operation;
pub mod service_lb;
pub mod snapshot;
mod startup;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

pub use error::{BootstrapError, ClusterError, HostError, ImageError, Result};
pub use operation::Operation;
pub use snapshot::restore;
use snapshot::spare;

use crate::kubeconfig;
use crate::runtime::{Runtime, LABEL_CLUSTER, LABEL_MEMBERS, LABEL_ROLE};

pub use create::options::{CreateOptions, PullPolicy};
use create::steps;
pub use create::steps::loadbalancer::DEFAULT_LB_IMAGE;
pub use create::{create, plan, render, CreateReport};

/// The node image berth uses when none is named: kind v0.33.0's own default (its
/// `pkg/apis/config/defaults/image.go`), pinned by digest so "latest" never changes under a user.
pub const DEFAULT_NODE_IMAGE: &str = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5";
pub const DEFAULT_CLUSTER_NAME: &str = "berth";

/// The container name of the `index`-th (0-based) node of `role`: kind's naming, so tooling that
/// knows `NAME-control-plane` and `NAME-worker2` works.
pub fn node_name(cluster: &str, role: crate::config::Role, index: usize) -> String {
    let base = format!("{cluster}-{}", role.as_str());
    if index == 0 {
        base
    } else {
        format!("{base}{}", index + 1)
    }
}

/// What a container of a cluster is, as its role label says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    ControlPlane,
    Worker,
    /// The API server's load balancer of a cluster with several control planes.
    LoadBalancer,
    /// A `type: LoadBalancer` Service's forwarder.
    ServiceLb,
    /// A label berth does not know (a newer berth's, or written by hand): shown as it is.
    Other(String),
}

impl NodeRole {
    pub fn parse(label: &str) -> NodeRole {
        match label {
            "control-plane" => NodeRole::ControlPlane,
            "worker" => NodeRole::Worker,
            crate::runtime::LOAD_BALANCER_ROLE => NodeRole::LoadBalancer,
            crate::runtime::SERVICE_LB_ROLE => NodeRole::ServiceLb,
            other => NodeRole::Other(other.to_string()),
        }
    }

    /// The label's value.
    pub fn as_str(&self) -> &str {
        match self {
            NodeRole::ControlPlane => crate::config::Role::ControlPlane.as_str(),
            NodeRole::Worker => crate::config::Role::Worker.as_str(),
            NodeRole::LoadBalancer => crate::runtime::LOAD_BALANCER_ROLE,
            NodeRole::ServiceLb => crate::runtime::SERVICE_LB_ROLE,
            NodeRole::Other(label) => label,
        }
    }

    /// A Kubernetes node (control plane or worker), not one of berth's balancers.
    pub fn is_kubernetes_node(&self) -> bool {
        matches!(self, NodeRole::ControlPlane | NodeRole::Worker)
    }
}

impl From<crate::config::Role> for NodeRole {
    fn from(role: crate::config::Role) -> NodeRole {
        match role {
            crate::config::Role::ControlPlane => NodeRole::ControlPlane,
            crate::config::Role::Worker => NodeRole::Worker,
        }
    }
}

/// Shown and serialized as their label or engine word (`as_str`), so `get -o json` prints it.
macro_rules! words {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )*};
}

words!(NodeRole, NodeState, ClusterState);

/// A node container's state, as the engine names it (`docker ps`'s words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// Made and never started.
    Created,
    Exited,
    Paused,
    /// Any other word the engine uses (restarting, removing, dead, …): shown as it is.
    Other(String),
}

impl NodeState {
    pub fn parse(word: &str) -> NodeState {
        match word {
            "running" => NodeState::Running,
            "created" => NodeState::Created,
            "exited" => NodeState::Exited,
            "paused" => NodeState::Paused,
            other => NodeState::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            NodeState::Running => "running",
            NodeState::Created => "created",
            NodeState::Exited => "exited",
            NodeState::Paused => "paused",
            NodeState::Other(word) => word,
        }
    }

    pub fn is_running(&self) -> bool {
        *self == NodeState::Running
    }
}

/// One node container as Docker reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub role: NodeRole,
    pub state: NodeState,
    pub image: String,
}

impl NodeInfo {
    /// A Kubernetes node (control plane or worker), not one of berth's balancers.
    pub fn is_kubernetes_node(&self) -> bool {
        self.role.is_kubernetes_node()
    }
}

/// One cluster as Docker reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    pub state: ClusterState,
    pub nodes: Vec<NodeInfo>,
    /// Containers the cluster was created with that no longer exist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// A cluster's state, from its nodes'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Every node runs.
    Running,
    /// No node runs.
    Stopped,
    /// Some nodes run.
    Degraded,
    /// A node of the cluster's no longer exists (removed by hand).
    Broken,
}

impl ClusterState {
    pub fn as_str(&self) -> &str {
        match self {
            ClusterState::Running => "running",
            ClusterState::Stopped => "stopped",
            ClusterState::Degraded => "degraded",
            ClusterState::Broken => "broken",
        }
    }
}

fn cluster_state(nodes: &[NodeInfo], missing: &[String]) -> ClusterState {
    let running = nodes.iter().filter(|n| n.state.is_running()).count();
    match running {
        _ if !missing.is_empty() => ClusterState::Broken,
        0 => ClusterState::Stopped,
        n if n == nodes.len() => ClusterState::Running,
        _ => ClusterState::Degraded,
    }
}

/// All clusters, from container labels.
pub async fn list(docker: &dyn Runtime) -> Result<Vec<ClusterInfo>> {
    let mut by_cluster: BTreeMap<String, (Vec<NodeInfo>, BTreeSet<String>)> = BTreeMap::new();
    for c in docker.list_containers(LABEL_CLUSTER).await? {
        let labels = &c.labels;
        let Some(cluster) = labels.get(LABEL_CLUSTER) else { continue };
        // Helpers made from a node's (or a snapshot's) image inherit its cluster label.
        if labels.contains_key(crate::runtime::LABEL_COPY) || labels.contains_key(crate::runtime::LABEL_LEASE) {
            continue;
        }
        let name = c.name.clone();
        let (nodes, members) = by_cluster.entry(cluster.clone()).or_default();
        members.extend(labels.get(LABEL_MEMBERS).into_iter().flat_map(|m| m.split(',')).filter(|m| !m.is_empty()).map(str::to_string));
        nodes.push(NodeInfo {
            name,
            role: NodeRole::parse(labels.get(LABEL_ROLE).map(String::as_str).unwrap_or_default()),
            state: NodeState::parse(&c.state),
            image: c.image.clone(),
        });
    }
    // Nodes removed on purpose (`delete node`) are not missing.
    let mut removed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, labels) in docker.list_volumes(members::LABEL_REMOVED_NODE).await? {
        if let (Some(cluster), Some(node)) = (labels.get(LABEL_CLUSTER), labels.get(members::LABEL_REMOVED_NODE)) {
            removed.entry(cluster.clone()).or_default().insert(node.clone());
        }
    }
    Ok(by_cluster
        .into_iter()
        .map(|(name, (mut nodes, members))| {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let gone = removed.get(&name);
            let missing: Vec<String> =
                members.into_iter().filter(|m| !nodes.iter().any(|n| &n.name == m) && !gone.is_some_and(|g| g.contains(m))).collect();
            ClusterInfo { state: cluster_state(&nodes, &missing), name, nodes, missing }
        })
        .collect())
}

/// The nodes of one cluster; an error if it has none.
pub async fn nodes(docker: &dyn Runtime, cluster: &str) -> Result<Vec<NodeInfo>> {
    list(docker).await?.into_iter().find(|c| c.name == cluster).map(|c| c.nodes).ok_or_else(|| ClusterError::NotFound(cluster.to_string()))
}

/// Removes every container of `cluster` (with its volumes) and its kubeconfig entries from
/// each of `kubeconfig_paths` that has them. Deleting a cluster that does not exist is not an
/// error: the end state is what was asked.
pub async fn delete(docker: &dyn Runtime, cluster: &str, kubeconfig_paths: &[PathBuf]) -> Result<usize> {
    let label = format!("{LABEL_CLUSTER}={cluster}");
    let found = docker.list_containers(&label).await?;
    // A restored node's /var may be a spare its restore claimed, which only the container names.
    let claimed: Vec<String> = found.iter().filter_map(|c| c.labels.get(spare::LABEL_VAR_VOLUME).cloned()).collect();
    let removed = remove_containers(docker, &label).await?;
    // The /var volumes of restored nodes are named, so removing their containers leaves them.
    docker.remove_volumes(&label).await?;
    for volume in &claimed {
        docker.remove_volume(volume).await?;
    }
    for path in kubeconfig_paths {
        kubeconfig::remove_from_file(path, cluster)?;
    }
    if let Some(image) = found.iter().map(|c| c.image.clone()).find(|i| !i.is_empty()) {
        remove_network_if_unused(docker, &image).await;
    }
    Ok(removed)
}

/// Removes berth's network once the last thing on it is gone, so a delete leaves nothing of
/// berth's behind. Under the network lease: a create that has made sure of the network holds
/// it until its nodes are on it. A failure here leaves only the network, so it is logged, not
/// returned: the cluster is deleted either way.
pub async fn remove_network_if_unused(docker: &dyn Runtime, image: &str) {
    let removed = async {
        let lease = crate::runtime::Lease::network(docker, image).await?;
        let removed = docker.remove_network_if_unused(crate::runtime::NETWORK_NAME, &lease).await;
        lease.release().await?;
        removed
    };
    match removed.await {
        Ok(true) => tracing::info!("removed network {} (nothing is on it)", crate::runtime::NETWORK_NAME),
        Ok(false) => {}
        Err(e) => tracing::warn!("network {} is left: {e}", crate::runtime::NETWORK_NAME),
    }
}

/// Removes all containers matching `label` in parallel. Lists again afterwards until none is
/// left, so a container whose creation was still in flight is caught too.
pub(crate) async fn remove_containers(docker: &dyn Runtime, label: &str) -> Result<usize> {
    let mut total = 0;
    for _ in 0..5 {
        let names: Vec<String> = docker.list_containers(label).await?.into_iter().map(|c| c.id).collect();
        if names.is_empty() {
            return Ok(total);
        }
        total += names.len();
        let removals = names.iter().map(|n| docker.remove_container(n));
        for r in futures_util::future::join_all(removals).await {
            r?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Still there after five rounds: said, not reported as removed.
    match docker.list_containers(label).await?.is_empty() {
        true => Ok(total),
        false => Err(ClusterError::KeepsAppearing(label.to_string())),
    }
}

/// The URL the host reaches the API server at, published on `address` (as the config or
/// Docker's port binding says it) and `port`: an unspecified address is reached on loopback, and
/// an IPv6 address is bracketed.
pub fn host_server_url(address: &str, port: u16) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => format!("https://127.0.0.1:{port}"),
        Ok(std::net::IpAddr::V6(ip)) => format!("https://[{ip}]:{port}"),
        _ if address.is_empty() => format!("https://127.0.0.1:{port}"),
        _ => format!("https://{address}:{port}"),
    }
}

/// The admin kubeconfig of a running cluster, with the server its host-side address (or, with
/// `internal`, the control-plane container's name on berth's network).
pub async fn kubeconfig_for(docker: &dyn Runtime, cluster: &str, internal: bool) -> Result<serde_yaml::Value> {
    let nodes = nodes(docker, cluster).await?;
    let cp = nodes
        .iter()
        .find(|n| n.role == NodeRole::ControlPlane && n.state.is_running())
        .ok_or_else(|| ClusterError::NotRunning(cluster.to_string()))?;
    let admin = docker.exec_ok(&cp.name, &["cat", "/etc/kubernetes/admin.conf"]).await?;
    // The load balancer, where there is one, is the cluster's endpoint.
    let endpoint = nodes.iter().find(|n| n.role == NodeRole::LoadBalancer).unwrap_or(cp);
    let server = if internal {
        format!("https://{}:{}", endpoint.name, crate::runtime::API_SERVER_PORT)
    } else {
        let port = docker.published_port(&endpoint.name, "6443/tcp").await?;
        let published = docker.inspect(&endpoint.name).await?.host_config().published_ports();
        let ip = published.into_iter().find(|p| p.container_port == "6443/tcp").map(|p| p.host_ip).unwrap_or_default();
        host_server_url(&ip, port)
    };
    Ok(kubeconfig::for_cluster(&admin, cluster, &server)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Containers that keep coming back are an error, not a count of what was removed.
    #[tokio::test(start_paused = true)]
    async fn a_removal_that_never_empties_the_label_says_so() {
        let fake = crate::runtime::fake::FakeRuntime::default();
        fake.add_container("n", &[(LABEL_CLUSTER, "dev")]);
        fake.keep_landing_ghosts();
        let err = remove_containers(&fake, "dev.berth.cluster=dev").await.unwrap_err();
        assert!(matches!(&err, ClusterError::KeepsAppearing(label) if label == "dev.berth.cluster=dev"), "{err}");
    }
    use crate::config::Role;

    #[test]
    fn the_default_node_image_is_pinned_by_tag_and_digest() {
        let r = crate::image_ref::ImageRef::parse(DEFAULT_NODE_IMAGE).unwrap();
        assert_eq!((r.repository(), r.tag_version()), ("kindest/node", Some("v1.37.0")));
        assert!(r.digest().is_some_and(|d| d.starts_with("sha256:")), "{r}");
    }

    #[tokio::test]
    async fn a_node_removed_by_hand_makes_the_cluster_broken_and_delete_removes_the_rest() {
        let fake = crate::runtime::fake::FakeRuntime::with_images(&[]);
        let members = "demo-control-plane,demo-worker,demo-worker2";
        for (name, role) in [("demo-control-plane", "control-plane"), ("demo-worker2", "worker")] {
            fake.add_container(name, &[(LABEL_CLUSTER, "demo"), (LABEL_ROLE, role), (LABEL_MEMBERS, members)]);
        }
        let clusters = list(&fake).await.unwrap();
        assert_eq!(clusters[0].state, ClusterState::Broken);
        assert_eq!(clusters[0].missing, ["demo-worker"]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(delete(&fake, "demo", &[dir.path().join("config")]).await.unwrap(), 2);
        assert!(fake.containers().is_empty());
    }

    /// berth's network goes with the last cluster on it, and not while another cluster (even a
    /// stopped one) or a snapshot's saved addresses need it.
    #[tokio::test]
    async fn the_last_delete_removes_the_network_and_no_delete_before_it() {
        use crate::cluster::fixtures::{two_node_cluster, NODE_IMAGE};
        let dir = tempfile::tempdir().unwrap();
        let kubeconfigs = [dir.path().join("config")];
        let network = crate::runtime::NETWORK_NAME;
        let fake = two_node_cluster();
        fake.add_node("other-control-plane", &[(LABEL_CLUSTER, "other"), (LABEL_ROLE, "control-plane")], NODE_IMAGE, "172.30.0.9");
        fake.stop_container("other-control-plane", 0).await.unwrap();
        delete(&fake, "dev", &kubeconfigs).await.unwrap();
        assert!(fake.networks().contains(network), "removed while a stopped cluster is on it");
        delete(&fake, "other", &kubeconfigs).await.unwrap();
        assert!(fake.networks().is_empty(), "left after the last cluster: {:?}", fake.networks());
        assert!(fake.containers().is_empty(), "the network lease is given back: {:?}", fake.containers().keys());

        let fake = two_node_cluster();
        fake.add_image("berth-snapshot/warm:dev-control-plane", &[(crate::runtime::LABEL_RESERVED_ADDRESS, "172.30.0.2")]);
        delete(&fake, "dev", &kubeconfigs).await.unwrap();
        assert!(fake.networks().contains(network), "removed while a snapshot's addresses are in its subnet");
    }

    #[test]
    fn names_nodes_like_kind() {
        assert_eq!(node_name("demo", Role::ControlPlane, 0), "demo-control-plane");
        assert_eq!(node_name("demo", Role::ControlPlane, 2), "demo-control-plane3");
        assert_eq!(node_name("demo", Role::Worker, 0), "demo-worker");
        assert_eq!(node_name("demo", Role::Worker, 1), "demo-worker2");
    }

    #[test]
    fn server_urls_reach_unspecified_addresses_on_loopback_and_bracket_ipv6() {
        assert_eq!(host_server_url("127.0.0.1", 6443), "https://127.0.0.1:6443");
        assert_eq!(host_server_url("0.0.0.0", 6443), "https://127.0.0.1:6443");
        assert_eq!(host_server_url("", 6443), "https://127.0.0.1:6443");
        assert_eq!(host_server_url("::1", 40000), "https://[::1]:40000");
        assert_eq!(host_server_url("::", 40000), "https://127.0.0.1:40000");
        assert_eq!(host_server_url("192.168.1.10", 1), "https://192.168.1.10:1");
    }

    #[test]
    fn state_from_node_states() {
        let n = |state: &str| NodeInfo { name: "n".into(), role: NodeRole::Worker, state: NodeState::parse(state), image: "i".into() };
        assert_eq!(cluster_state(&[n("running"), n("running")], &[]), ClusterState::Running);
        assert_eq!(cluster_state(&[n("exited"), n("exited")], &[]), ClusterState::Stopped);
        assert_eq!(cluster_state(&[n("running"), n("exited")], &[]), ClusterState::Degraded);
    }
}
