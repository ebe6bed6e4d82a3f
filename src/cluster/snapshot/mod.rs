//! Snapshots: `berth snapshot save|list|delete` here, and everything a snapshot is used for
//! in this room: `create cluster --from-snapshot` (`restore.rs`), the spare /var copies that
//! make the next restore fast (`spare.rs`), and the volume copies both make
//! (`volume_copy.rs`, its script `copy-volumes.sh`).
//!
//! A snapshot is Docker objects with no state file: per node, an image committed from the
//! stopped node (its root filesystem's changes: /etc/kubernetes, the kubelet's config) and a
//! volume holding a full copy of its `/var` (etcd's data, the kubelet's state, containerd's
//! unpacked images). `/var` is never an image layer: Docker's layer format would turn the
//! whiteouts and opaque directories of containerd's own overlay snapshots into deletions. What a
//! restore needs to know — node, role, address, the container's host config (ports, mounts,
//! capabilities), Kubernetes version, node image, when the certificates expire — rides on the
//! image as labels. Snapshot volumes carry no cluster label, so deleting the cluster never takes
//! them. Beside them are spare copies of each /var for the next restore (`spare.rs`).
//!
//! Identity: every image and volume one save makes carries its save id, and their names are the
//! save's own (`berth-snapshot/NAME:NODE-ID`, `berth-snapshot-NAME-NODE-ID`), so two saves never
//! share or merge an object. A snapshot exists whole or not at all: the save writes a completion
//! marker last (a volume naming the save id and every node), and a delete removes it first; a
//! snapshot without one, or missing a node it names, is listed as incomplete and never
//! restored. Images are found by the repository a save tags them in, never by labels alone:
//! `docker commit` copies labels, so an image built `FROM` a snapshot image carries them too.

pub mod restore;
pub(super) mod spare;
mod volume_copy;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::try_join_all;
use serde::Serialize;

use super::{nodes, ClusterError, HostError, NodeInfo, NodeRole, Operation, Result};
use crate::runtime::{HostConfig, Runtime};
use crate::ui::Status;

pub const LABEL_SNAPSHOT: &str = "dev.berth.snapshot";

/// Why a snapshot cannot be saved, restored or deleted: each names what is in the way and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no snapshot named {name:?}; {}", if have.is_empty() { "there are none (berth snapshot save NAME makes one)".to_string() } else { format!("there are: {}", have.join(", ")) })]
    NotFound { name: String, have: Vec<String> },
    #[error("a snapshot named {0:?} exists already; delete it first (berth snapshot delete {0}) or pick another name")]
    Exists(String),
    #[error("snapshot {name:?} is in use by cluster(s) restored from it: {}; delete them first (berth delete cluster --name …)", clusters.join(", "))]
    InUse { name: String, clusters: Vec<String> },
    #[error("snapshot {name:?} is incomplete ({}): a save or a delete of it was cut short, so it would restore part of a cluster; delete it (berth snapshot delete {name}) and save a new one", missing.join(", "))]
    Incomplete { name: String, missing: Vec<String> },
    #[error("snapshot {name:?} cannot be restored: its volume(s) {} are gone (`docker volume prune` on Docker before 23.0 removes unused named volumes); delete it (berth snapshot delete {name}) and save a new one", missing.join(", "))]
    Broken { name: String, missing: Vec<String> },
    /// A restore would collide with what exists: each entry names what is in the way.
    #[error("cannot restore: {}", .0.join("; "))]
    RestoreConflict(Vec<String>),
}

/// On a restored cluster's containers and volumes: the snapshot it came from.
pub const LABEL_RESTORED_FROM: &str = "dev.berth.restored-from";
/// The cluster a snapshot was saved from (the runtime's `LABEL_CLUSTER` names a running one).
const LABEL_SAVED_CLUSTER: &str = "dev.berth.snapshot.cluster";
const LABEL_NODE: &str = "dev.berth.snapshot.node";
const LABEL_ROLE_SAVED: &str = "dev.berth.snapshot.role";
const LABEL_ADDRESS: &str = crate::runtime::LABEL_RESERVED_ADDRESS;
const LABEL_HOST_CONFIG: &str = "dev.berth.snapshot.host-config";
const LABEL_VOLUME: &str = "dev.berth.snapshot.volume";
const LABEL_VAR_BYTES: &str = "dev.berth.snapshot.var-bytes";
const LABEL_VERSION: &str = "dev.berth.snapshot.kubernetes-version";
const LABEL_NODE_IMAGE: &str = "dev.berth.snapshot.node-image";
/// Unix seconds at which the API server's serving certificate expires (control planes only).
const LABEL_CERTS_EXPIRE: &str = "dev.berth.snapshot.certificates-expire";
/// Marks what one save made, so a failed or interrupted save removes exactly that.
const LABEL_SAVE_ID: &str = "dev.berth.snapshot.save-id";
/// On a snapshot's completion marker: the nodes the save saved, comma-separated.
const LABEL_COMPLETE: &str = "dev.berth.snapshot.complete";
/// On a snapshot's images: what they hold that a reader could misuse.
const LABEL_HOLDS: &str = "dev.berth.snapshot.holds";
const HOLDS: &str = "the cluster's CA and service-account signing keys and cluster-admin credentials: anyone who can read this image administers every cluster restored from it";

