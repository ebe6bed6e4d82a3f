//! Growing and shrinking a running cluster: `berth create node` adds a node (a container like
//! its siblings, joined by kubeadm with a bootstrap token made for this join alone) and
//! `berth delete node` removes one (cordoned, drained through the Eviction API, out of etcd if
//! it is a control plane, its Node object, container and volume gone). kind refuses to change a
//! cluster once made; k3d and minikube do it, and so does berth.
//!
//! Adding rolls back as create does: a failure or SIGINT/SIGTERM/SIGHUP removes the new node —
//! its container and volume, its Node object and etcd member if it got that far, the token —
//! and puts the load balancer's configuration back, so the cluster is as it was. A node removed
//! on purpose is recorded (an empty volume naming it), so `get clusters` does not call the
//! cluster broken for missing it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::steps::kubeadm_init::{ca_cert_hash_of, redact, KUBEADM_CONFIG_PATH};
use super::steps::loadbalancer::{haproxy_config, LB_CONFIG_PATH};
use super::steps::LABEL_CREATE_ID;
use super::{nodes, BootstrapError, ClusterError, HostError, ImageError, NodeInfo, NodeRole, Operation, Result};
use crate::config::Role;
use crate::kubeadm::{self, KubeVersion, NodeJoin, Params};
use crate::runtime::{
    network, node_container_body, Lease, NodeMode, NodeSpec, Runtime, API_SERVER_PORT, LABEL_CLUSTER, LABEL_MEMBERS, NETWORK_NAME,
};
use crate::ui::Status;

/// On an empty volume: a node of the cluster (its label `dev.berth.cluster`) removed on purpose.
pub const LABEL_REMOVED_NODE: &str = "dev.berth.removed-node";

/// Environment a new node takes from its siblings: how their entrypoint was told to set up the
/// node (berth's pod network, DNS search, the Service subnet) and the user's proxy settings.
const INHERITED_ENV: &[&str] = &[
    crate::runtime::RUNTIME_CNI_ENV,
    crate::runtime::DNS_SEARCH_ENV,
    crate::runtime::SERVICE_SUBNET_ENV,
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// How long a bootstrap token made for one join lives, should the join's own cleanup not run.
const TOKEN_TTL: &str = "15m";

/// `berth create node`.
#[derive(Debug, Clone)]
pub struct AddOptions {
    pub cluster: String,
    /// The container's name; default: the cluster's pattern (`NAME-worker3`).
    pub node: Option<String>,
    pub role: Role,
    /// Default: the image the cluster's first control plane runs.
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// How long to wait for the node to be Ready (0: not at all).
    pub wait: Duration,
}

/// `berth delete node`.
#[derive(Debug, Clone)]
pub struct RemoveOptions {
    pub cluster: String,
    pub node: String,
    /// Delete pods instead of evicting them: PodDisruptionBudgets are not asked.
    pub force: bool,
    /// How long the drain may take.
    pub timeout: Duration,
}

/// The facts about a running cluster that adding or removing a node needs.
struct Running {
    name: String,
    nodes: Vec<NodeInfo>,
    /// The control plane kubeadm commands run on (it holds the CA and admin.conf).
    first_cp: String,
    balancer: Option<String>,
    version: KubeVersion,
    client: kube::Client,
    /// The cluster's kubeconfig entries, for a fresh client: the balancer keeps a connection on
    /// the control plane it chose for as long as the connection lives.
    entries: serde_yaml::Value,
}

impl Running {
    fn control_planes(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.role == NodeRole::ControlPlane).map(|n| n.name.clone()).collect()
    }

    fn endpoint(&self) -> String {
        format!("{}:{API_SERVER_PORT}", self.balancer.clone().unwrap_or_else(|| self.first_cp.clone()))
    }
}

