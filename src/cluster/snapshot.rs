//! Snapshots: `berth snapshot save|list|delete`, and reading one back for
//! `create cluster --from-snapshot` (`restore.rs`).
//!
//! A snapshot is Docker objects found by the label `dev.berth.snapshot=NAME`, with no state file:
//! per node, an image committed from the stopped node (its root filesystem's changes:
//! /etc/kubernetes, the kubelet's config) and a volume holding a copy of its `/var` (etcd's data,
//! the kubelet's state, containerd's unpacked images). `/var` is never an image layer: Docker's
//! layer format would turn the whiteouts and opaque directories of containerd's own overlay
//! snapshots into deletions. What a restore needs to know — node, role, address, the container's
//! host config (ports, mounts, capabilities), Kubernetes version, node image, when the
//! certificates expire, which of containerd's snapshots are image layers — rides on the image as
//! labels. Snapshot volumes carry no cluster label, so deleting the cluster never takes them.
//! Beside them are spare copies of each /var for the next restore (`spare.rs`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::HostConfig;
use futures_util::future::try_join_all;
use serde::Serialize;

use super::{nodes, ClusterError, NodeInfo, Result};
use crate::runtime::{Docker, SERVICE_LB_ROLE};
use crate::ui::Status;

pub const LABEL_SNAPSHOT: &str = "dev.berth.snapshot";
/// On a restored cluster's containers and volumes: the snapshot it came from.
pub const LABEL_RESTORED_FROM: &str = "dev.berth.restored-from";
const LABEL_CLUSTER: &str = "dev.berth.snapshot.cluster";
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
/// The containerd overlay snapshots (by number) that held image layers when the node was saved.
const LABEL_IMAGE_LAYERS: &str = "dev.berth.snapshot.image-layers";
/// Where containerd's overlay snapshotter keeps its snapshots, relative to a node's /var.
const CONTAINERD_SNAPSHOTS: &str = "lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots";

/// The node image a snapshot's image was saved from, given that image's labels: a node added to
/// a restored cluster starts from it, not from another node's saved files.
pub fn saved_from(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(LABEL_NODE_IMAGE).map(String::as_str).filter(|i| !i.is_empty())
}

/// The repository a snapshot's node images are committed to; the tag is the node's name.
pub fn image_repo(snapshot: &str) -> String {
    format!("berth-snapshot/{snapshot}")
}

fn volume_name(snapshot: &str, node: &str) -> String {
    format!("berth-snapshot-{snapshot}-{node}-var")
}

/// One saved node.
#[derive(Debug, Clone, Serialize)]
pub struct SavedNode {
    pub name: String,
    pub role: String,
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
    /// Directories of the saved /var (relative to it) that hold image layers: containerd never
    /// writes them again, so a restore may share them instead of copying.
    #[serde(skip)]
    pub image_layers: Vec<String>,
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
    crate::config::validate_cluster_name(name).err().map(|problem| ClusterError::InvalidInput {
        field: "snapshot NAME".into(),
        problem: problem.replace("cluster name", "snapshot name"),
    })
}

/// Every snapshot, from image labels.
pub async fn list(docker: &Docker) -> Result<Vec<Snapshot>> {
    let mut by_name: std::collections::BTreeMap<String, Snapshot> = Default::default();
    // Nodes of a snapshot share their node image: inspected once each.
    let mut parent_sizes: HashMap<String, i64> = HashMap::new();
    for image in docker.list_images(LABEL_SNAPSHOT).await? {
        let labels = &image.labels;
        let (Some(name), Some(node)) = (labels.get(LABEL_SNAPSHOT), labels.get(LABEL_NODE)) else { continue };
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
            cluster: get(LABEL_CLUSTER),
            kubernetes_version: get(LABEL_VERSION),
            created: image.created,
            nodes: Vec::new(),
        });
        snapshot.created = snapshot.created.min(image.created);
        if snapshot.kubernetes_version.is_empty() {
            snapshot.kubernetes_version = get(LABEL_VERSION);
        }
        snapshot.nodes.push(SavedNode {
            name: node.clone(),
            role: get(LABEL_ROLE_SAVED),
            image: format!("{}:{node}", image_repo(name)),
            volume: labels.get(LABEL_VOLUME).cloned(),
            address: labels.get(LABEL_ADDRESS).cloned(),
            host_config,
            node_image: get(LABEL_NODE_IMAGE),
            bytes: var_bytes + layer,
            certificates_expire: get(LABEL_CERTS_EXPIRE).parse().ok(),
            image_layers: layer_dirs(&get(LABEL_IMAGE_LAYERS)),
        });
    }
    for (of, spare) in super::spare::all_ready(docker).await? {
        if let Some(node) = by_name.get_mut(&of).and_then(|s| s.nodes.iter_mut().find(|n| n.name == spare.node)) {
            node.bytes += spare.bytes;
        }
    }
    let mut out: Vec<Snapshot> = by_name.into_values().collect();
    for s in &mut out {
        s.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(out)
}

