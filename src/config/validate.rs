//! Validation of a decoded config. Every check runs and every problem is reported at once,
//! each naming the field and what to do, so a user fixes a config in one pass.

use std::net::{IpAddr, Ipv4Addr};

use super::{v1alpha4, Cluster, IpFamily, Protocol, BERTH_API_VERSION, KIND_API_VERSION};

/// Longest cluster name: node hostnames are `NAME-control-plane` (+ a number for HA), and a
/// hostname label may not exceed 63 characters.
pub const MAX_CLUSTER_NAME: usize = 63 - "-control-plane99".len();

/// Checks what only the file can say: that it is a cluster config of a version berth reads,
/// and that its ports are ports (kind spells "any" as `0` or `-1`).
pub(super) fn validate_document(c: &v1alpha4::Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    if c.kind != "Cluster" {
        problems.push(format!("kind: is {:?}, expected \"Cluster\"", c.kind));
    }
    if c.api_version != BERTH_API_VERSION && c.api_version != KIND_API_VERSION {
        problems
            .push(format!("apiVersion: {:?} is not supported; use {BERTH_API_VERSION:?} (or kind's {KIND_API_VERSION:?})", c.api_version));
    }
    if let Some(port) = c.networking.api_server_port.filter(|p| !(-1..=65535).contains(p)) {
        problems.push(format!("networking.apiServerPort: {port} is not a port; use 1-65535, or 0 or -1 for a free one"));
    }
    for (i, node) in c.nodes.iter().enumerate() {
        for (j, m) in node.extra_port_mappings.iter().enumerate() {
            if !(-1..=65535).contains(&m.host_port) {
                problems.push(format!(
                    "nodes[{i}].extraPortMappings[{j}].hostPort: {} is not a port; use 1-65535, or 0 or -1 for a free one",
                    m.host_port
                ));
            }
        }
    }
    problems
}

/// Checks a defaulted config. Host-dependent checks (ports in use) are `host_ports::check`.
pub fn validate(c: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = &c.name {
        if let Err(e) = validate_cluster_name(name) {
            problems.push(format!("name: {e}"));
        }
    }
    if c.control_planes().next().is_none() {
        problems.push("nodes: no node has role control-plane; add `- role: control-plane`".into());
    }
    check_subnets(c, &mut problems);
    check_networking(c, &mut problems);
    check_nodes(c, &mut problems);
    check_port_duplicates(c, &mut problems);
    for (i, addon) in c.addons.iter().enumerate() {
        if crate::addons::find(addon).is_none() {
            problems.push(format!("addons[{i}]: unknown add-on {addon:?}; berth knows: {}", crate::addons::names().join(", ")));
        }
    }
    problems
}

/// A cluster name is a DNS-1123 label short enough to prefix node hostnames. It is also what
/// keeps a name from reaching file paths or other clusters' objects. Snapshot and node names
/// follow the same rules.
pub fn validate_cluster_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_CLUSTER_NAME {
        return Err(NameError::TooLong(name.to_string()));
    }
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name.starts_with(|ch: char| ch.is_ascii_alphanumeric()) && name.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return Err(NameError::BadCharacters(name.to_string()));
    }
    Ok(())
}

/// Why a name cannot be a cluster's (or a snapshot's, or a node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(String),
    BadCharacters(String),
}

impl NameError {
    /// The problem, calling the name a `what` ("cluster name", "snapshot name").
    pub fn describe(&self, what: &str) -> String {
        match self {
            NameError::Empty => format!("the {what} is empty"),
            NameError::TooLong(name) => format!("{name:?} is {} characters; at most {MAX_CLUSTER_NAME} are allowed", name.len()),
            NameError::BadCharacters(name) => format!(
                "{name:?} is not a valid {what}; use lower-case letters, digits and '-', starting and ending with a letter or digit"
            ),
        }
    }
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe("cluster name"))
    }
}

impl std::error::Error for NameError {}

