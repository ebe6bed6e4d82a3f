//! The node container, described as data: what `docker run` flags a node needs and why.
//! Pure functions, unit-tested; `docker.rs` only sends the result.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountType,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::model::ContainerBody;
use super::{NodeMode, LABEL_CLUSTER, LABEL_ROLE};
use crate::config::{self, Propagation};

/// The port the API server listens on inside a control-plane node (and the load balancer).
pub const API_SERVER_PORT: u16 = 6443;

/// Everything that decides one node container.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub cluster: String,
    pub role: config::Role,
    pub image: String,
    pub mode: NodeMode,
    pub network: String,
    /// An OCI runtime other than the daemon's default (`BERTH_RUNTIME`), e.g. sysbox-runc.
    pub runtime: Option<String>,
    /// Publish the API server port on this host address and port (0: Docker picks).
    pub api_server: Option<(String, u16)>,
    pub port_mappings: Vec<config::PortMapping>,
    pub mounts: Vec<config::Mount>,
    /// Whether the host has /lib/modules to share read-only (kube-proxy's ipvs mode loads modules).
    pub host_has_lib_modules: bool,
    pub labels: Vec<(String, String)>,
    /// A fixed address on the network, kept across restarts.
    pub ip: Option<String>,
    /// Let the node's containerd write the pod network's CNI config itself, from the template
    /// a berth node image carries, the moment the kubelet learns its pod CIDR (see
    /// [`RUNTIME_CNI_ENV`]). Only with berth's default pod network.
    pub runtime_cni: bool,
    /// `networking.dnsSearch`: the node's resolv.conf search list (None: the host's).
    pub dns_search: Option<Vec<String>>,
    /// More `KEY=value` variables for the node (the user's proxy settings).
    pub extra_env: Vec<String>,
    /// The cluster's Service subnet when kube-proxy serves it (see [`SERVICE_SUBNET_ENV`]).
    pub service_subnet: Option<String>,
}

/// Tells a berth node image's entrypoint the Service subnet kube-proxy serves: connections to a
/// ClusterIP that kube-proxy has not programmed yet are refused at once instead of vanishing
/// into Docker's network (a client would wait out its connect timeout, 30 s for CoreDNS's first
/// look at the API server). Images without berth's entrypoint ignore it.
pub const SERVICE_SUBNET_ENV: &str = "BERTH_SERVICE_SUBNET";

/// Tells a berth node image's entrypoint to turn on containerd's `conf_template`. Then the
/// kubelet's first status update after the pod CIDR arrives already finds the network ready,
/// instead of waiting for the network agent's pod to start and the kubelet's next status
/// rounds (up to 15 s). Images without berth's entrypoint ignore it.
pub const RUNTIME_CNI_ENV: &str = "BERTH_RUNTIME_CNI";

/// The entrypoint of kind's images (and berth's) rewrites resolv.conf's search line from this.
pub const DNS_SEARCH_ENV: &str = "KIND_DNS_SEARCH";

fn endpoint(spec: &NodeSpec) -> NetworkingConfig {
    network_endpoint(&spec.network, &spec.name, spec.ip.as_deref())
}

/// A container's place on `network`: reachable by `name`, at `ip` if it is pinned.
pub fn network_endpoint(network: &str, name: &str, ip: Option<&str>) -> NetworkingConfig {
    let settings = EndpointSettings {
        aliases: Some(vec![name.to_string()]),
        ipam_config: ip.map(|ip| EndpointIpamConfig { ipv4_address: Some(ip.to_string()), ..Default::default() }),
        ..Default::default()
    };
    NetworkingConfig { endpoints_config: Some(HashMap::from([(network.to_string(), settings)])) }
}