/// The node image a snapshot's image was saved from, given that image's labels: a node added to
/// a restored cluster starts from it, not from another node's saved files.
pub fn saved_from(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(LABEL_NODE_IMAGE).map(String::as_str).filter(|i| !i.is_empty())
}

/// The repository a snapshot's node images are committed to; the tag is the node's name.
pub fn image_repo(snapshot: &str) -> String {
    format!("berth-snapshot/{snapshot}")
}

/// The part of a save id its objects' names carry: its random suffix.
fn short_id(save_id: &str) -> &str {
    save_id.rsplit('-').next().unwrap_or(save_id)
}

fn volume_name(snapshot: &str, node: &str, save_id: &str) -> String {
    format!("berth-snapshot-{snapshot}-{node}-{}", short_id(save_id))
}

fn image_tag(node: &str, save_id: &str) -> String {
    format!("{node}-{}", short_id(save_id))
}

/// The volume whose existence says snapshot `name` was saved whole.
fn marker_name(snapshot: &str) -> String {
    format!("berth-snapshot-{snapshot}-complete")
}

/// One saved node.
#[derive(Debug, Clone, Serialize)]
pub struct SavedNode {
    pub name: String,
    pub role: NodeRole,
    /// The committed image (`berth-snapshot/NAME:node`).
    pub image: String,
    /// The volume holding the node's /var (none for the API server's load balancer).
    pub volume: Option<String>,
    pub address: Option<String>,
    #[serde(skip)]
    pub host_config: HostConfig,
    pub node_image: String,
    /// Bytes of /var saved, plus the committed layer, plus the spare copy's own bytes.
    pub bytes: u64,
    pub certificates_expire: Option<i64>,
}

/// A snapshot as Docker holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub name: String,
    pub cluster: String,
    pub kubernetes_version: String,
    /// Unix seconds.
    pub created: i64,
    pub nodes: Vec<SavedNode>,
    /// The save that made it.
    pub save_id: String,
    /// Its completion marker is there and every node it names is: it may be restored.
    pub complete: bool,
    /// Why it is not complete: the nodes its marker names that are gone, or that it has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl Snapshot {
    pub fn bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.bytes).sum()
    }

    /// When the first control plane's certificates expire, if known.
    pub fn certificates_expire(&self) -> Option<i64> {
        self.nodes.iter().filter_map(|n| n.certificates_expire).min()
    }
}

/// A snapshot's name must be usable in image and volume names: a cluster name's rules.
pub fn check_name(name: &str) -> Result<()> {
    invalid_name(name).map_or(Ok(()), Err)
}

fn invalid_name(name: &str) -> Option<ClusterError> {
    crate::config::validate_cluster_name(name)
        .err()
        .map(|problem| ClusterError::InvalidInput { field: "snapshot NAME".into(), problem: problem.describe("snapshot name") })
}

/// Snapshots are Docker's alone for now: Podman's commit names an image `docker.io/REPO` and
/// its volume copies differ, so a save there would not be found again. Refused by name instead.
pub(super) fn on_docker_only(docker: &dyn Runtime) -> Result<()> {
    match docker.provider() {
        crate::runtime::endpoint::Provider::Docker => Ok(()),
        other => Err(ClusterError::from(HostError::Unsupported {
            feature: "snapshots (save, list, delete, --from-snapshot)",
            engine: other.display_name(),
        })),
    }
}