async fn running(docker: &dyn Runtime, api: &dyn crate::kube::Connect, cluster: &str) -> Result<Running> {
    let nodes = nodes(docker, cluster).await?;
    let stopped: Vec<&str> = nodes.iter().filter(|n| !n.state.is_running()).map(|n| n.name.as_str()).collect();
    if !stopped.is_empty() {
        return Err(ClusterError::InvalidInput {
            field: "--name".into(),
            problem: format!(
                "cluster {cluster:?} is not running ({} stopped); start it first (berth start cluster --name {cluster})",
                stopped.join(", ")
            ),
        });
    }
    let first_cp = nodes
        .iter()
        .filter(|n| n.role == NodeRole::ControlPlane)
        .map(|n| n.name.clone())
        .min_by_key(|n| (n.len(), n.clone()))
        .ok_or_else(|| ClusterError::NotRunning(cluster.to_string()))?;
    let balancer = nodes.iter().find(|n| n.role == NodeRole::LoadBalancer).map(|n| n.name.clone());
    let version = KubeVersion::parse(&docker.exec_ok(&first_cp, &["cat", "/kind/version"]).await?)?;
    let entries = super::kubeconfig_for(docker, cluster, false).await?;
    let client = api.connect(&entries).await?;
    Ok(Running { name: cluster.to_string(), nodes, first_cp, balancer, version, client, entries })
}

/// Adds a node to a running cluster; returns its name. SIGINT, SIGTERM or SIGHUP stops it and
/// removes what it made.
pub async fn add(docker: &dyn Runtime, opts: &AddOptions, status: &Status) -> Result<String> {
    add_until(docker, &crate::kube::Dial, opts, status, crate::interrupt::interrupted()).await
}

/// What an add has made so far, for its undo.
#[derive(Default)]
struct Made {
    create_id: String,
    node: Option<String>,
    token_id: Option<String>,
    joined: bool,
    /// The balancer's configuration before this add changed it.
    balancer_config: Option<(String, String)>,
}

async fn add_until(
    docker: &dyn Runtime,
    api: &dyn crate::kube::Connect,
    opts: &AddOptions,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<String> {
    tokio::pin!(interrupt);
    let step = status.step(format!("Checking cluster {:?}", opts.cluster));
    let (cluster, plan) = Operation::AddNode.unless_interrupted(&mut interrupt, check_add(docker, api, opts)).await?;
    step.done();
    let mut made = Made { create_id: crate::ids::unique("node"), ..Default::default() };
    let outcome = Operation::AddNode.unless_interrupted(&mut interrupt, add_steps(docker, opts, &cluster, &plan, &mut made, status)).await;
    let undone = format!("the new node {} was removed; the cluster is as it was", plan.name);
    Operation::AddNode.finish(outcome, || undo_add(docker, &cluster, &plan, &made, status), &undone).await?;
    Ok(plan.name)
}

/// The new node, settled before anything is made.
struct NewNode {
    name: String,
    role: Role,
    image: String,
    /// The sibling whose container settings it copies.
    like: String,
}

/// Everything that can be refused before anything is made.
async fn check_add(docker: &dyn Runtime, api: &dyn crate::kube::Connect, opts: &AddOptions) -> Result<(Running, NewNode)> {
    let cluster = running(docker, api, &opts.cluster).await?;
    if opts.role == Role::ControlPlane && cluster.balancer.is_none() {
        return Err(ClusterError::InvalidInput {
            field: "--role".into(),
            problem: format!(
                "cluster {:?} has one control plane and no load balancer in front of it: its nodes and kubeconfig reach the API server at {} itself, so another control plane would take no load and the cluster would still end with that node. Create the cluster with several control planes (see configs/ha.yaml) to add and remove them",
                opts.cluster, cluster.first_cp
            ),
        });
    }
    let name = match &opts.node {
        Some(name) => {
            crate::config::validate_cluster_name(name)
                .map_err(|problem| ClusterError::InvalidInput { field: "NODE-NAME".into(), problem: problem.describe("node name") })?;
            name.clone()
        }
        None => next_name(docker, &opts.cluster, opts.role).await?,
    };
    if docker.inspect(&name).await.is_ok() {
        return Err(ClusterError::InvalidInput { field: "NODE-NAME".into(), problem: format!("a container named {name} exists already") });
    }
    let like = cluster
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::from(opts.role))
        .or_else(|| cluster.nodes.iter().find(|n| n.name == cluster.first_cp))
        .map(|n| n.name.clone())
        .expect("a running cluster has a control plane");
    let image = match &opts.image {
        Some(image) => {
            let local = crate::registry::local_name(&crate::image_ref::ImageRef::parse(image)?);
            if !docker.image_exists(&local).await? {
                return Err(ClusterError::from(ImageError::Missing(image.clone())));
            }
            check_skew(docker, &local, cluster.version, opts.role).await?;
            local
        }
        None => {
            let running = docker.inspect(&cluster.first_cp).await?.image();
            // A restored cluster runs on its snapshot's images, which hold their nodes' own
            // certificates: a new node starts from the image they were saved from.
            let labels = docker.image_labels(&running).await.unwrap_or_default();
            super::snapshot::saved_from(&labels).map(str::to_string).unwrap_or(running)
        }
    };
    Ok((cluster, NewNode { name, role: opts.role, image, like }))
}