pub fn node_container_body(spec: &NodeSpec) -> ContainerBody {
    let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert(LABEL_CLUSTER.into(), spec.cluster.clone());
    labels.insert(LABEL_ROLE.into(), spec.role.as_str().into());

    let (exposed, bindings) = port_bindings(spec);
    let host_config = HostConfig {
        // systemd wants its own /run and /tmp and expects them to be tmpfs, as on a real host.
        tmpfs: Some(HashMap::from([("/tmp".into(), String::new()), ("/run".into(), String::new())])),
        // Each node keeps its own cgroup tree so the kubelet sees a normal hierarchy.
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // AppArmor/seccomp profiles for ordinary containers block what systemd and runc need;
        // SELinux labels would block the same.
        security_opt: Some(security_opts()),
        privileged: Some(spec.mode == NodeMode::Privileged),
        cap_add: capabilities_mode(spec.mode).then(|| vec!["ALL".to_string()]),
        // CAP_SYS_RESOURCE is the one that sandboxes without it cannot grant.
        cap_drop: capabilities_mode(spec.mode).then(|| vec!["SYS_RESOURCE".to_string()]),
        // kubelet reads /dev/kmsg (its OOM watcher); /dev/fuse serves fuse-based workloads.
        devices: capabilities_mode(spec.mode).then(capability_mode_devices),
        // Containers inside the node create their own device nodes.
        device_cgroup_rules: capabilities_mode(spec.mode).then(|| vec!["a *:* rwm".to_string()]),
        port_bindings: Some(bindings),
        mounts: Some(mounts(spec)),
        binds: Some(binds(spec)),
        // Nodes come back after a daemon or host restart; a node the user stopped stays down.
        restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
        // What `--security-opt systempaths=unconfined` means to the docker CLI: no masked or
        // read-only /proc and /sys paths (the API has no such option, only these lists).
        masked_paths: capabilities_mode(spec.mode).then(Vec::new),
        readonly_paths: capabilities_mode(spec.mode).then(Vec::new),
        runtime: spec.runtime.clone(),
        init: Some(false),
        ..Default::default()
    };

    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.name.clone()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        // containerd's state must not live on the image's overlay filesystem: overlay on overlay
        // does not work for its snapshotter, so /var is a volume (Docker seeds it from the image).
        volumes: Some(vec!["/var".to_string()]),
        tty: Some(true), // systemd writes its status to a console
        env: Some(node_env(spec)),
        host_config: Some(host_config),
        networking_config: Some(endpoint(spec)),
        ..Default::default()
    })
}

fn node_env(spec: &NodeSpec) -> Vec<String> {
    let mut env = vec!["container=docker".to_string()];
    if spec.runtime_cni {
        env.push(format!("{RUNTIME_CNI_ENV}=1"));
    }
    if let Some(search) = &spec.dns_search {
        env.push(format!("{DNS_SEARCH_ENV}={}", search.join(" ")));
    }
    if let Some(subnet) = &spec.service_subnet {
        env.push(format!("{SERVICE_SUBNET_ENV}={subnet}"));
    }
    env.extend(spec.extra_env.iter().cloned());
    env
}

/// The external load balancer in front of several control planes: an ordinary container (no
/// privilege needed), publishing the API server port where a single control plane would.
pub fn load_balancer_body(spec: &NodeSpec) -> ContainerBody {
    let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert(LABEL_CLUSTER.into(), spec.cluster.clone());
    labels.insert(LABEL_ROLE.into(), LOAD_BALANCER_ROLE.into());
    let (exposed, bindings) = port_bindings(spec);
    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.name.clone()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            runtime: spec.runtime.clone(),
            ..Default::default()
        }),
        networking_config: Some(endpoint(spec)),
        ..Default::default()
    })
}

/// The role label of the load balancer container.
pub const LOAD_BALANCER_ROLE: &str = "external-load-balancer";

/// The role label of a LoadBalancer Service's forwarder (see `cluster::service_lb`).
pub const SERVICE_LB_ROLE: &str = "service-load-balancer";

/// A LoadBalancer Service's forwarder: a small container at the Service's address on berth's
/// network whose kernel forwards (DNAT, then masquerade) each port to the nodes' NodePort.
/// Only NET_ADMIN (for its own netfilter tables) and forwarding in its own network namespace.
pub struct ServiceLbSpec {
    pub name: String,
    pub cluster: String,
    /// An image with `sh` and `iptables`: the cluster's node image.
    pub image: String,
    pub network: String,
    pub ip: String,
    /// The script that installs the rules and then waits.
    pub script: String,
    pub labels: Vec<(String, String)>,
}

pub fn service_lb_body(spec: &ServiceLbSpec) -> ContainerBody {
    let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert(LABEL_CLUSTER.into(), spec.cluster.clone());
    labels.insert(LABEL_ROLE.into(), SERVICE_LB_ROLE.into());
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(spec.ip.clone()), ..Default::default() }),
        ..Default::default()
    };
    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec!["sh".into(), "-c".into(), spec.script.clone()]),
        cmd: Some(Vec::new()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            cap_add: Some(vec!["NET_ADMIN".into()]),
            sysctls: Some(HashMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())])),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])) }),
        ..Default::default()
    })
}