/// Every snapshot, complete or not: from the images saves tagged and their completion markers.
pub async fn list(docker: &dyn Runtime) -> Result<Vec<Snapshot>> {
    on_docker_only(docker)?;
    let mut markers: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for (_, labels) in docker.list_volumes(LABEL_COMPLETE).await? {
        if let (Some(name), Some(save_id), Some(nodes)) =
            (labels.get(LABEL_SNAPSHOT), labels.get(LABEL_SAVE_ID), labels.get(LABEL_COMPLETE))
        {
            markers.insert(name.clone(), (save_id.clone(), nodes.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect()));
        }
    }
    let mut by_name: std::collections::BTreeMap<String, Snapshot> = Default::default();
    // Nodes of a snapshot share their node image: inspected once each.
    let mut parent_sizes: HashMap<String, i64> = HashMap::new();
    for image in docker.list_images(LABEL_SNAPSHOT).await? {
        let labels = &image.labels;
        let (Some(name), Some(node), Some(save_id)) = (labels.get(LABEL_SNAPSHOT), labels.get(LABEL_NODE), labels.get(LABEL_SAVE_ID))
        else {
            continue;
        };
        // Only what a save tagged: an image built FROM a snapshot image inherits its labels.
        let wanted = format!("{}:{}", image_repo(name), image_tag(node, save_id));
        if !image.repo_tags.contains(&wanted) {
            continue;
        }
        // A marker names the one save the snapshot is; another save's leftovers are not it.
        if markers.get(name).is_some_and(|(id, _)| id != save_id) {
            continue;
        }
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let host_config = serde_json::from_str(&get(LABEL_HOST_CONFIG)).unwrap_or_default();
        let var_bytes: u64 = get(LABEL_VAR_BYTES).parse().unwrap_or(0);
        let node_image = get(LABEL_NODE_IMAGE);
        let parent = match parent_sizes.get(&node_image) {
            Some(size) => *size,
            None => {
                let size = parent_size(docker, &node_image).await;
                parent_sizes.insert(node_image.clone(), size);
                size
            }
        };
        let layer = (image.size - parent).max(0) as u64;
        let snapshot = by_name.entry(name.clone()).or_insert_with(|| Snapshot {
            name: name.clone(),
            cluster: get(LABEL_SAVED_CLUSTER),
            kubernetes_version: get(LABEL_VERSION),
            created: image.created,
            nodes: Vec::new(),
            save_id: save_id.clone(),
            complete: false,
            missing: Vec::new(),
        });
        snapshot.created = snapshot.created.min(image.created);
        if snapshot.kubernetes_version.is_empty() {
            snapshot.kubernetes_version = get(LABEL_VERSION);
        }
        snapshot.nodes.push(SavedNode {
            name: node.clone(),
            role: NodeRole::parse(&get(LABEL_ROLE_SAVED)),
            image: wanted,
            volume: labels.get(LABEL_VOLUME).cloned(),
            address: labels.get(LABEL_ADDRESS).cloned(),
            host_config,
            node_image,
            bytes: var_bytes + layer,
            certificates_expire: get(LABEL_CERTS_EXPIRE).parse().ok(),
        });
    }
    for (of, spare) in spare::all_ready(docker).await? {
        let snapshot = by_name.get_mut(&of).filter(|s| s.save_id == spare.save);
        if let Some(node) = snapshot.and_then(|s| s.nodes.iter_mut().find(|n| n.name == spare.node)) {
            node.bytes += spare.bytes;
        }
    }
    // A marker whose images are all gone still says a snapshot was there: listed, incomplete.
    for (name, (save_id, _)) in &markers {
        by_name.entry(name.clone()).or_insert_with(|| Snapshot {
            name: name.clone(),
            cluster: String::new(),
            kubernetes_version: String::new(),
            created: 0,
            nodes: Vec::new(),
            save_id: save_id.clone(),
            complete: false,
            missing: Vec::new(),
        });
    }
    let mut out: Vec<Snapshot> = by_name.into_values().collect();
    for s in &mut out {
        s.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        match markers.get(&s.name) {
            Some((_, names)) => {
                s.missing = names.iter().filter(|n| !s.nodes.iter().any(|node| &node.name == *n)).cloned().collect();
                s.complete = s.missing.is_empty();
            }
            None => s.missing = vec!["(no completion marker: its save or delete was cut short)".into()],
        }
    }
    Ok(out)
}

/// The size of the image a node was made from (0 if it is gone), to tell a snapshot's own
/// layer from what it shares with the node image.
async fn parent_size(docker: &dyn Runtime, image: &str) -> i64 {
    if image.is_empty() {
        return 0;
    }
    docker.image_size(image).await.unwrap_or(0)
}

/// The snapshot named `name`, or an error listing those there are.
pub async fn find(docker: &dyn Runtime, name: &str) -> Result<Snapshot> {
    let all = list(docker).await?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| SnapshotError::NotFound { name: name.to_string(), have: names }.into())
}

/// Removes a snapshot's images and volumes; an absent one is not an error. Returns how many
/// objects went.
pub async fn delete(docker: &dyn Runtime, name: &str) -> Result<usize> {
    if let Some(e) = invalid_name(name) {
        return Err(e);
    }
    on_docker_only(docker)?;
    // A restored node runs on the snapshot's image, which Docker will not remove under it.
    let mut users: Vec<String> = docker
        .list_containers(&format!("{LABEL_RESTORED_FROM}={name}"))
        .await?
        .into_iter()
        .filter_map(|mut c| c.labels.remove(crate::runtime::LABEL_CLUSTER))
        .collect();
    users.sort();
    users.dedup();
    if !users.is_empty() {
        return Err(SnapshotError::InUse { name: name.to_string(), clusters: users }.into());
    }
    // The image its nodes were made from outlives it: the network lease is made from that.
    let images = docker.list_images(&format!("{LABEL_SNAPSHOT}={name}")).await?;
    let node_image = images.iter().find_map(|i| saved_from(&i.labels).map(str::to_string));
    // The marker first: from here on the snapshot is incomplete, never half-restored.
    let marker = marker_name(name);
    let had_marker = docker.remove_volume_if_there(&marker).await?;
    let removed = usize::from(had_marker) + remove_snapshot_objects(docker, name).await?;
    // Its saved addresses kept berth's network; with them gone, nothing else may.
    match node_image {
        Some(image) if docker.image_exists(&image).await.unwrap_or(false) => super::remove_network_if_unused(docker, &image).await,
        _ => tracing::info!("berth's network is left: no local image to take its lease with"),
    }
    Ok(removed)
}