/// An IPv4 subnet (`10.244.0.0/16`), as the config and the engine's networks give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::Ipv4Net);

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Cidr {
    /// `addr/prefix`; None for a prefix over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        ipnet::Ipv4Net::new(addr, prefix).ok().map(Cidr)
    }

    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR like 10.244.0.0/16"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{s:?}: prefix must be 0..32"))?;
        Cidr::new(addr, prefix).ok_or_else(|| format!("{s:?}: prefix must be 0..32"))
    }

    pub fn prefix(self) -> u8 {
        self.0.prefix_len()
    }

    /// The subnet's first address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        self.0.network()
    }

    /// The subnet's last address.
    pub fn broadcast(self) -> Ipv4Addr {
        self.0.broadcast()
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }

    /// Its two halves, lower first; None for a single address.
    pub fn halves(self) -> Option<(Cidr, Cidr)> {
        let mut halves = self.0.trunc().subnets(self.prefix().checked_add(1).filter(|p| *p <= 32)?).ok()?;
        Some((Cidr(halves.next()?), Cidr(halves.next()?)))
    }
}

fn check_subnets(c: &Cluster, problems: &mut Vec<String>) {
    let pod = Cidr::parse(c.pod_subnet()).map_err(|e| problems.push(format!("networking.podSubnet: {e}")));
    let svc = Cidr::parse(c.service_subnet()).map_err(|e| problems.push(format!("networking.serviceSubnet: {e}")));
    if let (Ok(pod), Ok(svc)) = (pod, svc) {
        if pod.overlaps(svc) {
            problems.push(format!(
                "networking: podSubnet {} overlaps serviceSubnet {}; choose ranges that do not intersect",
                c.pod_subnet(),
                c.service_subnet()
            ));
        }
        if pod.prefix() > 24 {
            problems.push(format!("networking.podSubnet: {} is too small; each node takes a /24, so use /16 to /24", c.pod_subnet()));
        }
    }
}

fn check_networking(c: &Cluster, problems: &mut Vec<String>) {
    let n = &c.networking;
    if let family @ (IpFamily::Ipv6 | IpFamily::Dual) = n.ip_family {
        problems.push(format!(
            "networking.ipFamily: {} is not supported: berth's Docker network and its pod network are IPv4-only; use ipv4",
            if family == IpFamily::Ipv6 { "ipv6" } else { "dual" }
        ));
    }
    if n.api_server_address.parse::<IpAddr>().is_err() {
        problems.push(format!("networking.apiServerAddress: {:?} is not an IP address", n.api_server_address));
    }
    for (i, domain) in n.dns_search.iter().flatten().enumerate() {
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            problems.push(format!("networking.dnsSearch[{i}]: {domain:?} is not a domain name"));
        }
    }
}

fn check_nodes(c: &Cluster, problems: &mut Vec<String>) {
    for (i, node) in c.nodes.iter().enumerate() {
        for (j, m) in node.extra_port_mappings.iter().enumerate() {
            if m.container_port == 0 {
                problems.push(format!("nodes[{i}].extraPortMappings[{j}].containerPort: must be 1..65535"));
            }
            if let Some(addr) = &m.listen_address {
                if addr.parse::<IpAddr>().is_err() {
                    problems.push(format!("nodes[{i}].extraPortMappings[{j}].listenAddress: {addr:?} is not an IP address"));
                }
            }
        }
        for (j, m) in node.extra_mounts.iter().enumerate() {
            if !m.container_path.starts_with('/') {
                problems.push(format!("nodes[{i}].extraMounts[{j}].containerPath: {:?} must be absolute", m.container_path));
            }
            if m.host_path.is_empty() {
                problems.push(format!("nodes[{i}].extraMounts[{j}].hostPath: is empty"));
            }
            // Docker's `--volume` form (kind's, which creates a missing host directory) splits at
            // ':'; a path holding one would be mounted somewhere else, or with other options.
            for (field, path) in [("hostPath", &m.host_path), ("containerPath", &m.container_path)] {
                if path.contains(':') {
                    problems.push(format!(
                        "nodes[{i}].extraMounts[{j}].{field}: {path:?} contains ':', which Docker reads as a separator; mount a parent directory or a symlink whose path has none"
                    ));
                }
            }
        }
        let at = format!("nodes[{i}].");
        check_kubeadm_patches(&at, &node.kubeadm_config_patches, &node.kubeadm_config_patches_json6902, problems);
    }
    check_kubeadm_patches("", &c.kubeadm_config_patches, &c.kubeadm_config_patches_json6902, problems);
    for (j, p) in c.containerd_config_patches.iter().enumerate() {
        if let Err(e) = p.parse::<toml::Table>() {
            problems.push(format!("containerdConfigPatches[{j}]: is not TOML: {}", e.message()));
        }
    }
    for (j, p) in c.containerd_config_patches_json6902.iter().enumerate() {
        if let Err(e) = crate::patches::parse_json6902(p) {
            problems.push(format!("containerdConfigPatchesJSON6902[{j}]: {e}"));
        }
    }
}

