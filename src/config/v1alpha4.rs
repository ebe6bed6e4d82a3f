//! The config file as users write it: kind's `kind.x-k8s.io/v1alpha4` schema (berth's
//! `berth.dev/v1alpha1` is the same plus `addons` and `registry`), decoded strictly — an
//! unknown field is an error naming its path. Everything is optional here, as in the file;
//! [`super::model`] is what berth works with, defaulted in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    pub kind: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub networking: Networking,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runtime_config: BTreeMap<String, String>,
    /// Merge patches (YAML documents) applied to the generated kubeadm config on every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches: Vec<String>,
    /// RFC 6902 patches applied to the kubeadm document of the given group/version/kind.
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902", skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
    /// TOML merge patches for every node's /etc/containerd/config.toml.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containerd_config_patches: Vec<String>,
    /// RFC 6902 patches (YAML or JSON) for every node's containerd config, seen as JSON.
    #[serde(default, rename = "containerdConfigPatchesJSON6902", skip_serializing_if = "Vec::is_empty")]
    pub containerd_config_patches_json6902: Vec<String>,
    /// berth's add-ons, e.g. `dashboard`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addons: Vec<String>,
    /// A local registry every node pulls `localhost:PORT/...` from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySpec>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Host port on 127.0.0.1 (default 5001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The registry image (default `registry:2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// kind's `PatchJSON6902`: an RFC 6902 patch for the document of this group, version and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchJson6902 {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
    /// The operations, as a YAML or JSON list.
    pub patch: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// kind's default for a node that names no role.
    #[default]
    ControlPlane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    #[serde(default)]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902", skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// In any case, as kind reads it (its YAML unmarshalling upper-cases the value): kind's own
/// quick-start writes `protocol: udp`.
impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let raw = String::deserialize(d)?;
        Protocol::parse(&raw).ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {raw:?}: use TCP, UDP or SCTP")))
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Protocol {
    /// `TCP`, `UDP` or `SCTP`, in any case (a Service's ports and kind's config both use them).
    pub fn parse(raw: &str) -> Option<Protocol> {
        match raw.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    pub fn docker_suffix(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The protocol of an engine's container port (`80/udp`); TCP where it names none.
    pub fn of_container_port(port: &str) -> Protocol {
        match port.rsplit_once('/').map(|(_, p)| p) {
            Some("udp") => Protocol::Udp,
            Some("sctp") => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    /// 0, -1 (kind's spelling) or absent: a port free at create, kept across restarts.
    #[serde(default)]
    pub host_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub selinux_relabel: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    None,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Iptables,
    Ipvs,
    Nftables,
    /// No kube-proxy at all (kubeadm's phase is skipped), for CNIs that replace it.
    None,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Ipvs => "ipvs",
            ProxyMode::Nftables => "nftables",
            ProxyMode::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<IpFamily>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_address: Option<String>,
    /// 0, -1 (kind's spelling) or absent: a port free at create, kept across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subnet: Option<String>,
    /// kind spells it with "CNI" in capitals, which camelCase renaming would not produce.
    #[serde(default, rename = "disableDefaultCNI")]
    pub disable_default_cni: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_mode: Option<ProxyMode>,
    /// The nodes' DNS search domains; absent: the host's; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search: Option<Vec<String>>,
}