/// Removes every object of snapshot `name`: its copy helpers, the images saves of it tagged
/// and its volumes (saved /vars, spares and their markers).
async fn remove_snapshot_objects(docker: &dyn Runtime, name: &str) -> Result<usize> {
    remove_saved(docker, &format!("{LABEL_SNAPSHOT}={name}"), name).await
}

/// Removes what carries `label` of snapshot `name`'s objects: copy helpers first (they hold
/// the volumes), then images — only the tags a save gave them in the snapshot's repository, as
/// an image built FROM a snapshot image inherits its labels — then volumes. Restored nodes carry
/// the labels too and are left: only helpers are removed. Returns how many objects went.
async fn remove_saved(docker: &dyn Runtime, label: &str, name: &str) -> Result<usize> {
    let repo = format!("{}:", image_repo(name));
    let mut removed = 0;
    for c in docker.list_containers(label).await? {
        if c.labels.contains_key(crate::runtime::LABEL_COPY) {
            docker.remove_container(&c.id).await?;
            removed += 1;
        }
    }
    for image in docker.list_images(label).await? {
        let tags: Vec<&String> = image.repo_tags.iter().filter(|t| t.starts_with(&repo)).collect();
        for tag in &tags {
            docker.remove_image(tag).await?;
        }
        removed += usize::from(!tags.is_empty());
    }
    for (volume, _) in docker.list_volumes(label).await? {
        docker.remove_volume(&volume).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Stops `cluster` cleanly and saves every node as snapshot `name`. SIGINT/SIGTERM or a failure
/// removes what this save made (the cluster stays, stopped).
pub async fn save(docker: &dyn Runtime, name: &str, cluster: &str, status: &Status) -> Result<Snapshot> {
    on_docker_only(docker)?;
    save_until(docker, name, cluster, status, crate::interrupt::interrupted()).await
}

async fn save_until(
    docker: &dyn Runtime,
    name: &str,
    cluster: &str,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<Snapshot> {
    if let Some(e) = invalid_name(name) {
        return Err(e);
    }
    // A marker means a save finished; objects of the name without one are a cut-short save's
    // (or delete's) leftovers, cleared below once this save holds the name.
    if docker.volume_exists(&marker_name(name)).await? {
        return Err(SnapshotError::Exists(name.to_string()).into());
    }
    let info = super::list(docker).await?.into_iter().find(|c| c.name == cluster).ok_or_else(|| ClusterError::NotFound(cluster.into()))?;
    if !info.missing.is_empty() {
        return Err(ClusterError::InvalidInput {
            field: "--name".into(),
            problem: format!("cluster {cluster:?} is broken (missing: {}); it cannot be saved", info.missing.join(", ")),
        });
    }
    let save_id = crate::ids::unique("save");
    tokio::pin!(interrupt);
    // One save of a name at a time: the lease is a container of that name, which Docker makes
    // once. A second save waits, then (the first having finished) finds the snapshot there.
    let image = unlabelled_image(docker, &info.nodes.first().map(|n| n.image.clone()).unwrap_or_default()).await?;
    let lease = Operation::Save
        .unless_interrupted(&mut interrupt, async {
            Ok(crate::runtime::Lease::acquire(docker, &format!("snapshot-{name}"), &image, LEASE_WAIT).await?)
        })
        .await?;
    // The name may have been taken while this save waited for it.
    if docker.volume_exists(&marker_name(name)).await? {
        let _ = lease.release().await;
        return Err(SnapshotError::Exists(name.to_string()).into());
    }
    let outcome = Operation::Save
        .unless_interrupted(&mut interrupt, async {
            // Holding the lease, no other save of this name is running: what carries the name is
            // left from one that was killed (SIGKILL, a crash) or a delete cut short.
            if remove_snapshot_objects(docker, name).await? > 0 {
                status.info(format!("removed what an earlier save or delete of {name:?} left when it was cut short"));
            }
            save_nodes(docker, name, cluster, &save_id, status).await
        })
        .await;
    let outcome = match outcome {
        Ok(()) => find(docker, name).await,
        Err(e) => Err(e),
    };
    let _ = lease.release().await;
    let undo = || async {
        let step = status.step("Removing what this save made");
        let node_names: Vec<String> = info.nodes.iter().map(|n| n.name.clone()).collect();
        sweep_save(docker, name, &save_id, &node_names).await?;
        step.done();
        Ok(())
    };
    Operation::Save.finish(outcome, undo, "what the save had made was removed; the cluster is stopped").await
}

/// Removes what save `save_id` of `name` made; then once more after a pause, for a commit or
/// copy that was still in flight inside dockerd when the save stopped waiting for it. Besides
/// what carries the save's label, each node's volume goes by its exact name: a copy helper
/// whose create landed after its volume was removed has Docker make that volume again, empty
/// and unlabelled (seen after a SIGHUP during a save).
async fn sweep_save(docker: &dyn Runtime, name: &str, save_id: &str, nodes: &[String]) -> Result<()> {
    let label = format!("{LABEL_SAVE_ID}={save_id}");
    for pass in 0..2 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        remove_saved(docker, &label, name).await?;
        for node in nodes {
            docker.remove_volume(&volume_name(name, node, save_id)).await?;
        }
    }
    Ok(())
}

/// How long a save waits for another save of the same name to finish.
const LEASE_WAIT: Duration = Duration::from_secs(600);

async fn save_nodes(docker: &dyn Runtime, name: &str, cluster: &str, save_id: &str, status: &Status) -> Result<()> {
    // Service forwarders are remade by `berth load-balancer`; they hold nothing of the cluster.
    let all: Vec<NodeInfo> = nodes(docker, cluster).await?.into_iter().filter(|n| n.role != NodeRole::ServiceLb).collect();
    super::lifecycle::stop(docker, cluster, status).await?;
    let version = kubernetes_version(docker, &all).await;
    let step = status.step(format!("Saving {} node(s) as snapshot {name:?}", all.len()));
    try_join_all(all.iter().map(|n| save_node(docker, name, cluster, save_id, n, &version))).await?;
    // The first restore's /var copies, made now rather than on its way to a running cluster.
    let saved = list(docker)
        .await?
        .into_iter()
        .find(|s| s.name == name && s.save_id == save_id)
        .ok_or_else(|| SnapshotError::NotFound { name: name.to_string(), have: Vec::new() })?;
    spare::make(docker, &saved, &[(LABEL_SAVE_ID.to_string(), save_id.to_string())]).await?;
    // Last: the marker that makes it a snapshot, naming every node saved.
    let nodes: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
    let marker = marker_name(name);
    if docker.volume_exists(&marker).await? {
        return Err(SnapshotError::Exists(name.to_string()).into());
    }
    let labels = [
        (LABEL_SNAPSHOT.to_string(), name.to_string()),
        (LABEL_SAVE_ID.to_string(), save_id.to_string()),
        (LABEL_COMPLETE.to_string(), nodes.join(",")),
    ];
    docker.create_volume(&marker, &labels).await?;
    step.done();
    Ok(())
}

/// An image to make helper containers (copies, leases) from: the node image that `running` (a
/// node's image) was saved from when it is a snapshot image and that image is still here, whose
/// labels name no cluster or snapshot; else `running` itself.
pub(super) async fn unlabelled_image(docker: &dyn Runtime, running: &str) -> Result<String> {
    let labels = docker.image_labels(running).await.unwrap_or_default();
    match saved_from(&labels) {
        Some(node_image) if docker.image_exists(node_image).await? => Ok(node_image.to_string()),
        _ => Ok(running.to_string()),
    }
}

async fn kubernetes_version(docker: &dyn Runtime, all: &[NodeInfo]) -> String {
    let Some(cp) = all.iter().find(|n| n.role == NodeRole::ControlPlane) else { return String::new() };
    docker.read_file(&cp.name, "/kind/version").await.map(|v| String::from_utf8_lossy(&v).trim().to_string()).unwrap_or_default()
}

async fn save_node(docker: &dyn Runtime, name: &str, cluster: &str, save_id: &str, node: &NodeInfo, version: &str) -> Result<()> {
    let info = docker.inspect(&node.name).await?;
    let host_config = info.host_config();
    // A node of a restored cluster runs on a snapshot image: the node image is the one that was
    // saved from. Copies run from it too, whose labels name no cluster.
    let running = info.image();
    let node_image = saved_from(&docker.image_labels(&running).await.unwrap_or_default()).map(str::to_string).unwrap_or(running.clone());
    let copy_image = unlabelled_image(docker, &running).await?;
    // Proxy credentials stay out of the image: the URLs are kept, user and password dropped.
    let config = info.config().map_env(without_credentials);
    let var = info.volume_at("/var");
    let mut labels: HashMap<String, String> = HashMap::from([
        (LABEL_SNAPSHOT.into(), name.into()),
        (LABEL_SAVE_ID.into(), save_id.into()),
        (LABEL_SAVED_CLUSTER.into(), cluster.into()),
        (LABEL_NODE.into(), node.name.clone()),
        (LABEL_ROLE_SAVED.into(), node.role.as_str().into()),
        (LABEL_VERSION.into(), version.into()),
        (LABEL_NODE_IMAGE.into(), node_image),
        (LABEL_HOST_CONFIG.into(), serde_json::to_string(&host_config).unwrap_or_default()),
        (LABEL_HOLDS.into(), HOLDS.into()),
    ]);
    if let Some(ip) = info.pinned_address(crate::runtime::NETWORK_NAME) {
        labels.insert(LABEL_ADDRESS.into(), ip);
    }
    if let Some(from) = var {
        let volume = volume_name(name, &node.name, save_id);
        // Docker hands back a volume that exists instead of failing: one of that name would be
        // another save's, and copying into it would merge two snapshots.
        if docker.volume_exists(&volume).await? {
            return Err(SnapshotError::Exists(format!("{name} (volume {volume} exists)")).into());
        }
        let volume_labels = vec![
            (LABEL_SNAPSHOT.to_string(), name.to_string()),
            (LABEL_SAVE_ID.to_string(), save_id.to_string()),
            (LABEL_NODE.to_string(), node.name.clone()),
        ];
        docker.create_volume(&volume, &volume_labels).await?;
        // A full copy: the snapshot must not share a file with the cluster it was saved from.
        let copy = volume_copy::VolumeCopy { from: &from, to: &volume };
        let helper_labels = [(LABEL_SAVE_ID.to_string(), save_id.to_string()), (LABEL_SNAPSHOT.to_string(), name.to_string())];
        let bytes = volume_copy::copy_volumes(docker, &copy_image, &[copy], &helper_labels).await?[0];
        labels.insert(LABEL_VOLUME.into(), volume);
        labels.insert(LABEL_VAR_BYTES.into(), bytes.to_string());
    }
    if node.role == NodeRole::ControlPlane {
        if let Some(expires) = certificate_expiry(docker, &node.name).await {
            labels.insert(LABEL_CERTS_EXPIRE.into(), expires.to_string());
        }
    }
    // The container's own config (entrypoint, environment, the /var volume) with the snapshot's
    // labels added: what a restored node is created from.
    docker.commit(&node.name, &image_repo(name), &image_tag(&node.name, save_id), config.labels(labels)).await?;
    Ok(())
}

/// `KEY=URL` with any `user:password@` taken out of the URL (other variables as they are).
fn without_credentials(var: &str) -> String {
    let Some((key, value)) = var.split_once('=') else { return var.to_string() };
    if !key.to_ascii_lowercase().ends_with("_proxy") {
        return var.to_string();
    }
    let cleaned: Vec<String> = value
        .split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
            (None, Some(at)) => url[at + 1..].to_string(),
            _ => url.to_string(),
        })
        .collect();
    format!("{key}={}", cleaned.join(","))
}