/// berth's local registry: published on 127.0.0.1:`port` only, its data on a named volume so it
/// outlives clusters, restarted with the engine unless stopped, on berth's network where the
/// nodes' containerd reaches it by name.
pub struct LocalRegistrySpec<'a> {
    pub image: &'a str,
    /// The label (set to `true`) that marks the container as berth's.
    pub label: &'a str,
    pub port: u16,
    /// Where the registry listens inside its container.
    pub internal_port: u16,
    pub volume: &'a str,
    pub network: &'a str,
}

pub fn local_registry_body(spec: &LocalRegistrySpec) -> ContainerBody {
    let key = format!("{}/tcp", spec.internal_port);
    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.to_string()),
        labels: Some(HashMap::from([(spec.label.to_string(), "true".to_string())])),
        exposed_ports: Some(vec![key.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                key,
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(spec.port.to_string()) }]),
            )])),
            mounts: Some(vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some(spec.volume.into()),
                target: Some("/var/lib/registry".into()),
                ..Default::default()
            }]),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            network_mode: Some(spec.network.into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A throwaway container that runs `script` over pairs of named volumes: pair `i` is mounted
/// read-only at `/from/i` and writable at `/to/i`, and the script gets `/from/0 /to/0 /from/1 …`
/// as its arguments. Volumes are mounted as volumes (not their host directories), so Docker
/// counts them in use and refuses to remove one meanwhile.
pub struct VolumeScriptSpec<'a> {
    pub image: &'a str,
    pub script: &'a str,
    pub pairs: &'a [(&'a str, &'a str)],
    pub labels: &'a [(String, String)],
}

/// A node brought back from a snapshot: its saved image, host settings and address, with its
/// /var on `var_volume` in place of the saved node's.
pub struct RestoredNodeSpec<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub labels: HashMap<String, String>,
    pub host: &'a super::HostConfig,
    pub var_volume: Option<&'a str>,
    pub network: &'a str,
    pub address: Option<&'a str>,
}

pub fn restored_node_body(spec: &RestoredNodeSpec) -> ContainerBody {
    let mut host_config = spec.host.0.clone();
    let mut mounts: Vec<Mount> =
        host_config.mounts.take().unwrap_or_default().into_iter().filter(|m| m.target.as_deref() != Some("/var")).collect();
    if let Some(volume) = spec.var_volume {
        mounts.push(Mount {
            source: Some(volume.to_string()),
            target: Some("/var".into()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(bollard::models::MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
            ..Default::default()
        });
    }
    host_config.mounts = Some(mounts);
    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.to_string()),
        hostname: Some(spec.name.to_string()),
        labels: Some(spec.labels.clone()),
        tty: Some(true),
        host_config: Some(host_config),
        networking_config: Some(network_endpoint(spec.network, spec.name, spec.address)),
        ..Default::default()
    })
}

/// A node-image build's container: `image` running `entrypoint` (the image's own if None). No
/// label marks it: a commit would copy the label into the image, and every container made from
/// that would carry it.
pub fn build_body(image: &str, entrypoint: Option<Vec<String>>) -> ContainerBody {
    ContainerBody(ContainerCreateBody { image: Some(image.to_string()), entrypoint, ..Default::default() })
}

pub fn volume_script_body(spec: &VolumeScriptSpec) -> ContainerBody {
    use bollard::models::MountVolumeOptions;
    // `no_copy`: Docker must not seed a volume from the image.
    let volume = |source: &str, target: String, read_only: bool| Mount {
        source: Some(source.to_string()),
        target: Some(target),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
        ..Default::default()
    };
    let mut mounts = Vec::new();
    let mut cmd = vec!["sh".to_string(), "-c".into(), spec.script.into(), "volume-script".into()];
    for (i, (from, to)) in spec.pairs.iter().enumerate() {
        mounts.extend([volume(from, format!("/from/{i}"), true), volume(to, format!("/to/{i}"), false)]);
        cmd.extend([format!("/from/{i}"), format!("/to/{i}")]);
    }
    let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert(super::LABEL_COPY.to_string(), "true".to_string());
    ContainerBody(ContainerCreateBody {
        image: Some(spec.image.to_string()),
        entrypoint: Some(cmd),
        cmd: Some(Vec::new()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            // A node image declares /var a volume: without this Docker would make and seed one.
            tmpfs: Some(HashMap::from([("/var".to_string(), String::new())])),
            // containerd's snapshots keep opaque directories in trusted.* extended attributes,
            // which only CAP_SYS_ADMIN may read and write.
            cap_add: Some(vec!["SYS_ADMIN".into()]),
            ..Default::default()
        }),
        network_disabled: Some(true),
        ..Default::default()
    })
}

