//! The node runtime: Docker, reached through bollard.
//!
//! This module owns every call to the Docker API (`docker.rs`, which implements [`Runtime`]),
//! the [`Runtime`] trait through which every cluster operation and node-image build reaches it
//! (`traits.rs`; an in-memory fake for unit tests in `fake.rs`),
//! the pure description of a node
//! container (`spec.rs`, unit-tested without Docker), berth's own types for what goes to the
//! engine and comes back (`model.rs`; no bollard type leaves this module), and the choice between privileged and
//! capability-mode nodes (`mode.rs`). Cluster logic lives in `cluster`; this module knows
//! containers, networks, images and execs, not Kubernetes.

mod docker;
pub mod endpoint;
#[cfg(test)]
pub mod fake;
mod lease;
mod mode;
mod model;
pub mod network;
mod spec;
mod traits;

pub use lease::{Lease, LABEL_LEASE};

pub use docker::{Docker, ExecOutput, RuntimeError};
pub use mode::{decide_mode, sweep_orphaned_probes, ModeError, ModeRequest, NodeMode, ProbeOutcome, LABEL_PROBE};
pub use model::{
    ContainerBody, ContainerDetails, ContainerSummary, Credentials, HostConfig, ImageConfig, ImageSummary, PublishedPort, PullProgress,
    Secret,
};
pub use spec::{
    build_body, load_balancer_body, local_registry_body, node_container_body, restored_node_body, service_lb_body, volume_script_body,
    LocalRegistrySpec, NodeSpec, RestoredNodeSpec, ServiceLbSpec, VolumeScriptSpec, API_SERVER_PORT, DNS_SEARCH_ENV, LOAD_BALANCER_ROLE,
    RUNTIME_CNI_ENV, SERVICE_LB_ROLE, SERVICE_SUBNET_ENV,
};
pub use traits::{Input, Runtime};

/// On a helper container that copies volumes. It is made from a node's image and so inherits
/// that image's labels (a snapshot image's say `dev.berth.cluster`): this one says what it is,
/// and cluster listings pass it over.
pub const LABEL_COPY: &str = "dev.berth.copy";

/// Labels that make Docker the only record of a cluster: listing, deleting and exporting find
/// nodes by these, so there is no state file to drift.
pub const LABEL_CLUSTER: &str = "dev.berth.cluster";
pub const LABEL_ROLE: &str = "dev.berth.role";
/// Every container a create made for the cluster, comma-separated, on each of them: a node
/// removed by hand is then missed, not silently forgotten.
pub const LABEL_MEMBERS: &str = "dev.berth.members";
/// On a snapshot's images: the node's saved address on berth's network, which new nodes leave
/// free so the snapshot can be restored.
pub const LABEL_RESERVED_ADDRESS: &str = "dev.berth.snapshot.address";
/// The user-defined bridge network every berth node joins. Shared by clusters, like kind's, and
/// removed once nothing is on it (`cluster::remove_network_if_unused`).
pub const NETWORK_NAME: &str = "berth";
