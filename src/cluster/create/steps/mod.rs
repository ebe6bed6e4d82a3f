//! The steps of `create cluster`, run in order by `create.rs`. Each takes the shared [`Ctx`]
//! and the results of the steps it depends on, and returns what it made ([`Provisioned`],
//! [`Initialized`]), so the compiler, not a panic at run time, checks that they run in order.
//! Dependencies point one way: `create.rs` uses the steps; no step knows the orchestrator.
//!
//! ```text
//! Plan (cluster/create/plan.rs) ──▶ provision ──▶ Provisioned ──▶ containerd (if patched)
//!                                   ──▶ kubeadm_init (beside warm) ──▶ Initialized
//!                                   │
//!     ┌──────────┬─────────┬────────┴─────┬──────────────────┬──────┬────────┐
//!     ▼          ▼         ▼              ▼                  ▼      ▼        ▼
//!    cni ──▶ storage ──▶ join ──▶ registry ──▶ export_kubeconfig ──▶ wait ──▶ addons
//! ```

pub mod addons;
pub mod cni;
pub mod containerd;
pub mod export_kubeconfig;
pub mod join;
pub mod kubeadm_init;
pub mod loadbalancer;
pub mod provision;
pub mod registry;
pub mod storage;
pub mod wait;
pub mod warm;

use std::collections::BTreeMap;

use super::options::{CreateOptions, PullPolicy};
pub use super::plan::{Plan, PlannedNode};
use super::{ClusterError, Result};
use crate::cluster::ImageError;
use crate::image_ref::ImageRef;
use crate::kubeadm::KubeVersion;
use crate::runtime::{NodeMode, Runtime};
use crate::ui::Status;

/// Label carrying the id of the `create` run that made a container.
pub const LABEL_CREATE_ID: &str = "dev.berth.create-id";

/// What every step needs: fixed before the first step runs, except the warnings it collects
/// and the roll-back's record of the kubeconfig merge.
pub struct Ctx<'a> {
    pub docker: &'a dyn Runtime,
    /// Where the API client for the new cluster comes from (the real API server, or a test's).
    pub api: &'a dyn crate::kube::Connect,
    pub opts: &'a CreateOptions,
    pub status: &'a Status,
    pub create_id: String,
    pub plan: Plan,
    pub warnings: Vec<String>,
    /// Set once the merge into the user's kubeconfig may have begun: the context that was
    /// current before it (roll-back makes it current again).
    pub kubeconfig_merge: crate::kubeconfig::MergeRecord,
}

impl Ctx<'_> {
    pub fn control_plane(&self) -> &PlannedNode {
        self.plan.control_plane()
    }

    pub fn is_ha(&self) -> bool {
        self.plan.is_ha()
    }

    pub fn warn(&mut self, message: String) {
        self.status.warn(&message);
        self.warnings.push(message);
    }

    /// The labels of every container this run makes, by which roll-back finds them.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut members: Vec<String> = self.plan.nodes.iter().map(|n| n.name.clone()).collect();
        if self.is_ha() {
            members.push(loadbalancer::lb_name(&self.opts.name));
        }
        vec![(LABEL_CREATE_ID.to_string(), self.create_id.clone()), (crate::runtime::LABEL_MEMBERS.to_string(), members.join(","))]
    }
}

/// What [`provision::run`] made: running nodes and what they said about themselves.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub mode: NodeMode,
    /// From the first control plane's /kind/version.
    pub version: KubeVersion,
    /// The nodes' cgroup hierarchy: the kubelet's driver (matching the node's containerd) and
    /// its cgroup v1 setting follow it.
    pub cgroup: crate::kubeadm::CgroupVersion,
    /// Each node's address on berth's network.
    pub node_ips: BTreeMap<String, String>,
    /// The node image's default StorageClass manifest, if it carries one.
    pub default_storage: Option<String>,
    /// The daemon runs rootless: the kubelet must know it is in a user namespace.
    pub rootless: bool,
}

/// What [`kubeadm_init::run`] made: a control plane and the means to reach and join it.
#[derive(Clone)]
pub struct Initialized {
    pub client: kube::Client,
    /// This cluster's kubeconfig entries (server on the host side).
    pub kubeconfig: serde_yaml::Value,
    /// `sha256:<hex>` of the CA's public key, which joins pin.
    pub ca_cert_hash: Option<String>,
}

/// Makes sure `image` is present, pulling it as the policy allows.
pub async fn ensure_image(docker: &dyn Runtime, image: &ImageRef, policy: PullPolicy, status: &Status) -> Result<()> {
    let present = docker.image_exists(&crate::registry::local_name(image)).await?;
    match (policy, present) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, false) => Ok(crate::registry::pull(docker, image, status).await?),
        (PullPolicy::Never, false) => Err(ClusterError::from(ImageError::Missing(image.to_string()))),
        _ => Ok(()),
    }
}