/// The first of the cluster's names for `role` (`NAME-worker`, `NAME-worker2`, …) that no
/// container holds.
async fn next_name(docker: &dyn Runtime, cluster: &str, role: Role) -> Result<String> {
    for index in 0.. {
        let name = super::node_name(cluster, role, index);
        if docker.inspect(&name).await.is_err() {
            return Ok(name);
        }
    }
    unreachable!("some index is free")
}

/// kubeadm's version skew rules for a join: a control plane of the cluster's own minor version,
/// a worker's kubelet up to three minor versions older, never newer.
fn joinable(node: KubeVersion, cluster: KubeVersion, role: Role) -> bool {
    node.major == cluster.major
        && match role {
            Role::ControlPlane => node.minor == cluster.minor,
            Role::Worker => node.minor <= cluster.minor && node.minor + 3 >= cluster.minor,
        }
}

/// Refuses an image whose Kubernetes version [`joinable`] refuses, naming both versions.
async fn check_skew(docker: &dyn Runtime, image: &str, cluster: KubeVersion, role: Role) -> Result<()> {
    let labels = docker.image_labels(image).await?;
    let version = labels
        .get(super::render::VERSION_LABEL)
        .and_then(|v| KubeVersion::parse(v).ok())
        .or_else(|| crate::image_ref::ImageRef::parse(image).ok()?.tag_version().and_then(|t| KubeVersion::parse(t).ok()));
    let Some(version) = version else {
        return Err(ClusterError::InvalidInput {
            field: "--image".into(),
            problem: format!(
                "cannot tell the Kubernetes version of {image} (no {} label, and its tag is not a version)",
                super::render::VERSION_LABEL
            ),
        });
    };
    if joinable(version, cluster, role) {
        Ok(())
    } else {
        let rule = match role {
            Role::ControlPlane => "a control plane must run the cluster's minor version",
            Role::Worker => "a worker's kubelet may be up to three minor versions older than the control plane, never newer",
        };
        Err(ClusterError::InvalidInput {
            field: "--image".into(),
            problem: format!("{image} runs Kubernetes {version} and the cluster {cluster}: kubeadm cannot join it ({rule})"),
        })
    }
}