/// The size of the image a node was made from (0 if it is gone), to tell a snapshot's own
/// layer from what it shares with the node image.
async fn parent_size(docker: &Docker, image: &str) -> i64 {
    if image.is_empty() {
        return 0;
    }
    docker.image_size(image).await.unwrap_or(0)
}

/// The snapshot named `name`, or an error listing those there are.
pub async fn find(docker: &Docker, name: &str) -> Result<Snapshot> {
    let all = list(docker).await?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| ClusterError::SnapshotNotFound { name: name.to_string(), have: names })
}

/// Removes a snapshot's images and volumes; an absent one is not an error. Returns how many
/// objects went.
pub async fn delete(docker: &Docker, name: &str) -> Result<usize> {
    if let Some(e) = invalid_name(name) {
        return Err(e);
    }
    // A restored node runs on the snapshot's image, which Docker will not remove under it.
    let mut users: Vec<String> = docker
        .list_containers(&format!("{LABEL_RESTORED_FROM}={name}"))
        .await?
        .into_iter()
        .filter_map(|c| c.labels.and_then(|mut l| l.remove(crate::runtime::LABEL_CLUSTER)))
        .collect();
    users.sort();
    users.dedup();
    if !users.is_empty() {
        return Err(ClusterError::SnapshotInUse { name: name.to_string(), clusters: users });
    }
    remove_labelled(docker, &format!("{LABEL_SNAPSHOT}={name}")).await
}

async fn remove_labelled(docker: &Docker, label: &str) -> Result<usize> {
    let images = docker.list_images(label).await?;
    for image in &images {
        for tag in &image.repo_tags {
            docker.remove_image(tag).await?;
        }
    }
    let volumes = docker.list_volumes(label).await?;
    for (volume, _) in &volumes {
        docker.remove_volume(volume).await?;
    }
    Ok(images.len() + volumes.len())
}

/// Stops `cluster` cleanly and saves every node as snapshot `name`. SIGINT/SIGTERM or a failure
/// removes what this save made (the cluster stays, stopped).
pub async fn save(docker: &Docker, name: &str, cluster: &str, status: &Status) -> Result<Snapshot> {
    save_until(docker, name, cluster, status, super::create::interrupted()).await
}

