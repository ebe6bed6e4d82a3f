//! `berth load docker-image` / `load image-archive`: images from the host into every node's
//! containerd. One `docker save` (or the user's archive) is streamed to all nodes at once; a
//! node that already holds the image (same image ID, same name) is skipped. An image the engine
//! holds under another name than the user's (Podman calls what it built `localhost/web:1`) is
//! also named in the nodes as a pod spec saying `web:1` means it (`docker.io/library/web:1`).

use std::path::Path;

use futures_util::future::try_join_all;

use super::{nodes, ClusterError, ImageError, Result};
use crate::runtime::{Runtime, RuntimeError};
use crate::ui::Status;

/// An image in the host's engine: its name and ID (the sha256 of its config, which is also
/// the digest of the config blob containerd stores when it imports the image).
#[derive(Debug, Clone)]
pub struct HostImage {
    pub name: String,
    pub id: String,
    /// The name the archive carries when it is not the user's, in containerd's terms, and the
    /// user's, which the nodes must answer to as well.
    pub alias: Option<(String, String)>,
}

/// How the archive will name `name` in containerd when that differs from what a pod spec
/// saying `name` asks containerd for: (the archive's name, the pod spec's name).
fn alias_for(name: &str, repo_tags: &[String]) -> Option<(String, String)> {
    let containerd = |r: &str| crate::image_ref::ImageRef::parse(r).ok().map(|r| r.containerd_name());
    let wanted = containerd(name)?;
    let held: Vec<String> = repo_tags.iter().filter_map(|t| containerd(t)).collect();
    if held.contains(&wanted) {
        return None;
    }
    held.into_iter().next().map(|h| (h, wanted))
}