async fn add_steps(
    docker: &dyn Runtime,
    opts: &AddOptions,
    cluster: &Running,
    new: &NewNode,
    made: &mut Made,
    status: &Status,
) -> Result<()> {
    let step = status.step(format!("Creating node {}", new.name));
    made.node = Some(new.name.clone());
    provision(docker, opts, cluster, new, &made.create_id).await?;
    step.done();

    let step = status.step(format!("Joining {} as a {}", new.name, opts.role.as_str()));
    let token = super::plan::new_bootstrap_token();
    let token_id = token.split('.').next().unwrap_or_default().to_string();
    docker
        .exec_ok(
            &cluster.first_cp,
            &["kubeadm", "token", "create", &token, "--ttl", TOKEN_TTL, "--description", &format!("berth create node {}", new.name)],
        )
        .await?;
    made.token_id = Some(token_id);
    let ca_cert_hash = ca_cert_hash_of(docker, &cluster.first_cp, "join", &new.name).await?;
    let certificate_key = if opts.role == Role::ControlPlane {
        // This join's own key: the certificates uploaded with it expire with the Secret (2 h).
        let key = super::plan::new_certificate_key();
        let out = docker
            .exec(&cluster.first_cp, &["kubeadm", "init", "phase", "upload-certs", "--upload-certs", "--certificate-key", &key])
            .await?;
        if out.code != 0 {
            return Err(ClusterError::from(BootstrapError::KubeadmFailed {
                phase: "upload-certs",
                node: cluster.first_cp.clone(),
                tail: redact(&out.tail(15), &token, Some(&key)),
            }));
        }
        Some(key)
    } else {
        None
    };
    let node_ip = docker.container_ip(&new.name, NETWORK_NAME).await?;
    let fs = docker.exec_ok(&new.name, &["stat", "-fc", "%T", "/sys/fs/cgroup"]).await?;
    let version = KubeVersion::parse(&docker.exec_ok(&new.name, &["cat", "/kind/version"]).await?)?;
    let params = Params {
        version,
        cluster_name: opts.cluster.clone(),
        node_name: new.name.clone(),
        node_ip: node_ip.clone(),
        control_plane_endpoint: cluster.endpoint(),
        pod_subnet: String::new(),
        service_subnet: String::new(),
        cgroup: kubeadm::CgroupVersion::from_fs_type(&fs),
        kube_proxy_mode: crate::config::ProxyMode::Iptables,
        cert_sans: Vec::new(),
        feature_gates: BTreeMap::new(),
        runtime_config: BTreeMap::new(),
        node_labels: opts.labels.clone(),
        schedulable_control_plane: !cluster.nodes.iter().any(|n| n.role == NodeRole::Worker),
        single_control_plane: false,
        hostpath_provisioner: false,
        rootless: docker.rootless().await?,
        token: token.clone(),
        ca_cert_hash: Some(ca_cert_hash),
        certificate_key: certificate_key.clone(),
        join: NodeJoin::Join { control_plane: opts.role == Role::ControlPlane },
    };
    let rendered = kubeadm::render(&params, &[], &[])?;
    docker.write_files(&new.name, &[(KUBEADM_CONFIG_PATH, rendered.as_bytes(), 0o600)]).await?;
    made.joined = true;
    let out = docker.exec(&new.name, &["kubeadm", "join", "--skip-phases=preflight", &format!("--config={KUBEADM_CONFIG_PATH}")]).await?;
    tracing::trace!(
        "kubeadm join on {}:\n{}",
        new.name,
        redact(&format!("{}{}", out.stdout, out.stderr), &token, certificate_key.as_deref())
    );
    if out.code != 0 {
        return Err(ClusterError::from(BootstrapError::KubeadmFailed {
            phase: "join",
            node: new.name.clone(),
            tail: redact(&out.tail(25), &token, certificate_key.as_deref()),
        }));
    }
    step.done();

    if opts.role == Role::ControlPlane {
        if let Some(balancer) = &cluster.balancer {
            let step = status.step(format!("Adding {} to the load balancer", new.name));
            let mut control_planes = cluster.control_planes();
            control_planes.push(new.name.clone());
            let before = docker.exec_ok(balancer, &["cat", LB_CONFIG_PATH]).await?;
            made.balancer_config = Some((balancer.clone(), before));
            set_balancer(docker, balancer, &control_planes).await?;
            step.done();
        }
    }

    if !opts.wait.is_zero() {
        let step = status.step(format!("Waiting for {} to be Ready", new.name));
        crate::kube::wait_for_node_ready(&cluster.client, &new.name, tokio::time::Instant::now() + opts.wait).await?;
        step.done();
    }
    if let Some(id) = made.token_id.take() {
        // Its one join is done; the TTL would end it later.
        let _ = docker.exec(&cluster.first_cp, &["kubeadm", "token", "delete", &id]).await;
    }
    let _ = docker.remove_volume(&removal_marker(&opts.cluster, &new.name)).await;
    Ok(())
}

