//! kubeadm configuration: rendered per kubeadm API version from what berth knows of a node.
//!
//! This module owns the choice of `kubeadm.k8s.io` version for a Kubernetes version (kind's:
//! v1beta2 below 1.23, v1beta3 below 1.36, v1beta4 from 1.36, so users' patches written for
//! kind meet the same documents), the documents themselves (Init/Join/ClusterConfiguration,
//! KubeletConfiguration, KubeProxyConfiguration) and the user's patches ([`patch`]).
//! It renders text; running kubeadm is the cluster module's job.

mod patch;

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub use crate::patches::{parse_json6902, patch_target, KUBEADM_DOCUMENT_KINDS as DOCUMENT_KINDS};
pub use patch::apply_patches;

use crate::config::{PatchJson6902, ProxyMode};
pub use crate::version::KubeVersion;

#[derive(Debug, thiserror::Error)]
pub enum KubeadmError {
    #[error(transparent)]
    BadVersion(#[from] crate::version::BadVersion),
    #[error("{0}")]
    Patch(String),
    #[error("the Docker daemon runs rootless, which needs Kubernetes 1.22 or later (the kubelet's KubeletInUserNamespace gate); the node image has {0}")]
    RootlessUnsupported(KubeVersion),
    #[error("networking.kubeProxyMode: nftables needs Kubernetes 1.31 or later (1.29 and 1.30 with featureGates NFTablesProxyMode: true); the node image has {0}")]
    NftablesUnsupported(KubeVersion),
}

/// The cgroup hierarchy a node sees (its host's): with the Kubernetes version it decides the
/// kubelet's cgroup driver, which must match the node's containerd (a berth image's entrypoint
/// sets that by the same rule; kind's images use systemd), and whether current kubelets must be
/// told to run on v1 at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// `stat -fc %T /sys/fs/cgroup` in a node: `cgroup2fs` on v2, `tmpfs` (holding the v1
    /// hierarchies) otherwise.
    pub fn from_fs_type(fs: &str) -> CgroupVersion {
        if fs.trim() == "cgroup2fs" {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }

    /// kind's rule, so kind's images and berth's agree: systemd from Kubernetes 1.24 (on v1
    /// too), cgroupfs before it; always systemd on v2, where systemd owns the tree.
    pub fn driver(self, version: KubeVersion) -> &'static str {
        match self {
            CgroupVersion::V1 if !version.at_least(1, 24) => "cgroupfs",
            _ => "systemd",
        }
    }
}

/// Kubernetes 1.35 made the kubelet refuse cgroup v1 unless told otherwise (KEP-5573,
/// `failCgroupV1` defaults to true); the code that runs on v1 goes no earlier than 1.38.
pub fn refuses_cgroup_v1_by_default(v: KubeVersion) -> bool {
    v.at_least(1, 35)
}

/// The one warning a create on a cgroup v1 host gets when its Kubernetes refuses v1 by default.
pub fn cgroup_v1_warning(v: KubeVersion) -> Option<String> {
    refuses_cgroup_v1_by_default(v).then(|| {
        format!(
            "this host mounts cgroup v1, which Kubernetes {v} deprecates: its kubelet refuses v1 unless told otherwise, so berth sets the kubelet's failCgroupV1: false; support for cgroup v1 is expected to be removed in Kubernetes 1.38, so move this machine to cgroup v2 (systemd.unified_cgroup_hierarchy=1) before then"
        )
    })
}