/// Which of the cluster's running nodes to load into: all, or the named ones.
async fn target_nodes(docker: &dyn Runtime, cluster: &str, only: &[String]) -> Result<Vec<String>> {
    // Nodes only: the load balancer of a multi-control-plane cluster runs no containerd.
    let all: Vec<String> =
        nodes(docker, cluster).await?.into_iter().filter(|n| n.state.is_running() && n.is_kubernetes_node()).map(|n| n.name).collect();
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

async fn has_image(docker: &dyn Runtime, node: &str, image: &HostImage) -> Result<bool> {
    let blob = docker.exec(node, &["ctr", "-n", "k8s.io", "content", "get", &image.id]).await?;
    Ok(blob.code == 0 && node_has_image(docker, node, &image.name).await?)
}

/// Whether a node's containerd holds an image of this name (as containerd spells it:
/// `busybox` is `docker.io/library/busybox:latest`). A name that is no image reference is
/// held by no node.
pub(super) async fn node_has_image(docker: &dyn Runtime, node: &str, image: &str) -> Result<bool, RuntimeError> {
    let Ok(reference) = crate::image_ref::ImageRef::parse(image) else { return Ok(false) };
    let filter = format!("name=={}", reference.containerd_name());
    Ok(!docker.exec_ok(node, &["ctr", "-n", "k8s.io", "images", "ls", "-q", &filter]).await?.trim().is_empty())
}

/// Loads images from the host's Docker into the cluster's nodes. Returns (node, loaded?) pairs.
pub async fn load_docker_images(
    docker: &dyn Runtime,
    cluster: &str,
    images: &[String],
    only: &[String],
    status: &Status,
) -> Result<Vec<(String, bool)>> {
    let mut host_images = Vec::new();
    for name in images {
        let id = docker.image_id(name).await?.ok_or_else(|| ImageError::NotOnHost(name.clone()))?;
        let alias = alias_for(name, &docker.repo_tags(name).await?);
        host_images.push(HostImage { name: name.clone(), id, alias });
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
    let (archive, host_images) = (&archive, &host_images);
    try_join_all(needed.iter().map(|node| async move {
        import_archive(docker, node, archive).await?;
        name_as_asked(docker, node, host_images).await
    }))
    .await?;
    step.done();
    Ok(targets
        .into_iter()
        .map(|n| {
            let loaded = needed.contains(&n);
            (n, loaded)
        })
        .collect())
}

/// Gives each imported image that came under the engine's own name the user's name too.
async fn name_as_asked(docker: &dyn Runtime, node: &str, images: &[HostImage]) -> Result<()> {
    for (held, wanted) in images.iter().filter_map(|i| i.alias.as_ref()) {
        docker.exec_ok(node, &["ctr", "-n", "k8s.io", "images", "tag", "--force", held, wanted]).await?;
    }
    Ok(())
}

/// Loads an image archive file into every (or the named) node.
pub async fn load_archive(docker: &dyn Runtime, cluster: &str, archive: &Path, only: &[String], status: &Status) -> Result<Vec<String>> {
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
async fn import_archive(docker: &dyn Runtime, node: &str, archive: &Path) -> Result<()> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|source| ClusterError::Io { context: format!("reading {}", archive.display()), source })?;
    let cmd = ["ctr", "-n", "k8s.io", "images", "import", "--digests", "--no-unpack", "-"];
    let out = docker.exec_with_input(node, &cmd, Some(Box::new(tokio::io::BufReader::with_capacity(1 << 20, file)))).await?;
    if out.code != 0 {
        return Err(
            RuntimeError::ExecFailed { container: node.to_string(), command: cmd.join(" "), code: out.code, tail: out.tail(20) }.into()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::{LABEL_CLUSTER, LABEL_ROLE, LOAD_BALANCER_ROLE};

    /// Cluster "dev": two nodes behind a load balancer (which runs no containerd); the host
    /// holds image web:1.
    fn cluster() -> FakeRuntime {
        let fake = FakeRuntime::healthy(&["web:1"]);
        fake.add_container("dev-control-plane", &[(LABEL_CLUSTER, "dev"), (LABEL_ROLE, "control-plane")]);
        fake.add_container("dev-worker", &[(LABEL_CLUSTER, "dev"), (LABEL_ROLE, "worker")]);
        fake.add_container("dev-external-load-balancer", &[(LABEL_CLUSTER, "dev"), (LABEL_ROLE, LOAD_BALANCER_ROLE)]);
        fake
    }

    fn imports(fake: &FakeRuntime) -> Vec<String> {
        fake.calls().into_iter().filter(|c| c.contains("ctr -n k8s.io images import")).collect()
    }

    #[tokio::test]
    async fn one_save_is_streamed_into_every_node_and_not_the_balancer() {
        let fake = cluster();
        let loaded = load_docker_images(&fake, "dev", &["web:1".into()], &[], &Status::quiet()).await.unwrap();
        assert_eq!(loaded, [("dev-control-plane".to_string(), true), ("dev-worker".to_string(), true)]);
        assert_eq!(imports(&fake).len(), 2, "{:?}", fake.calls());
        // The nodes load at once, in no set order.
        let mut fed: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("stdin ")).collect();
        fed.sort();
        assert_eq!(fed, ["stdin dev-control-plane: 5 bytes", "stdin dev-worker: 5 bytes"].map(String::from), "the archive, whole");
        assert!(!fake.calls().iter().any(|c| c.contains("load-balancer")), "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn only_the_named_nodes_and_only_real_ones() {
        let fake = cluster();
        let loaded = load_docker_images(&fake, "dev", &["web:1".into()], &["dev-worker".into()], &Status::quiet()).await.unwrap();
        assert_eq!(loaded, [("dev-worker".to_string(), true)]);
        let err = load_docker_images(&fake, "dev", &["web:1".into()], &["dev-external-load-balancer".into()], &Status::quiet())
            .await
            .unwrap_err();
        assert!(matches!(&err, ClusterError::InvalidInput { field, .. } if field == "--nodes"), "{err}");
    }

    #[tokio::test]
    async fn an_image_the_host_lacks_is_named_before_any_node_is_touched() {
        let fake = cluster();
        let err = load_docker_images(&fake, "dev", &["web:1".into(), "api:2".into()], &[], &Status::quiet()).await.unwrap_err();
        assert!(matches!(&err, ClusterError::Image(ImageError::NotOnHost(name)) if name == "api:2"), "{err}");
        assert!(fake.calls().iter().all(|c| !c.starts_with("exec")), "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn an_image_podman_holds_as_localhost_is_also_named_as_the_user_named_it() {
        let fake = cluster();
        fake.set_repo_tags("web:1", &["localhost/web:1"]);
        load_docker_images(&fake, "dev", &["web:1".into()], &[], &Status::quiet()).await.unwrap();
        let tags: Vec<String> = fake.calls().into_iter().filter(|c| c.contains("images tag")).collect();
        assert_eq!(tags.len(), 2, "one per node: {:?}", fake.calls());
        assert!(tags.iter().all(|t| t.ends_with("ctr -n k8s.io images tag --force localhost/web:1 docker.io/library/web:1")), "{tags:?}");
        // Docker holds it under the user's own name: nothing to add.
        assert_eq!(alias_for("web:1", &["web:1".into()]), None);
        assert_eq!(alias_for("docker.io/library/web:1", &["web:1".into()]), None);
        assert_eq!(alias_for("localhost/web:1", &["localhost/web:1".into()]), None);
        assert_eq!(alias_for("web:1", &[]), None);
    }

    #[tokio::test]
    async fn a_node_whose_containerd_refuses_the_archive_fails_the_load_by_name() {
        let fake = cluster();
        fake.fail_exec("dev-worker", "ctr -n k8s.io images import", 1, "ctr: content digest mismatch");
        let err = load_docker_images(&fake, "dev", &["web:1".into()], &[], &Status::quiet()).await.unwrap_err().to_string();
        assert!(err.contains("dev-worker") && err.contains("digest mismatch"), "{err}");
    }
}