/// When the node's API server certificate expires (Unix seconds); kubeadm issues the others
/// with the same lifetime.
async fn certificate_expiry(docker: &dyn Runtime, node: &str) -> Option<i64> {
    let pem = docker.read_file(node, "/etc/kubernetes/pki/apiserver.crt").await.ok()?;
    not_after(&pem)
}

/// A PEM certificate's notAfter, in Unix seconds.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// How long before certificates expire a restore warns.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    /// berth's network outlives the last cluster while a snapshot keeps addresses in it, and
    /// goes with the last such snapshot.
    #[tokio::test]
    async fn deleting_the_last_snapshot_of_a_deleted_cluster_removes_the_network() {
        let fake = two_node_cluster();
        save(&fake, "warm", "dev", &Status::quiet()).await.unwrap();
        save(&fake, "cold", "dev", &Status::quiet()).await.unwrap();
        crate::cluster::delete(&fake, "dev", &[]).await.unwrap();
        assert!(fake.networks().contains(crate::runtime::NETWORK_NAME), "the snapshots' addresses keep it");
        delete(&fake, "warm").await.unwrap();
        assert!(fake.networks().contains(crate::runtime::NETWORK_NAME), "the other snapshot's addresses keep it");
        delete(&fake, "cold").await.unwrap();
        assert!(!fake.networks().contains(crate::runtime::NETWORK_NAME), "{:?}", fake.calls());
    }
    use crate::cluster::fixtures::{interrupt_after, snapshot_objects, two_node_cluster, NODE_IMAGE};
    use std::collections::BTreeSet;

    fn never() -> impl std::future::Future<Output = &'static str> {
        std::future::pending()
    }

    /// On Podman every snapshot command is refused by name before anything is touched.
    #[tokio::test]
    async fn snapshots_are_refused_by_name_on_podman() {
        let fake = two_node_cluster();
        fake.play_podman();
        let calls_before = fake.calls().len();
        for err in [
            save(&fake, "warm", "dev", &Status::quiet()).await.unwrap_err(),
            list(&fake).await.unwrap_err(),
            delete(&fake, "warm").await.unwrap_err(),
        ] {
            assert!(matches!(err, ClusterError::Host(HostError::Unsupported { engine: "Podman", .. })), "{err}");
            assert!(err.to_string().contains("snapshots") && err.to_string().contains("BERTH_PROVIDER=docker"), "{err}");
        }
        assert_eq!(fake.calls().len(), calls_before, "nothing stopped or made: {:?}", fake.calls());
        assert!(fake.containers().values().all(|c| c.running), "the cluster still runs");
    }

    /// A save of cluster "dev": every node stopped and committed with its /var copied (no file
    /// shared with the cluster's own volume), spares for the first restore, the marker last;
    /// no helper or lease container left behind.
    #[tokio::test(start_paused = true)]
    async fn a_save_holds_every_node_and_leaves_no_helper() {
        let fake = two_node_cluster();
        let snapshot = save_until(&fake, "warm", "dev", &Status::quiet(), never()).await.unwrap();
        assert!(snapshot.complete, "{snapshot:?}");
        assert_eq!((snapshot.cluster.as_str(), snapshot.kubernetes_version.as_str()), ("dev", "v1.37.2"));
        let names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dev-control-plane", "dev-worker"]);
        for node in &snapshot.nodes {
            let volume = node.volume.as_deref().unwrap();
            assert!(volume.starts_with("berth-snapshot-warm-") && !volume.starts_with("anonymous"), "{volume}");
            assert_eq!(node.node_image, NODE_IMAGE);
            assert!(node.address.is_some(), "{node:?}");
        }
        let containers = fake.containers();
        let left: Vec<&String> = containers.keys().filter(|c| !c.starts_with("dev-")).collect();
        assert!(left.is_empty(), "helpers or leases left: {left:?}");
        assert!(containers.values().all(|c| !c.running), "the cluster is stopped");
        assert!(fake.volumes().contains_key("berth-snapshot-warm-complete"));
        let spares = spare::ready(&fake, &snapshot).await.unwrap();
        assert_eq!(spares.len(), 2, "{spares:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_save_of_a_name_is_refused_and_the_first_kept() {
        let fake = two_node_cluster();
        save_until(&fake, "warm", "dev", &Status::quiet(), never()).await.unwrap();
        let before = snapshot_objects(&fake, "warm");
        let err = save_until(&fake, "warm", "dev", &Status::quiet(), never()).await.unwrap_err();
        assert!(matches!(&err, ClusterError::Snapshot(SnapshotError::Exists(n)) if n == "warm"), "{err}");
        assert_eq!(snapshot_objects(&fake, "warm"), before);
    }

    /// Two saves of one name at once: one holds the name's lease and saves, the other waits
    /// for it, then finds the snapshot there and refuses; nothing of the first is lost.
    #[tokio::test(start_paused = true)]
    async fn two_concurrent_saves_of_a_name_one_wins_one_refuses() {
        let fake = two_node_cluster();
        let status = Status::quiet();
        let (a, b) = tokio::join!(save_until(&fake, "warm", "dev", &status, never()), save_until(&fake, "warm", "dev", &status, never()));
        let (won, refused) = if a.is_ok() { (a, b) } else { (b, a) };
        assert!(won.unwrap().complete);
        assert!(matches!(&refused, Err(ClusterError::Snapshot(SnapshotError::Exists(n))) if n == "warm"), "{refused:?}");
        let snapshot = find(&fake, "warm").await.unwrap();
        assert!(snapshot.complete && snapshot.nodes.len() == 2, "{snapshot:?}");
        for node in &snapshot.nodes {
            assert!(fake.volumes().contains_key(node.volume.as_deref().unwrap()), "{} lost its /var", node.name);
        }
        assert!(fake.containers().keys().all(|c| c.starts_with("dev-")), "{:?}", fake.containers().keys());
    }

    /// A copy that fails half-way through the save: nothing of the snapshot stays (no image,
    /// no volume, no marker, no helper), the cluster's own containers and volumes do.
    #[tokio::test(start_paused = true)]
    async fn a_failure_mid_way_leaves_nothing_of_the_snapshot() {
        let fake = two_node_cluster();
        let volumes_before = fake.volumes();
        fake.exit_with(1, "cp: error writing '/to/0/lib/etcd/member/wal/0.wal': No space left on device");
        let err = save_until(&fake, "warm", "dev", &Status::quiet(), never()).await.unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert_eq!(snapshot_objects(&fake, "warm"), BTreeSet::new());
        assert_eq!(fake.volumes(), volumes_before);
        assert_eq!(fake.containers().keys().collect::<Vec<_>>(), ["dev-control-plane", "dev-worker"]);
        assert!(matches!(find(&fake, "warm").await, Err(ClusterError::Snapshot(SnapshotError::NotFound { .. }))));
    }

    /// SIGINT at every point of a save in turn: each time the save either finished (the
    /// interrupt came after its last step) or stopped, said so, and left nothing of itself.
    #[tokio::test(start_paused = true)]
    async fn an_interrupt_at_each_step_leaves_a_whole_snapshot_or_none() {
        let probe = two_node_cluster();
        save_until(&probe, "warm", "dev", &Status::quiet(), never()).await.unwrap();
        let steps = probe.calls().len();
        let mut interrupted = 0;
        for n in 1..=steps {
            let fake = two_node_cluster();
            let volumes_before = fake.volumes();
            match save_until(&fake, "warm", "dev", &Status::quiet(), interrupt_after(fake.clone(), n)).await {
                Ok(snapshot) => assert!(snapshot.complete, "after {n} calls: {snapshot:?}"),
                Err(ClusterError::Interrupted { operation: crate::cluster::Operation::Save, signal: "SIGINT", outcome: detail }) => {
                    interrupted += 1;
                    assert_eq!(snapshot_objects(&fake, "warm"), BTreeSet::new(), "after {n} calls ({detail})");
                    assert_eq!(fake.volumes(), volumes_before, "after {n} calls");
                    let extra: Vec<String> = fake.containers().into_keys().filter(|c| !c.starts_with("dev-")).collect();
                    assert!(extra.is_empty(), "after {n} calls: {extra:?}");
                }
                Err(e) => panic!("after {n} calls: {e}"),
            }
        }
        assert!(interrupted * 2 > steps, "only {interrupted} of {steps} interrupts landed");
    }

    #[test]
    fn proxy_credentials_are_not_saved() {
        assert_eq!(without_credentials("HTTPS_PROXY=http://alice:s3cret@proxy.example:3128"), "HTTPS_PROXY=http://proxy.example:3128");
        assert_eq!(without_credentials("http_proxy=bob:pw@proxy:80"), "http_proxy=proxy:80");
        assert_eq!(without_credentials("NO_PROXY=localhost,10.0.0.0/8"), "NO_PROXY=localhost,10.0.0.0/8");
        assert_eq!(without_credentials("PATH=/a@b"), "PATH=/a@b", "only proxy variables");
        assert_eq!(without_credentials("HTTP_PROXY=http://proxy:80"), "HTTP_PROXY=http://proxy:80");
    }

    #[test]
    fn reads_a_certificates_expiry() {
        // A self-signed certificate valid until 2035-11-26T19:29:53Z (openssl req -x509 -days 3285).
        let pem = include_bytes!("../../../tests/testdata/snapshot/apiserver.crt");
        let expires = not_after(pem).unwrap();
        assert_eq!(expires, TEST_CERT_NOT_AFTER, "{expires}");
        assert_eq!(not_after(b"not a certificate"), None);
    }

    const TEST_CERT_NOT_AFTER: i64 = 2_079_718_193;

    /// A volume of this save that Docker made again without labels (a copy helper landing
    /// late) goes by its exact name; another snapshot's, named alike, stays.
    #[tokio::test(start_paused = true)]
    async fn an_unlabelled_volume_of_the_save_is_swept_by_name_and_no_other() {
        let fake = two_node_cluster();
        let ours = volume_name("warm", "dev-worker", "save-1");
        let alike = volume_name("warm-dev", "worker", "save-2");
        for volume in [&ours, &alike] {
            fake.create_volume(volume, &[]).await.unwrap();
        }
        sweep_save(&fake, "warm", "save-1", &["dev-control-plane".into(), "dev-worker".into()]).await.unwrap();
        let left: Vec<String> = fake.volumes().into_keys().filter(|v| v.starts_with("berth-snapshot")).collect();
        assert_eq!(left, [alike]);
    }

    #[test]
    fn names_images_and_volumes_by_snapshot_node_and_save() {
        assert_eq!(image_repo("warm"), "berth-snapshot/warm");
        let save = "save-4711-9f2c01ab";
        assert_eq!(volume_name("warm", "ci-control-plane", save), "berth-snapshot-warm-ci-control-plane-9f2c01ab");
        assert_eq!(image_tag("ci-control-plane", save), "ci-control-plane-9f2c01ab");
        assert_eq!(marker_name("warm"), "berth-snapshot-warm-complete");
        // Names never run into each other: `base-dev` saved as `ci` and `dev` saved as `ci-base`
        // once shared a volume name; a save's own id now ends every name.
        assert_ne!(volume_name("ci", "base-dev-control-plane", save), volume_name("ci-base", "dev-control-plane", "save-1-00000000"));
        assert!(invalid_name("Warm!").is_some_and(|e| e.to_string().contains("snapshot NAME")));
        assert!(invalid_name("warm-1").is_none());
    }
}