/// `sha256:<hex>` of a CA certificate's public key (its SubjectPublicKeyInfo, DER): what
/// `kubeadm join --discovery-token-ca-cert-hash` pins, computed from the cluster's `ca.crt`.
pub fn ca_cert_hash(pem: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let hash = Sha256::digest(cert.public_key().raw);
    Some(format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// kubeadm's config API for a Kubernetes version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1Beta2,
    V1Beta3,
    V1Beta4,
}

impl ApiVersion {
    /// kind's choice: the oldest version kubeadm still reads, so map-shaped patches keep
    /// meaning what they say for as long as kubeadm allows.
    pub fn for_kubernetes(v: KubeVersion) -> ApiVersion {
        if v.at_least(1, 36) {
            ApiVersion::V1Beta4
        } else if v.at_least(1, 23) {
            ApiVersion::V1Beta3
        } else {
            ApiVersion::V1Beta2
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1Beta2 => "kubeadm.k8s.io/v1beta2",
            ApiVersion::V1Beta3 => "kubeadm.k8s.io/v1beta3",
            ApiVersion::V1Beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

/// How this node joins: the first control plane inits; the rest join.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeJoin {
    Init,
    /// Join as a worker, or (`control_plane`) as another control plane with uploaded certs.
    Join {
        control_plane: bool,
    },
}

/// Everything the kubeadm documents are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub version: KubeVersion,
    pub cluster_name: String,
    pub node_name: String,
    pub node_ip: String,
    /// host:port every node uses to reach the API server (first control plane or load balancer).
    pub control_plane_endpoint: String,
    pub pod_subnet: String,
    pub service_subnet: String,
    /// The nodes' cgroup hierarchy (the kubelet's driver and its cgroup v1 setting follow it).
    pub cgroup: CgroupVersion,
    pub kube_proxy_mode: ProxyMode,
    pub cert_sans: Vec<String>,
    pub feature_gates: BTreeMap<String, bool>,
    pub runtime_config: BTreeMap<String, String>,
    pub node_labels: BTreeMap<String, String>,
    /// The cluster has no workers, so its control planes run workloads too: they register
    /// without kubeadm's NoSchedule taint (as kind's one-node clusters do).
    pub schedulable_control_plane: bool,
    /// The cluster has one control plane, so one controller-manager and one scheduler: they
    /// run without leader election (see `cluster_configuration`).
    pub single_control_plane: bool,
    /// kube-controller-manager's own host-path provisioner serves the node image's default
    /// StorageClass (provisioner `kubernetes.io/host-path`).
    pub hostpath_provisioner: bool,
    /// The Docker daemon runs rootless: kind's settings for it (the kubelet's
    /// `KubeletInUserNamespace` gate, Kubernetes 1.22 or later).
    pub rootless: bool,
    /// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, made fresh per cluster.
    pub token: String,
    /// `sha256:<hex>` of the cluster CA's public key, for joins (pins the CA).
    pub ca_cert_hash: Option<String>,
    /// Encryption key for the control-plane certificates kubeadm uploads (HA only).
    pub certificate_key: Option<String>,
    pub join: NodeJoin,
}

const CRI_SOCKET_PATH: &str = "/run/containerd/containerd.sock";

/// Where berth puts kubeadm's own patches (`patches.directory`) in the first control plane.
pub const PATCHES_DIR: &str = "/kind/patches";

/// kubeadm's `corednsdeployment` patch target (1.32+): CoreDNS's readiness probe every second
/// instead of every 10 s. Its first probe comes as it starts, before it has read the API, so
/// with kubeadm's period the cluster's DNS answered pods up to 10 s after it could have; a
/// create waits for cluster DNS.
const COREDNS_PATCH: (&str, &str) = (
    "corednsdeployment+strategic.yaml",
    "spec:\n  template:\n    spec:\n      containers:\n      - name: coredns\n        readinessProbe:\n          periodSeconds: 1\n",
);

/// The files of kubeadm's patches directory for `version` (file name, contents); the init
/// configuration names [`PATCHES_DIR`] when there are any.
pub fn patch_files(version: KubeVersion) -> Vec<(&'static str, &'static str)> {
    if version.at_least(1, 32) {
        vec![COREDNS_PATCH]
    } else {
        Vec::new()
    }
}

/// Renders this node's kubeadm config file (YAML documents separated by `---`), patches applied.
pub fn render(p: &Params, patches: &[String], json6902: &[PatchJson6902]) -> Result<String, KubeadmError> {
    let api = ApiVersion::for_kubernetes(p.version);
    check_proxy_mode(p)?;
    let p = &with_rootless_gate(p)?;
    let mut docs = match p.join {
        NodeJoin::Init => {
            let mut docs = vec![init_configuration(p, api), cluster_configuration(p, api), kubelet_configuration(p)];
            if p.kube_proxy_mode != ProxyMode::None {
                docs.push(kube_proxy_configuration(p));
            }
            docs
        }
        NodeJoin::Join { .. } => vec![join_configuration(p, api)],
    };
    apply_patches(&mut docs, patches, json6902)?;
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc).expect("JSON values serialize as YAML"));
    }
    Ok(out)
}

/// The kinds of document `render` gives a node: kubeadm init reads all of berth's; kubeadm join
/// reads its JoinConfiguration only (a joining kubelet takes the cluster's configuration from
/// the `kubelet-config` ConfigMap, made from the first control plane's KubeletConfiguration).
pub fn document_kinds(join: &NodeJoin, proxy: ProxyMode) -> Vec<&'static str> {
    match join {
        NodeJoin::Init if proxy == ProxyMode::None => vec!["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"],
        NodeJoin::Init => vec!["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"],
        NodeJoin::Join { .. } => vec!["JoinConfiguration"],
    }
}