async fn save_until(
    docker: &Docker,
    name: &str,
    cluster: &str,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<Snapshot> {
    if let Some(e) = invalid_name(name) {
        return Err(e);
    }
    if !docker.list_images(&format!("{LABEL_SNAPSHOT}={name}")).await?.is_empty() {
        return Err(ClusterError::SnapshotExists(name.to_string()));
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
    let outcome = super::create::unless_interrupted(&mut interrupt, "", save_nodes(docker, name, cluster, &save_id, status)).await;
    match outcome {
        Ok(()) => find(docker, name).await,
        Err(err) => {
            let step = status.step("Removing what this save made");
            let cleanup = sweep_save(docker, &save_id).await;
            step.done();
            match (err, cleanup) {
                (ClusterError::Interrupted(which, _), Ok(_)) => {
                    Err(ClusterError::Interrupted(which, "what the save had made was removed; the cluster is stopped".into()))
                }
                (err, Ok(_)) => Err(err),
                (err, Err(e)) => Err(ClusterError::CleanupFailed { error: Box::new(err), cleanup: Box::new(e) }),
            }
        }
    }
}

/// Removes what save `save_id` made: copy helpers first (they hold the volumes), then images
/// and volumes; then once more after a pause, for a commit or copy that was still in flight
/// inside dockerd when the save stopped waiting for it.
async fn sweep_save(docker: &Docker, save_id: &str) -> Result<()> {
    let label = format!("{LABEL_SAVE_ID}={save_id}");
    for pass in 0..2 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        super::remove_containers(docker, &label).await?;
        remove_labelled(docker, &label).await?;
    }
    Ok(())
}

async fn save_nodes(docker: &Docker, name: &str, cluster: &str, save_id: &str, status: &Status) -> Result<()> {
    // Service forwarders are remade by `berth load-balancer`; they hold nothing of the cluster.
    let all: Vec<NodeInfo> = nodes(docker, cluster).await?.into_iter().filter(|n| n.role != SERVICE_LB_ROLE).collect();
    // Asked while the nodes run: only a running node's mounts tell image layers apart.
    let layers = futures_util::future::join_all(all.iter().map(|n| image_layers(docker, &n.name))).await;
    super::lifecycle::stop(docker, cluster, status).await?;
    let version = kubernetes_version(docker, &all).await;
    let step = status.step(format!("Saving {} node(s) as snapshot {name:?}", all.len()));
    try_join_all(all.iter().zip(&layers).map(|(n, layers)| save_node(docker, name, cluster, save_id, n, &version, layers))).await?;
    // The first restore's /var copies, made now rather than on its way to a running cluster.
    super::spare::make(docker, &find(docker, name).await?, &[(LABEL_SAVE_ID.to_string(), save_id.to_string())]).await?;
    step.done();
    Ok(())
}

async fn kubernetes_version(docker: &Docker, all: &[NodeInfo]) -> String {
    let Some(cp) = all.iter().find(|n| n.role == "control-plane") else { return String::new() };
    docker.read_file(&cp.name, "/kind/version").await.map(|v| String::from_utf8_lossy(&v).trim().to_string()).unwrap_or_default()
}

async fn save_node(
    docker: &Docker,
    name: &str,
    cluster: &str,
    save_id: &str,
    node: &NodeInfo,
    version: &str,
    image_layers: &str,
) -> Result<()> {
    let info = docker.inspect(&node.name).await?;
    let config = info.config.clone().unwrap_or_default();
    let host_config = info.host_config.clone().unwrap_or_default();
    let var = info.mounts.iter().flatten().find(|m| m.destination.as_deref() == Some("/var")).and_then(|m| m.name.clone());
    let mut labels: HashMap<String, String> = HashMap::from([
        (LABEL_SNAPSHOT.into(), name.into()),
        (LABEL_SAVE_ID.into(), save_id.into()),
        (LABEL_CLUSTER.into(), cluster.into()),
        (LABEL_NODE.into(), node.name.clone()),
        (LABEL_ROLE_SAVED.into(), node.role.clone()),
        (LABEL_VERSION.into(), version.into()),
        (LABEL_NODE_IMAGE.into(), config.image.clone().unwrap_or_default()),
        (LABEL_HOST_CONFIG.into(), serde_json::to_string(&host_config).unwrap_or_default()),
    ]);
    if let Some(ip) = pinned_address(&info) {
        labels.insert(LABEL_ADDRESS.into(), ip);
    }
    if let Some(from) = var {
        let volume = volume_name(name, &node.name);
        let volume_labels = vec![
            (LABEL_SNAPSHOT.to_string(), name.to_string()),
            (LABEL_SAVE_ID.to_string(), save_id.to_string()),
            (LABEL_NODE.to_string(), node.name.clone()),
        ];
        docker.create_volume(&volume, &volume_labels).await?;
        let image = info.image.clone().unwrap_or_default();
        // A full copy: the snapshot must not share a file with the cluster it was saved from.
        let copy = crate::runtime::VolumeCopy { from: &from, to: &volume, link: &[] };
        let bytes = docker.copy_volumes(&image, &[copy], &[(LABEL_SAVE_ID.to_string(), save_id.to_string())]).await?[0];
        labels.insert(LABEL_VOLUME.into(), volume);
        labels.insert(LABEL_VAR_BYTES.into(), bytes.to_string());
        labels.insert(LABEL_IMAGE_LAYERS.into(), image_layers.to_string());
    }
    if node.role == "control-plane" {
        if let Some(expires) = certificate_expiry(docker, &node.name).await {
            labels.insert(LABEL_CERTS_EXPIRE.into(), expires.to_string());
        }
    }
    // The container's own config (entrypoint, environment, the /var volume) with the snapshot's
    // labels added: what a restored node is created from.
    let mut image_config = config;
    image_config.labels.get_or_insert_with(HashMap::new).extend(labels);
    docker.commit(&node.name, &image_repo(name), &node.name, image_config).await?;
    Ok(())
}

/// The numbers of the containerd snapshots that `node`'s overlay mounts use as lower layers,
/// space-separated ("" when the node is not running or has none).
async fn image_layers(docker: &Docker, node: &str) -> String {
    match docker.exec(node, &["cat", "/proc/mounts"]).await {
        Ok(out) if out.code == 0 => lower_layers(&out.stdout).join(" "),
        _ => String::new(),
    }
}

/// The containerd snapshots named as `lowerdir`s in `mounts` (a /proc/mounts): committed image
/// layers. overlayfs never writes a lower layer and containerd never writes a committed
/// snapshot, so their files stay as they were saved.
fn lower_layers(mounts: &str) -> Vec<String> {
    let prefix = format!("/var/{CONTAINERD_SNAPSHOTS}/");
    let mut ids: Vec<u64> = mounts
        .lines()
        .filter(|line| line.split_whitespace().nth(2) == Some("overlay"))
        .filter_map(|line| line.split_whitespace().nth(3))
        .flat_map(|options| options.split(','))
        .filter_map(|option| option.strip_prefix("lowerdir="))
        .flat_map(|dirs| dirs.split(':'))
        .filter_map(|dir| dir.strip_prefix(&prefix)?.strip_suffix("/fs")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| id.to_string()).collect()
}

/// The directories (relative to /var) of the image layers a label names; anything but numbers
/// is dropped, so a label cannot point a restore elsewhere.
fn layer_dirs(label: &str) -> Vec<String> {
    label.split_whitespace().filter(|id| id.parse::<u64>().is_ok()).map(|id| format!("{CONTAINERD_SNAPSHOTS}/{id}")).collect()
}

/// The address a node is pinned to on berth's network.
fn pinned_address(info: &bollard::models::ContainerInspectResponse) -> Option<String> {
    info.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(crate::runtime::NETWORK_NAME))
        .and_then(|e| e.ipam_config.as_ref())
        .and_then(|i| i.ipv4_address.clone())
        .filter(|a| !a.is_empty())
}