/// Every kubeadm patch parses and names a document berth renders, so a typo is found before
/// any container exists (kind would skip a patch that matches nothing, silently).
fn check_kubeadm_patches(at: &str, merge: &[String], json6902: &[super::PatchJson6902], problems: &mut Vec<String>) {
    let kinds = crate::patches::KUBEADM_DOCUMENT_KINDS;
    let known = |kind: &str| kinds.contains(&kind);
    for (j, text) in merge.iter().enumerate() {
        match crate::patches::patch_target(text) {
            Err(e) => problems.push(format!("{at}kubeadmConfigPatches[{j}]: {e}")),
            Ok(kind) if !known(&kind) => problems.push(format!(
                "{at}kubeadmConfigPatches[{j}]: kind {kind:?} is not a kubeadm document berth renders; use one of {}",
                kinds.join(", ")
            )),
            Ok(_) => {}
        }
    }
    for (j, p) in json6902.iter().enumerate() {
        if !known(&p.kind) {
            problems.push(format!(
                "{at}kubeadmConfigPatchesJSON6902[{j}].kind: {:?} is not a kubeadm document berth renders; use one of {}",
                p.kind,
                kinds.join(", ")
            ));
        }
        if let Err(e) = crate::patches::parse_json6902(&p.patch) {
            problems.push(format!("{at}kubeadmConfigPatchesJSON6902[{j}].patch: {e}"));
        }
    }
}

/// The host ports the config asks for, fixed ones only: (listen address, port, protocol, field).
pub fn fixed_host_ports(c: &Cluster) -> Vec<(String, u16, Protocol, String)> {
    let mut out = Vec::new();
    if let Some(port) = c.networking.api_server_port {
        // With several control planes the port goes to the load balancer, once.
        out.push((c.api_server_address().to_string(), port, Protocol::Tcp, "networking.apiServerPort".to_string()));
    }
    for (i, node) in c.nodes.iter().enumerate() {
        for (j, m) in node.extra_port_mappings.iter().enumerate() {
            if let Some(port) = m.host_port {
                let addr = m.listen_address.clone().unwrap_or_else(|| "0.0.0.0".into());
                out.push((addr, port, m.protocol, format!("nodes[{i}].extraPortMappings[{j}].hostPort")));
            }
        }
    }
    out
}

fn check_port_duplicates(c: &Cluster, problems: &mut Vec<String>) {
    let mut seen: Vec<(String, u16, Protocol, String)> = Vec::new();
    for entry in fixed_host_ports(c) {
        let clash = seen
            .iter()
            .find(|(a, p, proto, _)| *p == entry.1 && *proto == entry.2 && (a == &entry.0 || a == "0.0.0.0" || entry.0 == "0.0.0.0"));
        if let Some(first) = clash {
            problems.push(format!("{}: host port {} is also used by {}; each host port can be published once", entry.3, entry.1, first.3));
        } else {
            seen.push(entry);
        }
    }
}