/// Creates and starts the node's container under berth's network lease, at a free pinned
/// address, with the settings its sibling `new.like` was given, and waits for systemd.
async fn provision(docker: &dyn Runtime, opts: &AddOptions, cluster: &Running, new: &NewNode, create_id: &str) -> Result<()> {
    let sibling = docker.inspect(&new.like).await?;
    let host = sibling.host_config();
    let inherited = |e: &&String| e.split_once('=').is_some_and(|(k, _)| INHERITED_ENV.contains(&k));
    let env: Vec<String> = sibling.config().env_vars().iter().filter(inherited).cloned().collect();
    let value = |key: &str| env.iter().find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string));
    let mut members: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    members.push(new.name.clone());
    let mut spec = NodeSpec {
        name: new.name.clone(),
        cluster: opts.cluster.clone(),
        role: opts.role,
        image: new.image.clone(),
        mode: if host.privileged() { NodeMode::Privileged } else { NodeMode::Capabilities },
        network: NETWORK_NAME.to_string(),
        runtime: host.runtime(),
        api_server: None,
        port_mappings: Vec::new(),
        mounts: Vec::new(),
        host_has_lib_modules: std::path::Path::new("/lib/modules").is_dir(),
        labels: vec![(LABEL_CREATE_ID.to_string(), create_id.to_string()), (LABEL_MEMBERS.to_string(), members.join(","))],
        ip: None,
        runtime_cni: value(crate::runtime::RUNTIME_CNI_ENV).is_some(),
        dns_search: value(crate::runtime::DNS_SEARCH_ENV).map(|s| s.split_whitespace().map(str::to_string).collect()),
        extra_env: env
            .iter()
            .filter(|e| {
                !e.starts_with(crate::runtime::RUNTIME_CNI_ENV)
                    && !e.starts_with(crate::runtime::DNS_SEARCH_ENV)
                    && !e.starts_with(crate::runtime::SERVICE_SUBNET_ENV)
            })
            .cloned()
            .collect(),
        service_subnet: value(crate::runtime::SERVICE_SUBNET_ENV),
    };
    // From choosing the address until the container holding it runs, no other berth may choose.
    let lease = Lease::network(docker, &new.image).await?;
    let subnet = docker.ensure_network(NETWORK_NAME, &lease).await?;
    if let Some(subnet) = subnet {
        let used = docker.used_addresses(NETWORK_NAME).await?;
        let picked = network::allocate(subnet, &used, 1).ok_or_else(|| HostError::NoAddresses { subnet: subnet.to_string(), count: 1 })?;
        spec.ip = picked.first().map(|ip| ip.to_string());
    }
    docker.create_container(&spec.name, node_container_body(&spec)).await?;
    docker.start_container(&spec.name).await?;
    lease.release().await?;
    super::steps::provision::wait_for_systemd(docker, &spec.name).await
}

/// Writes the balancer's configuration for `control_planes` and has haproxy reload it
/// (SIGUSR2 makes its master start new workers on the new configuration; connections in flight
/// finish on the old ones).
async fn set_balancer(docker: &dyn Runtime, balancer: &str, control_planes: &[String]) -> Result<()> {
    let config = haproxy_config(control_planes);
    docker.write_files(balancer, &[(LB_CONFIG_PATH, config.as_bytes(), 0o644)]).await?;
    docker.signal(balancer, "SIGUSR2").await?;
    Ok(())
}

/// Removes what a failed or interrupted add made.
async fn undo_add(docker: &dyn Runtime, cluster: &Running, new: &NewNode, made: &Made, status: &Status) -> Result<()> {
    let step = status.step(format!("Removing {}", new.name));
    if let Some((balancer, config)) = &made.balancer_config {
        docker.write_files(balancer, &[(LB_CONFIG_PATH, config.as_bytes(), 0o644)]).await?;
        docker.signal(balancer, "SIGUSR2").await?;
    }
    if made.joined {
        if new.role == Role::ControlPlane {
            // A control plane's join may have added an etcd member before it failed: without its
            // removal etcd counts a member that will never answer.
            let _ = docker
                .exec(&new.name, &["kubeadm", "reset", "phase", "remove-etcd-member", "--kubeconfig", "/etc/kubernetes/admin.conf"])
                .await;
        }
        crate::kube::delete_node(&cluster.client, &new.name).await?;
    }
    if let Some(id) = &made.token_id {
        let _ = docker.exec(&cluster.first_cp, &["kubeadm", "token", "delete", id]).await;
    }
    super::create::sweep_settled(docker, &format!("{LABEL_CREATE_ID}={}", made.create_id)).await?;
    step.done();
    Ok(())
}

/// Removes a node from a running cluster: cordoned and drained, out of etcd (a control plane),
/// its Node object, container and volume gone, the load balancer told.
pub async fn remove(docker: &dyn Runtime, opts: &RemoveOptions, status: &Status) -> Result<()> {
    remove_with(docker, &crate::kube::Dial, opts, status).await
}