/// kube-proxy's nftables mode is beta (on by default) from 1.31, alpha behind a gate in 1.29–1.30.
fn check_proxy_mode(p: &Params) -> Result<(), KubeadmError> {
    let gated = p.feature_gates.get("NFTablesProxyMode") == Some(&true);
    let supported = p.version.at_least(1, 31) || (p.version.at_least(1, 29) && gated);
    if p.kube_proxy_mode == ProxyMode::Nftables && !supported {
        return Err(KubeadmError::NftablesUnsupported(p.version));
    }
    Ok(())
}

/// As kind does for a rootless daemon: the kubelet runs in a user namespace, which it must be
/// told (Kubernetes 1.22+); kube-proxy already leaves conntrack sizing alone (`maxPerCore: 0`).
fn with_rootless_gate(p: &Params) -> Result<Params, KubeadmError> {
    let mut p = p.clone();
    if p.rootless {
        if !p.version.at_least(1, 22) {
            return Err(KubeadmError::RootlessUnsupported(p.version));
        }
        p.feature_gates.insert("KubeletInUserNamespace".into(), true);
    }
    Ok(p)
}

/// kubeadm phases berth skips: preflight (the node is a container; its checks are berth's),
/// and kube-proxy's add-on when the config turns kube-proxy off.
pub fn skipped_phases(mode: ProxyMode) -> &'static str {
    match mode {
        ProxyMode::None => "--skip-phases=preflight,addon/kube-proxy",
        _ => "--skip-phases=preflight",
    }
}

fn cri_socket(api: ApiVersion) -> String {
    match api {
        ApiVersion::V1Beta2 => CRI_SOCKET_PATH.to_string(),
        _ => format!("unix://{CRI_SOCKET_PATH}"),
    }
}

/// extraArgs are a map up to v1beta3 and a list of name/value pairs from v1beta4.
fn extra_args(api: ApiVersion, args: &BTreeMap<String, String>) -> Value {
    match api {
        ApiVersion::V1Beta4 => Value::Array(args.iter().map(|(k, v)| json!({"name": k, "value": v})).collect()),
        _ => json!(args),
    }
}

fn kubelet_args(p: &Params) -> BTreeMap<String, String> {
    let mut args = BTreeMap::from([("node-ip".to_string(), p.node_ip.clone())]);
    if !p.node_labels.is_empty() {
        let labels: Vec<String> = p.node_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.insert("node-labels".into(), labels.join(","));
    }
    args
}

fn node_registration(p: &Params, api: ApiVersion) -> Value {
    let mut registration = json!({
        "name": p.node_name,
        "criSocket": cri_socket(api),
        "kubeletExtraArgs": extra_args(api, &kubelet_args(p)),
    });
    let control_plane = matches!(p.join, NodeJoin::Init | NodeJoin::Join { control_plane: true });
    if control_plane && p.schedulable_control_plane {
        // An empty list, not an absent one: kubeadm reads "absent" as "the default taint".
        registration["taints"] = json!([]);
    }
    registration
}

fn init_configuration(p: &Params, api: ApiVersion) -> Value {
    let patches = (!patch_files(p.version).is_empty()).then(|| json!({"directory": PATCHES_DIR}));
    json!({
        "apiVersion": api.as_str(),
        "kind": "InitConfiguration",
        "bootstrapTokens": [{"token": p.token, "ttl": "24h0m0s", "usages": ["signing", "authentication"], "groups": ["system:bootstrappers:kubeadm:default-node-token"]}],
        "localAPIEndpoint": {"advertiseAddress": p.node_ip, "bindPort": 6443},
        "nodeRegistration": node_registration(p, api),
        "certificateKey": p.certificate_key,
        "patches": patches,
    })
    .without_nulls()
}

fn join_configuration(p: &Params, api: ApiVersion) -> Value {
    let control_plane = match p.join {
        NodeJoin::Join { control_plane: true } => {
            json!({"localAPIEndpoint": {"advertiseAddress": p.node_ip, "bindPort": 6443}, "certificateKey": p.certificate_key})
                .without_nulls()
        }
        _ => Value::Null,
    };
    json!({
        "apiVersion": api.as_str(),
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": p.control_plane_endpoint,
            "token": p.token,
            "caCertHashes": p.ca_cert_hash.iter().collect::<Vec<_>>(),
        }},
        "nodeRegistration": node_registration(p, api),
        "controlPlane": control_plane,
    })
    .without_nulls()
}

