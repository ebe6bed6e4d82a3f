//! `berth load docker-image` / `load image-archive`: images from the host into every node's
//! containerd. One `docker save` (or the user's archive) is streamed to all nodes at once; a
//! node that already holds the image (same image ID, same name) is skipped.

use std::path::Path;

use futures_util::future::try_join_all;

use super::{nodes, ClusterError, Result};
use crate::runtime::{Docker, RuntimeError};
use crate::ui::Status;

/// An image in the host's Docker: its name and ID (the sha256 of its config, which is also
/// the digest of the config blob containerd stores when it imports the image).
#[derive(Debug, Clone)]
pub struct HostImage {
    pub name: String,
    pub id: String,
}

/// Which of the cluster's running nodes to load into: all, or the named ones.
async fn target_nodes(docker: &Docker, cluster: &str, only: &[String]) -> Result<Vec<String>> {
    // Nodes only: the load balancer of a multi-control-plane cluster runs no containerd.
    let all: Vec<String> =
        nodes(docker, cluster).await?.into_iter().filter(|n| n.state == "running" && n.is_kubernetes_node()).map(|n| n.name).collect();
    if only.is_empty() {
        return Ok(all);
    }
    for n in only {
        if !all.contains(n) {
            return Err(ClusterError::InvalidInput {
                field: "--nodes".into(),
                problem: format!("{n:?} is not a running node of cluster {cluster:?} (nodes: {})", all.join(", ")),
            });
        }
    }
    Ok(only.to_vec())
}

async fn has_image(docker: &Docker, node: &str, image: &HostImage) -> Result<bool> {
    let blob = docker.exec(node, &["ctr", "-n", "k8s.io", "content", "get", &image.id]).await?;
    Ok(blob.code == 0 && docker.node_has_image(node, &image.name).await?)
}

/// Loads images from the host's Docker into the cluster's nodes. Returns (node, loaded?) pairs.
pub async fn load_docker_images(
    docker: &Docker,
    cluster: &str,
    images: &[String],
    only: &[String],
    status: &Status,
) -> Result<Vec<(String, bool)>> {
    let mut host_images = Vec::new();
    for name in images {
        let id = docker.image_id(name).await?.ok_or_else(|| ClusterError::ImageNotOnHost(name.clone()))?;
        host_images.push(HostImage { name: name.clone(), id });
    }
    let targets = target_nodes(docker, cluster, only).await?;
    let mut needed = Vec::new();
    for node in &targets {
        let mut missing = false;
        for image in &host_images {
            missing |= !has_image(docker, node, image).await?;
        }
        if missing {
            needed.push(node.clone());
        }
    }
    if needed.is_empty() {
        status.info(format!("every node already holds {}", images.join(", ")));
        return Ok(targets.into_iter().map(|n| (n, false)).collect());
    }
    let step = status.step(format!("Saving {}", images.join(", ")));
    let dir = tempfile::tempdir().map_err(|source| ClusterError::Io { context: "creating a temp dir".into(), source })?;
    let archive = dir.path().join("images.tar");
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    docker.save_images_to(&refs, &archive).await?;
    step.done();
    let step = status.step(format!("Loading into {} node(s)", needed.len()));
    try_join_all(needed.iter().map(|node| import_archive(docker, node, &archive))).await?;
    step.done();
    Ok(targets
        .into_iter()
        .map(|n| {
            let loaded = needed.contains(&n);
            (n, loaded)
        })
        .collect())
}

/// Loads an image archive file into every (or the named) node.
pub async fn load_archive(docker: &Docker, cluster: &str, archive: &Path, only: &[String], status: &Status) -> Result<Vec<String>> {
    crate::node_image::check_image_archive(archive)
        .map_err(|e| ClusterError::InvalidInput { field: archive.display().to_string(), problem: e.to_string() })?;
    let targets = target_nodes(docker, cluster, only).await?;
    let step = status.step(format!("Loading {} into {} node(s)", archive.display(), targets.len()));
    try_join_all(targets.iter().map(|node| import_archive(docker, node, archive))).await?;
    step.done();
    Ok(targets)
}

/// `docker save` to a file: one export, whatever the number of nodes.
/// Streams the archive into containerd in `node`, nothing staged on the way. `--no-unpack`: the
/// layers are unpacked when a container first uses the image (as for the images a node image
/// preloads), so a load writes each layer once per node instead of twice.
async fn import_archive(docker: &Docker, node: &str, archive: &Path) -> Result<()> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|source| ClusterError::Io { context: format!("reading {}", archive.display()), source })?;
    let cmd = ["ctr", "-n", "k8s.io", "images", "import", "--digests", "--no-unpack", "-"];
    let out = docker.exec_with_input(node, &cmd, Some(tokio::io::BufReader::with_capacity(1 << 20, file))).await?;
    if out.code != 0 {
        return Err(
            RuntimeError::ExecFailed { container: node.to_string(), command: cmd.join(" "), code: out.code, tail: out.tail(20) }.into()
        );
    }
    Ok(())
}
