//! The cluster berth builds: the config file ([`super::v1alpha4`]) with every default filled
//! in, in one place ([`Cluster::from_file`]), and ports as what they mean (`None`: a free port
//! berth chooses) rather than kind's spellings of them (`0`, `-1`). Validated as a whole by
//! [`super::validate`] before Docker is touched.

use std::collections::BTreeMap;

use super::v1alpha4;
pub use super::v1alpha4::{IpFamily, Mount, PatchJson6902, Propagation, Protocol, ProxyMode, RegistrySpec, Role};

pub const DEFAULT_POD_SUBNET: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/16";
pub const DEFAULT_API_SERVER_ADDRESS: &str = "127.0.0.1";

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: Option<String>,
    /// At least one.
    pub nodes: Vec<Node>,
    pub networking: Networking,
    pub feature_gates: BTreeMap<String, bool>,
    pub runtime_config: BTreeMap<String, String>,
    pub kubeadm_config_patches: Vec<String>,
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
    pub containerd_config_patches: Vec<String>,
    pub containerd_config_patches_json6902: Vec<String>,
    pub addons: Vec<String>,
    pub registry: Option<RegistrySpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub role: Role,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub extra_port_mappings: Vec<PortMapping>,
    pub extra_mounts: Vec<Mount>,
    pub kubeadm_config_patches: Vec<String>,
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortMapping {
    pub container_port: u16,
    /// `None`: a port free at create, kept across restarts (kind's `0` and `-1`).
    pub host_port: Option<u16>,
    pub listen_address: Option<String>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Networking {
    pub ip_family: IpFamily,
    pub api_server_address: String,
    /// `None`: a port free at create, kept across restarts (kind's `0` and `-1`).
    pub api_server_port: Option<u16>,
    pub pod_subnet: String,
    pub service_subnet: String,
    pub disable_default_cni: bool,
    pub kube_proxy_mode: ProxyMode,
    /// `None`: the host's search domains; empty: none.
    pub dns_search: Option<Vec<String>>,
}

impl Node {
    pub fn new(role: Role) -> Self {
        Node {
            role,
            image: None,
            labels: BTreeMap::new(),
            extra_port_mappings: Vec::new(),
            extra_mounts: Vec::new(),
            kubeadm_config_patches: Vec::new(),
            kubeadm_config_patches_json6902: Vec::new(),
        }
    }
}

/// kind's "any port" spellings (`0`, `-1`, absent) as `None`; out-of-range values are caught
/// by validation of the file first.
fn port(value: Option<i32>) -> Option<u16> {
    value.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
}

impl Cluster {
    /// The config used when the user gives none: one control-plane node.
    pub fn default_config() -> Self {
        Cluster::from_file(v1alpha4::Cluster {
            kind: "Cluster".into(),
            api_version: super::BERTH_API_VERSION.into(),
            name: None,
            nodes: Vec::new(),
            networking: v1alpha4::Networking::default(),
            feature_gates: BTreeMap::new(),
            runtime_config: BTreeMap::new(),
            kubeadm_config_patches: Vec::new(),
            kubeadm_config_patches_json6902: Vec::new(),
            containerd_config_patches: Vec::new(),
            containerd_config_patches_json6902: Vec::new(),
            addons: Vec::new(),
            registry: None,
        })
    }

    /// The file's cluster with what it left out filled in, as kind fills it: one control-plane
    /// node, loopback API address, the usual subnets, iptables proxy mode, IPv4.
    pub fn from_file(file: v1alpha4::Cluster) -> Self {
        let n = file.networking;
        let mut nodes: Vec<Node> = file
            .nodes
            .into_iter()
            .map(|node| Node {
                role: node.role,
                image: node.image,
                labels: node.labels,
                extra_port_mappings: node
                    .extra_port_mappings
                    .into_iter()
                    .map(|m| PortMapping {
                        container_port: m.container_port,
                        host_port: port(Some(m.host_port)),
                        listen_address: m.listen_address,
                        protocol: m.protocol,
                    })
                    .collect(),
                extra_mounts: node.extra_mounts,
                kubeadm_config_patches: node.kubeadm_config_patches,
                kubeadm_config_patches_json6902: node.kubeadm_config_patches_json6902,
            })
            .collect();
        if nodes.is_empty() {
            nodes.push(Node::new(Role::ControlPlane));
        }
        Cluster {
            name: file.name,
            nodes,
            networking: Networking {
                ip_family: n.ip_family.unwrap_or_default(),
                api_server_address: n.api_server_address.unwrap_or_else(|| DEFAULT_API_SERVER_ADDRESS.into()),
                api_server_port: port(n.api_server_port),
                pod_subnet: n.pod_subnet.unwrap_or_else(|| DEFAULT_POD_SUBNET.into()),
                service_subnet: n.service_subnet.unwrap_or_else(|| DEFAULT_SERVICE_SUBNET.into()),
                disable_default_cni: n.disable_default_cni,
                kube_proxy_mode: n.kube_proxy_mode.unwrap_or_default(),
                dns_search: n.dns_search,
            },
            feature_gates: file.feature_gates,
            runtime_config: file.runtime_config,
            kubeadm_config_patches: file.kubeadm_config_patches,
            kubeadm_config_patches_json6902: file.kubeadm_config_patches_json6902,
            containerd_config_patches: file.containerd_config_patches,
            containerd_config_patches_json6902: file.containerd_config_patches_json6902,
            addons: file.addons,
            registry: file.registry,
        }
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::ControlPlane)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Worker)
    }

    pub fn pod_subnet(&self) -> &str {
        &self.networking.pod_subnet
    }

    pub fn service_subnet(&self) -> &str {
        &self.networking.service_subnet
    }

    pub fn api_server_address(&self) -> &str {
        &self.networking.api_server_address
    }

    pub fn kube_proxy_mode(&self) -> ProxyMode {
        self.networking.kube_proxy_mode
    }
}
