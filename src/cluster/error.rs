//! What a cluster operation can fail with. [`ClusterError`] is what callers get; three of its
//! variants group the failures a caller may want to tell apart as a kind: an image the cluster
//! needs ([`ImageError`]), something this host or its engine cannot do ([`HostError`]), and
//! Kubernetes inside the nodes not doing what it was asked ([`BootstrapError`]).

use super::snapshot::SnapshotError;
use super::Operation;
use crate::config::ConfigError;
use crate::kube::KubeError;
use crate::kubeadm::KubeadmError;
use crate::kubeconfig::KubeconfigError;
use crate::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kubeadm(#[from] KubeadmError),
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    ImageRef(#[from] crate::image_ref::ImageRefError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    NodeMode(#[from] crate::runtime::ModeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("a cluster named {0:?} already exists; delete it with `berth delete cluster --name {0}` or pick another --name")]
    Exists(String),
    #[error("no cluster named {0:?}; `berth get clusters` lists the clusters there are")]
    NotFound(String),
    #[error("cluster {0:?} has no running control-plane node; start it first (berth start cluster --name {0})")]
    NotRunning(String),
    /// Bad input, found before anything was made: `field` names the flag or config field.
    #[error("{field}: {problem}")]
    InvalidInput { field: String, problem: String },
    /// A copy of node volumes (a snapshot's save or restore) failed.
    #[error("copying volume {what} failed: {detail}")]
    VolumeCopy { what: String, detail: String },
    #[error("containers labelled {0} keep appearing; remove them with `docker rm -f`")]
    KeepsAppearing(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// An operation failed, and removing what it made failed too.
    #[error("{error}\n(cleaning up afterwards failed too: {cleanup})")]
    CleanupFailed { error: Box<ClusterError>, cleanup: Box<ClusterError> },
    /// A signal stopped `operation`; `outcome` says what its undo did.
    #[error("{operation} interrupted ({signal}); {outcome}")]
    Interrupted { operation: Operation, signal: &'static str, outcome: String },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// An image the cluster needs that is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("node image {0} is not present locally; build one (scripts/build-test-node-image, or `berth build node-image`) or name an image you have with --image or BERTH_NODE_IMAGE")]
    Missing(String),
    #[error("several control planes need the load balancer image {0}, which is not present locally; build or pull it, or name another with --lb-image / BERTH_LB_IMAGE")]
    LoadBalancerMissing(String),
    #[error("image {0:?} is not present in the host's Docker; build or pull it first")]
    NotOnHost(String),
    /// The node image's /kind/version is not a version.
    #[error("the node image's {0}")]
    Version(#[from] crate::version::BadVersion),
    #[error("node image {image} carries no default pod network ({manifest}); set networking.disableDefaultCNI: true in the cluster config and install one yourself, or use a berth or kindest/node image")]
    NoDefaultCni { image: String, manifest: &'static str },
}

/// Something this host, or the engine berth drives, cannot do or give.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the Docker daemon at {0} runs on another machine: berth publishes the API server and chooses free ports on this one, so it needs a daemon on this machine (a local socket, or tcp:// to localhost)")]
    RemoteDaemon(String),
    #[error("{feature}: not supported on {engine} yet; use Docker for it (BERTH_PROVIDER=docker)")]
    Unsupported { feature: &'static str, engine: &'static str },
    /// A rootless engine, and a host that lacks what its nodes need: one line per need.
    #[error("the {engine} engine runs rootless, and this host is not ready for rootless nodes:\n  - {}", problems.join("\n  - "))]
    RootlessHost { engine: &'static str, problems: Vec<String> },
    #[error("cannot start: {0}; free the port(s) and start again")]
    PortsTaken(String),
    #[error("berth's network {subnet} has no {count} free addresses left")]
    NoAddresses { subnet: String, count: usize },
}

/// Kubernetes inside the nodes not doing what it was asked: kubeadm failing, something not
/// ready in time (nodes, system pods, a drain), containerd's config, an add-on.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("kubeadm {phase} failed on {node}; its last lines:\n{tail}")]
    KubeadmFailed { phase: &'static str, node: String, tail: String },
    #[error("{what}\n{details}")]
    NotReady { what: String, details: String },
    #[error("patching containerd's config on {node}: {source}")]
    ContainerdConfig { node: String, source: crate::containerd::ContainerdPatchError },
    #[error("installing add-on {name}: {source}")]
    Addon { name: String, source: crate::addons::AddonError },
}

impl From<crate::version::BadVersion> for ClusterError {
    fn from(e: crate::version::BadVersion) -> ClusterError {
        ClusterError::Image(e.into())
    }
}