fn feature_gate_arg(gates: &BTreeMap<String, bool>) -> Option<String> {
    (!gates.is_empty()).then(|| gates.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

fn cluster_configuration(p: &Params, api: ApiVersion) -> Value {
    let mut component_args = BTreeMap::new();
    if let Some(gates) = feature_gate_arg(&p.feature_gates) {
        component_args.insert("feature-gates".to_string(), gates);
    }
    let mut apiserver_args = component_args.clone();
    if !p.runtime_config.is_empty() {
        let rc: Vec<String> = p.runtime_config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        apiserver_args.insert("runtime-config".into(), rc.join(","));
    }
    let mut scheduler_args = component_args.clone();
    let mut cm_args = component_args.clone();
    if p.single_control_plane {
        // With one of each there is no one to elect against, and after a stop or a restore an
        // elected one waits out its old lease's retry period (up to 4.4 s, jittered) before it
        // schedules or runs a controller; unelected, they work as soon as the API answers.
        for args in [&mut scheduler_args, &mut cm_args] {
            args.insert("leader-elect".to_string(), "false".to_string());
        }
    }
    // Nodes take /24s of the pod subnet; the network agent and the CNI config read them back.
    cm_args.insert("allocate-node-cidrs".into(), "true".into());
    if p.hostpath_provisioner {
        cm_args.insert("enable-hostpath-provisioner".into(), "true".into());
    }
    json!({
        "apiVersion": api.as_str(),
        "kind": "ClusterConfiguration",
        "clusterName": p.cluster_name,
        "kubernetesVersion": p.version.to_string(),
        "controlPlaneEndpoint": p.control_plane_endpoint,
        "apiServer": {"certSANs": p.cert_sans, "extraArgs": extra_args(api, &apiserver_args)},
        "controllerManager": {"extraArgs": extra_args(api, &cm_args)},
        "scheduler": {"extraArgs": extra_args(api, &scheduler_args)},
        "networking": {"podSubnet": p.pod_subnet, "serviceSubnet": p.service_subnet},
    })
}

fn kubelet_configuration(p: &Params) -> Value {
    let mut config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": p.cgroup.driver(p.version),
        // A node shares the host's disk with everything else; disk-pressure evictions would
        // evict workloads for space the node does not own.
        "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100,
        "failSwapOn": false,
        "featureGates": p.feature_gates,
        // How often the kubelet recomputes its node's status (default 10 s). With node leases
        // (GA since 1.17) the status is only sent when it changes, so a shorter period costs a
        // little kubelet CPU and no API traffic; it lets "Ready" reach the API within 2 s of the
        // node being ready instead of up to 10 s later (older kubelets make one early attempt,
        // often before their first pod-lifecycle relist, and then wait the full period).
        "nodeStatusUpdateFrequency": "2s",
        // The kubelet's client certificate is issued once (valid a year, the CSR signer's
        // default) instead of being renewed in the background. A disposable cluster never needs
        // the renewal, and without it a joining kubelet waits for its certificate before it
        // starts its API watches: in the background variant it starts them unauthenticated,
        // they back off, and the node's first pods fail with "services have not yet been read"
        // and wait 10 s to be retried. It also spares the control plane's kubelet the restart
        // kubeadm init ends with to switch to a rotating certificate.
        "rotateCertificates": false,
    });
    if p.cgroup == CgroupVersion::V1 && refuses_cgroup_v1_by_default(p.version) {
        // Without it a 1.35+ kubelet exits at start on a v1 host ("cgroup v1 support is
        // unsupported"); create warns (cgroup_v1_warning).
        config["failCgroupV1"] = json!(false);
    }
    config
}

fn kube_proxy_configuration(p: &Params) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": p.kube_proxy_mode.as_str(),
        // 0 leaves nf_conntrack_max alone: /proc/sys/net is the host's, not the node's to size.
        "conntrack": {"maxPerCore": 0},
        "featureGates": p.feature_gates,
    })
}

trait WithoutNulls {
    fn without_nulls(self) -> Self;
}

impl WithoutNulls for Value {
    fn without_nulls(self) -> Value {
        match self {
            Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
            v => v,
        }
    }
}

#[cfg(test)]
mod tests;
