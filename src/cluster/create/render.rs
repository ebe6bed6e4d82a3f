//! Each node's configuration rendered before any container exists: `create --dry-run` prints
//! it, and create itself renders it in its preflight so a patch that cannot apply is refused
//! before anything is made. The Kubernetes version comes from the node image's label when the
//! image is present locally (berth's images carry one), else from its tag (`kindest/node:v1.32.2`).

use std::collections::BTreeMap;

use super::options::CreateOptions;
use super::plan::{Plan, PlannedNode};
use super::steps::kubeadm_init::{join_kind, redact, render_for};
use super::steps::Provisioned;
use crate::cluster::{ClusterError, Result};
use crate::kubeadm::{ApiVersion, KubeVersion, NodeJoin};
use crate::runtime::{NodeMode, Runtime};

/// The label berth's node images carry their Kubernetes version in.
pub const VERSION_LABEL: &str = "dev.berth.kubernetes-version";

/// The Kubernetes version a create would run, and where it was read.
#[derive(Debug, Clone)]
pub struct VersionSource {
    pub version: KubeVersion,
    pub from: String,
}

/// One node's rendered configuration.
#[derive(Debug, Clone)]
pub struct RenderedNode {
    pub name: String,
    pub role: crate::config::Role,
    pub image: String,
    pub join: NodeJoin,
    /// The kubeadm config file, patches applied; addresses and secrets as placeholders.
    pub kubeadm_config: String,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub version: VersionSource,
    pub nodes: Vec<RenderedNode>,
    /// A node's own patches that reach none of its documents, each named with why.
    pub warnings: Vec<String>,
}

/// The first control plane's image decides the version (it is where kubeadm init runs).
/// `None` when neither a label nor the tag says.
pub async fn version_of(docker: Option<&dyn Runtime>, plan: &Plan) -> Option<VersionSource> {
    let image = &plan.control_plane().image;
    let local = crate::registry::local_name(image);
    if let Some(docker) = docker {
        if let Ok(labels) = docker.image_labels(&local).await {
            if let Some(version) = labels.get(VERSION_LABEL).and_then(|v| KubeVersion::parse(v).ok()) {
                return Some(VersionSource { version, from: format!("label {VERSION_LABEL} of the local image {local}") });
            }
        }
    }
    let version = KubeVersion::parse(image.tag_version()?).ok()?;
    Some(VersionSource { version, from: format!("the tag of {image}") })
}

/// Placeholders for what only exists once the nodes do.
fn placeholder_facts(plan: &Plan, version: KubeVersion) -> Provisioned {
    let node_ips: BTreeMap<String, String> = plan.nodes.iter().map(|n| (n.name.clone(), format!("<address of {}>", n.name))).collect();
    // A node's cgroup version is its host's: the kubelet's driver follows it.
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Provisioned {
        mode: NodeMode::Privileged,
        version,
        cgroup: if cgroup_v2 { crate::kubeadm::CgroupVersion::V2 } else { crate::kubeadm::CgroupVersion::V1 },
        node_ips,
        default_storage: None,
        rootless: false,
    }
}

fn render_node(opts: &CreateOptions, plan: &Plan, facts: &Provisioned, node: &PlannedNode) -> Result<RenderedNode> {
    let hash = (join_kind(plan, node) != NodeJoin::Init).then_some("sha256:<CA hash from kubeadm init>");
    let text = render_for(opts, plan, facts, hash, node)
        .map_err(|e| ClusterError::InvalidInput { field: format!("node {}", node.name), problem: e.to_string() })?;
    Ok(RenderedNode {
        name: node.name.clone(),
        role: node.role,
        image: node.image.to_string(),
        join: join_kind(plan, node),
        kubeadm_config: redact(&text, &plan.token, plan.certificate_key.as_deref()),
    })
}

/// Every node's kubeadm config at `version`.
pub fn render(opts: &CreateOptions, plan: &Plan, version: VersionSource) -> Result<Rendered> {
    let facts = placeholder_facts(plan, version.version);
    let nodes = plan.nodes.iter().map(|n| render_node(opts, plan, &facts, n)).collect::<Result<Vec<_>>>()?;
    let warnings = plan.nodes.iter().flat_map(|n| unreachable_patches(opts, plan, n)).collect();
    Ok(Rendered { version, nodes, warnings })
}

