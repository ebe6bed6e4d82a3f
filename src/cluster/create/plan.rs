//! The plan of a create: which nodes, from which images, with which host ports and mounts, and
//! the secrets every kubeadm config of the cluster shares — settled from the options alone,
//! before Docker is touched, so `create` and `create --dry-run` work from the same plan.

use std::collections::BTreeMap;
use std::path::Path;

use super::options::CreateOptions;
use crate::cluster::{ClusterError, Result};
use crate::config;
use crate::image_ref::ImageRef;

/// A node to be: its container name, which config node it comes from, and its host ports and
/// mounts as Docker will get them (free ports chosen, host paths absolute).
#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub name: String,
    pub role: config::Role,
    pub image: ImageRef,
    pub index: usize,
    pub port_mappings: Vec<config::PortMapping>,
    pub mounts: Vec<config::Mount>,
}

/// What a create will make, settled before Docker is touched; `--dry-run` renders from it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub nodes: Vec<PlannedNode>,
    /// A bootstrap token for joins, made fresh per cluster.
    pub token: String,
    /// Encrypts the control-plane certificates kubeadm uploads for other control planes (HA).
    pub certificate_key: Option<String>,
    /// The host port the API server is published on: the config's, else one chosen free now.
    /// Never left to Docker, which would pick a new one at every start.
    pub api_server_port: u16,
}

impl Plan {
    pub fn control_plane(&self) -> &PlannedNode {
        self.nodes.iter().find(|n| n.role == config::Role::ControlPlane).expect("validated: one control plane")
    }

    /// Several control planes: a load balancer fronts them and is the cluster's endpoint.
    pub fn is_ha(&self) -> bool {
        self.nodes.iter().filter(|n| n.role == config::Role::ControlPlane).count() > 1
    }
}

/// Plans the cluster `opts` describes. Binds host ports briefly to find free ones; creates
/// nothing.
pub fn make(opts: &CreateOptions) -> Result<Plan> {
    let mut counts: BTreeMap<config::Role, usize> = BTreeMap::new();
    let cwd = std::env::current_dir().map_err(|source| ClusterError::Io { context: "reading the current directory".into(), source })?;
    let nodes = opts
        .config
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let n = counts.entry(node.role).or_insert(0);
            let name = crate::cluster::node_name(&opts.name, node.role, *n);
            *n += 1;
            Ok(PlannedNode {
                name,
                role: node.role,
                image: ImageRef::parse(node.image.as_deref().unwrap_or(&opts.image))?,
                index,
                port_mappings: node.extra_port_mappings.iter().map(with_host_port).collect::<Result<_>>()?,
                mounts: node.extra_mounts.iter().map(|m| absolute(m, &cwd)).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ha = nodes.iter().filter(|n| n.role == config::Role::ControlPlane).count() > 1;
    Ok(Plan { nodes, token: new_bootstrap_token(), certificate_key: ha.then(new_certificate_key), api_server_port: api_server_port(opts)? })
}

/// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, from the OS's random source.
pub fn new_bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 22];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}.{}", &chars[..6], &chars[6..])
}

/// A key for kubeadm's uploaded certificates: 32 random bytes, hex.
pub fn new_certificate_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port free right now on `address` (and protocol), for a mapping that asks for any port:
/// chosen here, not by Docker, which would choose anew at every start.
fn free_port(address: &str, protocol: config::Protocol) -> Result<u16> {
    let io = |source| ClusterError::Io { context: format!("finding a free port on {address}"), source };
    let port = match protocol {
        config::Protocol::Udp => std::net::UdpSocket::bind((address, 0)).and_then(|s| s.local_addr()).map_err(io)?.port(),
        _ => std::net::TcpListener::bind((address, 0)).and_then(|s| s.local_addr()).map_err(io)?.port(),
    };
    Ok(port)
}

/// The mapping with its host port fixed: "any" (kind's `0` and `-1`) becomes a free port.
fn with_host_port(m: &config::PortMapping) -> Result<config::PortMapping> {
    let mut m = m.clone();
    if m.host_port.is_none() {
        let address = m.listen_address.clone().unwrap_or_else(|| "0.0.0.0".into());
        m.host_port = Some(free_port(&address, m.protocol)?);
    }
    Ok(m)
}

/// The configured API server port, or a port free right now on its address (`0`, `-1`, absent).
fn api_server_port(opts: &CreateOptions) -> Result<u16> {
    match opts.config.networking.api_server_port {
        Some(port) => Ok(port),
        None => free_port(opts.config.api_server_address(), config::Protocol::Tcp),
    }
}