/// When the node's API server certificate expires (Unix seconds); kubeadm issues the others
/// with the same lifetime.
async fn certificate_expiry(docker: &Docker, node: &str) -> Option<i64> {
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

    #[test]
    fn image_layers_are_the_lower_dirs_of_containerd_overlay_mounts() {
        let mounts = "overlay / overlay rw,lowerdir=/var/lib/docker/overlay2/l/DK6:/var/lib/docker/overlay2/l/UFD,upperdir=/x/diff,workdir=/x/work 0 0
/dev/vda /var ext4 rw,relatime 0 0
overlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/703e/rootfs overlay rw,relatime,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/10/fs:/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/2/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/56/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/56/work 0 0
overlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/8a1c/rootfs overlay rw,relatime,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/2/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/57/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/57/work 0 0
";
        // The upper (active, written) snapshots 56 and 57 and Docker's own layers are not among them.
        assert_eq!(lower_layers(mounts), vec!["2", "10"]);
        assert_eq!(layer_dirs("2 10 ../etc x"), vec![format!("{CONTAINERD_SNAPSHOTS}/2"), format!("{CONTAINERD_SNAPSHOTS}/10")]);
    }

    #[test]
    fn reads_a_certificates_expiry() {
        // A self-signed certificate valid until 2035-11-26T19:29:53Z (openssl req -x509 -days 3285).
        let pem = include_bytes!("../../tests/testdata/snapshot/apiserver.crt");
        let expires = not_after(pem).unwrap();
        assert_eq!(expires, TEST_CERT_NOT_AFTER, "{expires}");
        assert_eq!(not_after(b"not a certificate"), None);
    }

    const TEST_CERT_NOT_AFTER: i64 = 2_079_718_193;

    #[test]
    fn names_images_and_volumes_by_snapshot_and_node() {
        assert_eq!(image_repo("warm"), "berth-snapshot/warm");
        assert_eq!(volume_name("warm", "ci-control-plane"), "berth-snapshot-warm-ci-control-plane-var");
        assert!(invalid_name("Warm!").is_some_and(|e| e.to_string().contains("snapshot NAME")));
        assert!(invalid_name("warm-1").is_none());
    }
}