/// A node's own kubeadm patches that reach nothing kubeadm uses on it: kind drops them without
/// a word (a worker's KubeletConfiguration patch, which `kubeadm join` never reads, is the usual
/// one); berth names each. Cluster-wide patches are meant for whichever nodes have the document,
/// so only a node's own are checked.
fn unreachable_patches(opts: &CreateOptions, plan: &Plan, node: &PlannedNode) -> Vec<String> {
    let join = join_kind(plan, node);
    let kinds = crate::kubeadm::document_kinds(&join, opts.config.kube_proxy_mode());
    let own = &opts.config.nodes[node.index];
    let merge = own
        .kubeadm_config_patches
        .iter()
        .enumerate()
        .filter_map(|(i, text)| crate::kubeadm::patch_target(text).ok().map(|kind| (format!("kubeadmConfigPatches[{i}]"), kind)));
    let json6902 =
        own.kubeadm_config_patches_json6902.iter().enumerate().map(|(i, p)| (format!("kubeadmConfigPatchesJSON6902[{i}]"), p.kind.clone()));
    merge
        .chain(json6902)
        .filter(|(_, kind)| !kinds.contains(&kind.as_str()))
        .map(|(field, kind)| {
            let why = match (&join, kind.as_str()) {
                (NodeJoin::Join { .. }, "KubeletConfiguration") => "`kubeadm join` does not read it: a joining node's kubelet takes the cluster's configuration (the kubelet-config ConfigMap, from the first control plane's KubeletConfiguration); patch it at the cluster level, or use kubeletExtraArgs in a JoinConfiguration patch for this node alone".to_string(),
                (NodeJoin::Join { .. }, _) => format!("`kubeadm join` reads only a JoinConfiguration; {kind} comes from the first control plane"),
                (NodeJoin::Init, _) => format!("this node runs `kubeadm init`, which has no {kind} document here"),
            };
            format!("nodes[{}].{field} patches {kind}, which reaches nothing on {}: {why}", node.index, node.name)
        })
        .collect()
}

/// `create --dry-run`: the plan and every node's configuration, nothing created or pulled.
pub async fn dry_run(docker: Option<&dyn Runtime>, opts: &CreateOptions) -> Result<Rendered> {
    crate::config::validate_cluster_name(&opts.name)
        .map_err(|problem| ClusterError::InvalidInput { field: "--name".into(), problem: problem.to_string() })?;
    let plan = super::plan::make(opts)?;
    let version = version_of(docker, &plan).await.ok_or_else(|| ClusterError::InvalidInput {
        field: "--image".into(),
        problem: format!(
            "cannot tell the Kubernetes version of {}: the image is not present locally with berth's {VERSION_LABEL} label, and its tag is not a version; name an image tagged like kindest/node:v1.32.2",
            plan.control_plane().image
        ),
    })?;
    render(opts, &plan, version)
}

impl Rendered {
    /// The dry run as a YAML stream: each node's documents after a comment naming the node,
    /// the containerd patches as comments (they are TOML).
    pub fn to_text(&self, opts: &CreateOptions) -> String {
        let v = self.version.version;
        let mut out = format!(
            "# berth create cluster --dry-run: nothing was created or pulled.\n# Kubernetes {v} (from {}); kubeadm config API {}.\n# Node addresses, the bootstrap token and the CA hash are placeholders until create.\n",
            self.version.from,
            ApiVersion::for_kubernetes(v).as_str(),
        );
        for node in &self.nodes {
            let how = match node.join {
                NodeJoin::Init => "kubeadm init",
                NodeJoin::Join { control_plane: true } => "kubeadm join --control-plane",
                NodeJoin::Join { control_plane: false } => "kubeadm join",
            };
            out.push_str(&format!(
                "---\n# node {} ({}, {how}, image {}): {}\n{}",
                node.name,
                node.role.as_str(),
                node.image,
                super::steps::kubeadm_init::KUBEADM_CONFIG_PATH,
                node.kubeadm_config
            ));
        }
        let cfg = &opts.config;
        if !cfg.containerd_config_patches.is_empty() || !cfg.containerd_config_patches_json6902.is_empty() {
            out.push_str(&format!(
                "---\n# containerd config patches, applied to {} on every node before kubeadm:\n",
                super::steps::containerd::CONTAINERD_CONFIG_PATH
            ));
            let comment = |text: &str| text.lines().map(|l| format!("#   {l}\n")).collect::<String>();
            for (i, p) in cfg.containerd_config_patches.iter().enumerate() {
                out.push_str(&format!("# containerdConfigPatches[{i}] (TOML merge):\n{}", comment(p)));
            }
            for (i, p) in cfg.containerd_config_patches_json6902.iter().enumerate() {
                out.push_str(&format!("# containerdConfigPatchesJSON6902[{i}]:\n{}", comment(p)));
            }
        }
        out
    }
}