/// The proxy variables of berth's environment for the nodes, as kind passes them: each of
/// HTTP_PROXY, HTTPS_PROXY and NO_PROXY (or its lower-case spelling) that is set, in both
/// spellings; with any of them set, NO_PROXY also lists what must never go through the proxy —
/// the cluster's subnets, berth's network, the nodes by name and in-cluster DNS names.
pub fn proxy_env(cfg: &config::Cluster, get: impl Fn(&str) -> Option<String>, network: Option<&str>, nodes: &[String]) -> Vec<String> {
    let mut vars: Vec<(&str, String)> = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"]
        .into_iter()
        .filter_map(|name| get(name).or_else(|| get(&name.to_lowercase())).filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect();
    if vars.is_empty() {
        return Vec::new();
    }
    let mut no_proxy: Vec<String> = vars.iter().find(|(n, _)| *n == "NO_PROXY").map(|(_, v)| vec![v.clone()]).unwrap_or_default();
    no_proxy.extend([cfg.service_subnet().to_string(), cfg.pod_subnet().to_string()]);
    no_proxy.extend(network.map(str::to_string));
    no_proxy.extend(nodes.iter().cloned());
    no_proxy.extend([".svc", ".svc.cluster", ".svc.cluster.local"].map(String::from));
    vars.retain(|(n, _)| *n != "NO_PROXY");
    vars.push(("NO_PROXY", no_proxy.join(",")));
    vars.iter().flat_map(|(name, value)| [format!("{name}={value}"), format!("{}={value}", name.to_lowercase())]).collect()
}

/// Docker binds only absolute paths; like kind, a relative `hostPath` is taken from the
/// directory berth runs in.
fn absolute(m: &config::Mount, cwd: &Path) -> config::Mount {
    let mut m = m.clone();
    if !Path::new(&m.host_path).is_absolute() {
        m.host_path = cwd.join(&m.host_path).display().to_string();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_pass_through_with_the_cluster_kept_off_them() {
        let cfg = config::Cluster::default_config();
        let nodes = ["c-control-plane".to_string()];
        assert!(proxy_env(&cfg, |_| None, Some("172.30.0.0/16"), &nodes).is_empty(), "no proxy, no variables");
        let env = proxy_env(&cfg, |n| (n == "https_proxy").then(|| "http://proxy:3128".to_string()), Some("172.30.0.0/16"), &nodes);
        assert!(env.contains(&"HTTPS_PROXY=http://proxy:3128".to_string()) && env.contains(&"https_proxy=http://proxy:3128".to_string()));
        let no_proxy = env.iter().find_map(|e| e.strip_prefix("NO_PROXY=")).unwrap();
        assert_eq!(no_proxy, "10.96.0.0/16,10.244.0.0/16,172.30.0.0/16,c-control-plane,.svc,.svc.cluster,.svc.cluster.local");
        let env = proxy_env(&cfg, |n| (n == "NO_PROXY").then(|| "corp.example".to_string()), None, &nodes);
        assert!(env.iter().any(|e| e.starts_with("no_proxy=corp.example,10.96.0.0/16")), "{env:?}");
    }

    #[test]
    fn tokens_have_kubeadms_shape() {
        let t = new_bootstrap_token();
        let (id, secret) = t.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(t.bytes().all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(t, new_bootstrap_token());
    }

    #[test]
    fn any_port_becomes_a_fixed_free_one_and_paths_become_absolute() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  apiServerPort: -1\nnodes:\n- extraPortMappings:\n  - {containerPort: 80, hostPort: -1, listenAddress: 127.0.0.1}\n  - {containerPort: 53, hostPort: 0, protocol: UDP, listenAddress: 127.0.0.1}\n  - {containerPort: 443, hostPort: 18443}\n  extraMounts:\n  - {hostPath: data/x, containerPath: /x}\n  - {hostPath: /abs, containerPath: /y}\n";
        let config = config::parse(text, "t").unwrap();
        assert_eq!(config.nodes[0].role, config::Role::ControlPlane, "a node without a role is a control plane");
        let opts = CreateOptions { config, ..CreateOptions::for_tests("plan") };
        let plan = make(&opts).unwrap();
        let node = &plan.nodes[0];
        assert!(node.port_mappings[0].host_port.is_some() && node.port_mappings[1].host_port.is_some(), "{:?}", node.port_mappings);
        assert_eq!(node.port_mappings[2].host_port, Some(18443));
        assert_ne!(plan.api_server_port, 0);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(node.mounts[0].host_path, cwd.join("data/x").display().to_string());
        assert_eq!(node.mounts[1].host_path, "/abs");
        assert_eq!(plan.certificate_key, None, "one control plane uploads no certificates");
    }
}