async fn remove_with(docker: &dyn Runtime, api: &dyn crate::kube::Connect, opts: &RemoveOptions, status: &Status) -> Result<()> {
    let step = status.step(format!("Checking cluster {:?}", opts.cluster));
    let cluster = running(docker, api, &opts.cluster).await?;
    let node = cluster.nodes.iter().find(|n| n.name == opts.node).ok_or_else(|| ClusterError::InvalidInput {
        field: "NODE".into(),
        problem: format!(
            "cluster {:?} has no node {:?}; its nodes: {}",
            opts.cluster,
            opts.node,
            cluster.nodes.iter().filter(|n| n.is_kubernetes_node()).map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    })?;
    if !node.is_kubernetes_node() {
        return Err(ClusterError::InvalidInput {
            field: "NODE".into(),
            problem: format!("{} is the cluster's {}, not a node", node.name, node.role),
        });
    }
    let control_plane = node.role == NodeRole::ControlPlane;
    if control_plane {
        check_quorum(&cluster, &opts.node).await?;
    }
    step.done();

    let deadline = tokio::time::Instant::now() + opts.timeout;
    let step = status.step(format!("Draining {}", opts.node));
    crate::kube::cordon(&cluster.client, &opts.node).await?;
    crate::kube::drain(&cluster.client, &opts.node, opts.force, deadline).await.map_err(|e| match e {
        crate::kube::KubeError::Timeout(t) => ClusterError::from(BootstrapError::NotReady {
            what: format!(
                "{} could not be drained within --timeout {:?}; it stays cordoned (kubectl uncordon {} to undo)",
                opts.node, opts.timeout, opts.node
            ),
            details: format!(
                "{}{}",
                t.detail,
                if opts.force { "" } else { "\n--force deletes the pods instead of evicting them (PodDisruptionBudgets are not asked)" }
            ),
        }),
        e => e.into(),
    })?;
    step.done();

    let mut client = cluster.client.clone();
    if control_plane {
        if let Some(balancer) = &cluster.balancer {
            // First out of the balancer, so no new request reaches an API server about to lose
            // its etcd; and a fresh client, whose connections the balancer makes anew.
            let step = status.step(format!("Taking {} out of the load balancer", opts.node));
            let left: Vec<String> = cluster.control_planes().into_iter().filter(|n| *n != opts.node).collect();
            set_balancer(docker, balancer, &left).await?;
            client = api.connect(&cluster.entries).await?;
            step.done();
        }
    }

    let step = status.step(format!("Removing {}", opts.node));
    // A kubelet left running would register the node again, and restart its static pods.
    docker.exec_ok(&opts.node, &["systemctl", "stop", "kubelet"]).await?;
    if control_plane {
        let out = docker
            .exec(&opts.node, &["kubeadm", "reset", "phase", "remove-etcd-member", "--kubeconfig", "/etc/kubernetes/admin.conf"])
            .await?;
        if out.code != 0 {
            return Err(ClusterError::from(BootstrapError::KubeadmFailed {
                phase: "reset phase remove-etcd-member",
                node: opts.node.clone(),
                tail: out.tail(15),
            }));
        }
    }
    crate::kube::delete_node(&client, &opts.node).await?;
    // Recorded before the container goes: `get clusters` must never see it missing.
    docker
        .create_volume(
            &removal_marker(&opts.cluster, &opts.node),
            &[(LABEL_CLUSTER.to_string(), opts.cluster.clone()), (LABEL_REMOVED_NODE.to_string(), opts.node.clone())],
        )
        .await?;
    docker.remove_container(&opts.node).await?;
    step.done();
    Ok(())
}

/// A control plane leaves etcd only if the members that stay can still agree: a majority of
/// them must be healthy (Ready). The last control plane never leaves.
async fn check_quorum(cluster: &Running, leaving: &str) -> Result<()> {
    let control_planes = cluster.control_planes();
    if control_planes.len() <= 1 {
        return Err(ClusterError::InvalidInput {
            field: "NODE".into(),
            problem: format!(
                "{leaving} is the cluster's only control plane; delete the cluster instead (berth delete cluster --name {})",
                cluster.name
            ),
        });
    }
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(cluster.client.clone());
    let mut healthy = 0;
    for cp in control_planes.iter().filter(|n| *n != leaving) {
        if nodes.get_opt(cp).await.map_err(crate::kube::KubeError::from)?.as_ref().is_some_and(crate::kube::node_is_ready) {
            healthy += 1;
        }
    }
    let staying = control_planes.len() - 1;
    if healthy < staying / 2 + 1 {
        return Err(ClusterError::InvalidInput {
            field: "NODE".into(),
            problem: format!(
                "removing {leaving} would leave etcd {staying} member(s) of which only {healthy} are healthy (Ready): not a majority, so etcd would lose quorum; bring the others back first"
            ),
        });
    }
    Ok(())
}

/// The empty volume that records `node` as removed from `cluster` on purpose.
pub fn removal_marker(cluster: &str, node: &str) -> String {
    format!("berth-removed-{cluster}-{node}")
}

#[cfg(test)]
mod tests;