fn capabilities_mode(mode: NodeMode) -> bool {
    mode == NodeMode::Capabilities
}

fn security_opts() -> Vec<String> {
    vec!["seccomp=unconfined".to_string(), "apparmor=unconfined".to_string(), "label=disable".to_string()]
}

fn capability_mode_devices() -> Vec<DeviceMapping> {
    ["/dev/kmsg", "/dev/fuse"]
        .into_iter()
        .filter(|d| std::path::Path::new(d).exists())
        .map(|d| DeviceMapping {
            path_on_host: Some(d.to_string()),
            path_in_container: Some(d.to_string()),
            cgroup_permissions: Some("rwm".to_string()),
        })
        .collect()
}

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

fn port_bindings(spec: &NodeSpec) -> (Vec<String>, PortBindings) {
    let mut exposed = Vec::new();
    let mut bindings: PortBindings = HashMap::new();
    let mut add = |key: String, ip: &str, port: u16| {
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let host_port = if port == 0 { String::new() } else { port.to_string() };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: Some(ip.to_string()), host_port: Some(host_port) });
    };
    if let Some((ip, port)) = &spec.api_server {
        add(format!("{API_SERVER_PORT}/tcp"), ip, *port);
    }
    for m in &spec.port_mappings {
        let ip = m.listen_address.as_deref().unwrap_or("0.0.0.0");
        // The plan fixed every port (kind's 0 and -1 included); none here means "Docker's pick".
        add(format!("{}/{}", m.container_port, m.protocol.docker_suffix()), ip, m.host_port.unwrap_or(0));
    }
    (exposed, bindings)
}

fn mounts(spec: &NodeSpec) -> Vec<Mount> {
    let mut out = Vec::new();
    if spec.host_has_lib_modules {
        out.push(bind("/lib/modules", "/lib/modules", true));
    }
    out
}

/// The config's `extraMounts`, as `docker run --volume` takes them (kind's way): only this form
/// creates a missing host directory and relabels for SELinux (`Z`), which the API's `Mounts`
/// cannot.
fn binds(spec: &NodeSpec) -> Vec<String> {
    spec.mounts
        .iter()
        .map(|m| {
            let mut options = Vec::new();
            if m.read_only {
                options.push("ro");
            }
            if m.selinux_relabel {
                options.push("Z");
            }
            match m.propagation {
                Some(Propagation::HostToContainer) => options.push("rslave"),
                Some(Propagation::Bidirectional) => options.push("rshared"),
                Some(Propagation::None) | None => {}
            }
            let bind = format!("{}:{}", m.host_path, m.container_path);
            if options.is_empty() {
                bind
            } else {
                format!("{bind}:{}", options.join(","))
            }
        })
        .collect()
}

fn bind(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(source.to_string()),
        target: Some(target.to_string()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortMapping, Protocol, Role};

    fn spec(mode: NodeMode) -> NodeSpec {
        NodeSpec {
            name: "demo-control-plane".into(),
            cluster: "demo".into(),
            role: Role::ControlPlane,
            image: "berth-test/node:v1.20.2".into(),
            mode,
            network: "berth".into(),
            runtime: None,
            api_server: Some(("127.0.0.1".into(), 0)),
            port_mappings: vec![PortMapping { container_port: 80, host_port: Some(8080), listen_address: None, protocol: Protocol::Tcp }],
            mounts: vec![],
            host_has_lib_modules: false,
            labels: vec![],
            ip: Some("172.18.128.1".into()),
            runtime_cni: false,
            dns_search: None,
            extra_env: Vec::new(),
            service_subnet: None,
        }
    }

    #[test]
    fn runtime_cni_is_asked_for_only_when_wanted() {
        let env = |runtime_cni| node_container_body(&NodeSpec { runtime_cni, ..spec(NodeMode::Privileged) }).0.env.unwrap();
        assert!(env(true).contains(&format!("{RUNTIME_CNI_ENV}=1")));
        assert!(!env(false).iter().any(|e| e.starts_with(RUNTIME_CNI_ENV)));
    }

    #[test]
    fn capability_mode_grants_all_but_sys_resource() {
        let body = node_container_body(&spec(NodeMode::Capabilities));
        let hc = body.0.host_config.unwrap();
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_add, Some(vec!["ALL".into()]));
        assert_eq!(hc.cap_drop, Some(vec!["SYS_RESOURCE".into()]));
        assert!(hc.security_opt.unwrap().contains(&"seccomp=unconfined".to_string()));
        assert_eq!(hc.masked_paths, Some(vec![]), "systempaths=unconfined");
        assert_eq!(hc.readonly_paths, Some(vec![]));
        assert_eq!(hc.device_cgroup_rules, Some(vec!["a *:* rwm".into()]));
        assert_eq!(hc.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::PRIVATE));
        assert!(hc.tmpfs.unwrap().contains_key("/run"));
        assert_eq!(body.0.volumes, Some(vec!["/var".to_string()]));
        let ep = &body.0.networking_config.unwrap().endpoints_config.unwrap()["berth"];
        assert_eq!(ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(), Some("172.18.128.1"));
    }

    #[test]
    fn privileged_mode_adds_no_capability_list() {
        let hc = node_container_body(&spec(NodeMode::Privileged)).0.host_config.unwrap();
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.device_cgroup_rules, None);
    }

    #[test]
    fn publishes_api_server_on_loopback_and_extra_ports() {
        let body = node_container_body(&spec(NodeMode::Privileged));
        let bindings = body.0.host_config.unwrap().port_bindings.unwrap();
        let api = bindings["6443/tcp"].as_ref().unwrap();
        assert_eq!(api[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(api[0].host_port.as_deref(), Some(""));
        assert_eq!(bindings["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("8080"));
        let labels = body.0.labels.unwrap();
        assert_eq!(labels[LABEL_CLUSTER], "demo");
        assert_eq!(labels[LABEL_ROLE], "control-plane");
    }

    #[test]
    fn load_balancer_is_unprivileged_and_publishes_the_api_port() {
        let mut s = spec(NodeMode::Capabilities);
        s.name = "demo-external-load-balancer".into();
        s.port_mappings.clear();
        let body = load_balancer_body(&s);
        let hc = body.0.host_config.unwrap();
        assert_eq!(hc.privileged, None);
        assert_eq!(hc.cap_add, None);
        assert!(hc.port_bindings.unwrap().contains_key("6443/tcp"));
        assert_eq!(body.0.labels.unwrap()[LABEL_ROLE], LOAD_BALANCER_ROLE);
    }

    #[test]
    fn lib_modules_only_when_host_has_it() {
        let mut s = spec(NodeMode::Privileged);
        assert!(node_container_body(&s).0.host_config.unwrap().mounts.unwrap().is_empty());
        s.host_has_lib_modules = true;
        let m = node_container_body(&s).0.host_config.unwrap().mounts.unwrap();
        assert_eq!(m[0].target.as_deref(), Some("/lib/modules"));
        assert_eq!(m[0].read_only, Some(true));
    }

    #[test]
    fn extra_mounts_are_binds_with_kinds_options() {
        let mut s = spec(NodeMode::Privileged);
        let mount = |read_only, selinux_relabel, propagation| config::Mount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            read_only,
            selinux_relabel,
            propagation,
        };
        s.mounts = vec![
            mount(false, false, None),
            mount(true, true, Some(Propagation::HostToContainer)),
            mount(false, false, Some(Propagation::Bidirectional)),
        ];
        assert_eq!(node_container_body(&s).0.host_config.unwrap().binds.unwrap(), ["/h:/c", "/h:/c:ro,Z,rslave", "/h:/c:rshared"]);
    }

    #[test]
    fn a_restored_node_keeps_its_name_address_and_mounts_and_gets_its_own_var() {
        let host = super::super::HostConfig::default().with_bind_mount("/lib/modules", "/lib/modules");
        let spec = RestoredNodeSpec {
            name: "ci-control-plane",
            image: "berth-snapshot/warm:ci-control-plane",
            labels: HashMap::from([("a".to_string(), "b".to_string())]),
            host: &host,
            var_volume: Some("ci-control-plane-var-abc"),
            network: "berth",
            address: Some("172.18.128.1"),
        };
        let body = restored_node_body(&spec);
        assert_eq!(body.0.hostname.as_deref(), Some("ci-control-plane"));
        assert_eq!(body.0.labels.unwrap()["a"], "b");
        let mounts = body.0.host_config.unwrap().mounts.unwrap();
        let targets: Vec<_> = mounts.iter().map(|m| (m.target.clone().unwrap(), m.source.clone().unwrap())).collect();
        assert_eq!(targets, [("/lib/modules".into(), "/lib/modules".into()), ("/var".into(), "ci-control-plane-var-abc".into())]);
        let ep = &body.0.networking_config.unwrap().endpoints_config.unwrap()["berth"];
        assert_eq!(ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(), Some("172.18.128.1"));
    }
}
