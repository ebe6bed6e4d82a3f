//! `berth build node-image`: turns a base image with systemd and containerd, Kubernetes
//! binaries and image archives into a node image.
//!
//! This module owns the build container's life (create, copy in, import, commit, remove — the
//! container is removed on every path, success or not) and the checks on its inputs. The files
//! that go into every node image live in `node-image/` at the repository root and are embedded
//! here at compile time. Fetching release binaries for `--kube-version` is `download.rs`.

mod archive;
mod download;

use std::path::{Path, PathBuf};

use bollard::models::ContainerCreateBody;

use crate::image_ref::ImageRef;
use crate::runtime::{Docker, RuntimeError};
use crate::ui::Status;

pub use archive::check_image_archive;
pub use download::{parse_version, DEFAULT_KUBE_BASE_URL};

/// Files copied into every node image: (path in the image, contents, mode).
const NODE_FILES: &[(&str, &[u8], u32)] = &[
    ("/usr/local/bin/entrypoint", include_bytes!("../../node-image/files/usr/local/bin/entrypoint"), 0o755),
    ("/etc/containerd/config.toml", include_bytes!("../../node-image/files/etc/containerd/config.toml"), 0o644),
    ("/etc/containerd/berth-cni.conflist.tmpl", include_bytes!("../../node-image/files/etc/containerd/berth-cni.conflist.tmpl"), 0o644),
    ("/etc/systemd/system/kubelet.service", include_bytes!("../../node-image/files/etc/systemd/system/kubelet.service"), 0o644),
    (
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        include_bytes!("../../node-image/files/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"),
        0o644,
    ),
    ("/etc/systemd/system.conf.d/10-berth.conf", include_bytes!("../../node-image/files/etc/systemd/system.conf.d/10-berth.conf"), 0o644),
    ("/etc/tmpfiles.d/berth-hostpath.conf", include_bytes!("../../node-image/files/etc/tmpfiles.d/berth-hostpath.conf"), 0o644),
    ("/kind/setup.sh", include_bytes!("../../node-image/setup.sh"), 0o755),
    ("/kind/manifests/default-cni.yaml", include_bytes!("../../node-image/manifests/default-cni.yaml"), 0o644),
    ("/kind/manifests/default-storage.yaml", include_bytes!("../../node-image/manifests/default-storage.yaml"), 0o644),
];

/// berth's network agent: a script over the base image and kubectl, built and preloaded into
/// every node image, named in node-image/manifests/default-cni.yaml.
pub const NETD_IMAGE: &str = "berth.dev/netd:v1";
const NETD_SCRIPT: &[u8] = include_bytes!("../../node-image/netd/berth-netd");

/// The Kubernetes binaries a node image must carry.
pub const REQUIRED_BINARIES: &[&str] = &["kubeadm", "kubelet", "kubectl"];

#[derive(Debug, thiserror::Error)]
pub enum NodeImageError {
    #[error("{dir} has no {name}; --kube-bin must hold kubeadm, kubelet and kubectl built for linux")]
    MissingBinary { dir: PathBuf, name: String },
    #[error("{path} is not an image archive ({reason}); --images takes `docker save` tar files")]
    NotAnImageArchive { path: PathBuf, reason: String },
    #[error("{0}")]
    BadVersion(String),
    #[error("Kubernetes {version} was not found at {url} (HTTP {status}); check --kube-version or --kube-base-url")]
    UnknownVersion { version: String, url: String, status: u16 },
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("base image {0} is not present; build or pull it first (scripts/build-test-node-image makes one)")]
    BaseImageMissing(String),
    #[error("give either --kube-bin (local binaries) or --kube-version (download), not both and not neither")]
    SourceChoice,
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("--tag: {0}")]
    Tag(#[from] crate::image_ref::ImageRefError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

type Result<T, E = NodeImageError> = std::result::Result<T, E>;

/// What to build from.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub base_image: String,
    pub kube_bin: Option<PathBuf>,
    pub kube_version: Option<String>,
    pub kube_base_url: String,
    pub arch: String,
    pub image_dirs: Vec<PathBuf>,
    pub tag: String,
    pub labels: Vec<(String, String)>,
}

/// Where the Kubernetes binaries come from, once the flags are checked.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeSource {
    /// `--kube-bin DIR`, holding kubeadm, kubelet and kubectl.
    Local(PathBuf),
    /// `--kube-version vX.Y.Z`, downloaded.
    Download(String),
}

/// Checks the flags that need no Docker: the binaries' source, the archives, the tag. The CLI
/// runs this before it connects to Docker, so a typo is reported even where Docker is down.
pub fn check_inputs(opts: &BuildOptions) -> Result<(KubeSource, Vec<PathBuf>)> {
    ImageRef::parse(&opts.tag)?;
    let archives = collect_archives(&opts.image_dirs)?;
    let source = match (&opts.kube_bin, &opts.kube_version) {
        (Some(dir), None) => {
            check_binaries(dir)?;
            KubeSource::Local(dir.clone())
        }
        (None, Some(version)) => KubeSource::Download(parse_version(version)?),
        _ => return Err(NodeImageError::SourceChoice),
    };
    Ok((source, archives))
}

/// Builds the node image and returns its ID.
pub async fn build(docker: &Docker, opts: &BuildOptions, status: &Status) -> Result<String> {
    let step = status.step("Checking inputs");
    let (source, mut archives) = check_inputs(opts)?;
    if !docker.image_exists(&opts.base_image).await? {
        return Err(NodeImageError::BaseImageMissing(opts.base_image.clone()));
    }
    step.done();

    let download_dir = tempfile::tempdir().map_err(|e| io_err("creating a download directory", e))?;
    let bin_dir = match source {
        KubeSource::Local(dir) => dir,
        KubeSource::Download(version) => {
            let step = status.step(format!("Downloading Kubernetes {version}"));
            let fetched = download::fetch_release(&opts.kube_base_url, &version, &opts.arch, download_dir.path()).await?;
            archives.extend(fetched);
            step.done();
            download_dir.path().join("bin")
        }
    };

    let step = status.step("Building the network agent image");
    archives.push(build_netd_image(docker, &opts.base_image, &bin_dir, download_dir.path()).await?);
    step.done();

    let container = crate::ids::unique("berth-build");
    let result = build_in_container(docker, opts, &container, &bin_dir, &archives, status).await;
    // The build container is scaffolding: it goes whether the build worked or not.
    let _ = docker.remove_container(&container).await;
    result
}

/// Builds [`NETD_IMAGE`] (the base image plus kubectl and the berth-netd script) and saves it
/// as an archive in `dir` for preloading.
async fn build_netd_image(docker: &Docker, base: &str, bin_dir: &Path, dir: &Path) -> Result<PathBuf> {
    let container = crate::ids::unique("berth-build-netd");
    let own_name = format!("berth.dev/netd:{}", container.trim_start_matches("berth-build-netd-"));
    // No label marks build containers: `docker commit` would copy it into the image, and every
    // container made from that would carry it. Their names (berth-build-*) say what they are.
    let body = ContainerCreateBody { image: Some(base.to_string()), ..Default::default() };
    docker.create_container(&container, body).await?;
    let committed = async {
        let kubectl = bin_dir.join("kubectl");
        let kubectl = tokio::fs::read(&kubectl).await.map_err(|e| io_err(format!("reading {}", kubectl.display()), e))?;
        docker
            .write_files(&container, &[("/usr/local/bin/kubectl", &kubectl, 0o755), ("/usr/local/bin/berth-netd", NETD_SCRIPT, 0o755)])
            .await?;
        // A name of this build's own: two builds at once must not save each other's agent.
        let (repo, tag) = ImageRef::parse(&own_name).expect("a valid name").repo_and_tag();
        let config = bollard::models::ContainerConfig {
            entrypoint: Some(vec!["/usr/local/bin/berth-netd".into()]),
            cmd: None,
            labels: Some([("dev.berth.netd".to_string(), "true".to_string())].into()),
            ..Default::default()
        };
        docker.commit(&container, &repo, &tag, config).await?;
        Ok::<_, NodeImageError>(())
    }
    .await;
    let _ = docker.remove_container(&container).await;
    committed?;
    let saved = dir.join("berth-netd-own-name.tar");
    let path = dir.join("berth-netd.tar");
    let result = match docker.save_images_to(&[&own_name], &saved).await {
        Ok(()) => archive::retag(&saved, &path, NETD_IMAGE),
        Err(e) => Err(e.into()),
    };
    let _ = std::fs::remove_file(&saved);
    let _ = docker.remove_image(&own_name).await;
    result.map(|()| path)
}

fn io_err(context: impl Into<String>, source: std::io::Error) -> NodeImageError {
    NodeImageError::Io { context: context.into(), source }
}

fn check_binaries(dir: &Path) -> Result<()> {
    for name in REQUIRED_BINARIES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(NodeImageError::MissingBinary { dir: dir.to_path_buf(), name: name.to_string() });
        }
    }
    Ok(())
}

/// Every `*.tar` in the given directories, each checked to be an image archive.
fn collect_archives(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| io_err(format!("reading --images directory {}", dir.display()), e))?;
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "tar")).collect();
        paths.sort();
        for path in paths {
            check_image_archive(&path)?;
            out.push(path);
        }
    }
    Ok(out)
}

async fn build_in_container(
    docker: &Docker,
    opts: &BuildOptions,
    container: &str,
    bin_dir: &Path,
    archives: &[PathBuf],
    status: &Status,
) -> Result<String> {
    let step = status.step("Starting build container");
    let body = ContainerCreateBody {
        image: Some(opts.base_image.clone()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        ..Default::default()
    };
    docker.create_container(container, body).await?;
    docker.start_container(container).await?;
    step.done();

    let step = status.step("Installing Kubernetes binaries and node files");
    let mut files: Vec<(String, Vec<u8>, u32)> = NODE_FILES.iter().map(|(p, c, m)| (p.to_string(), c.to_vec(), *m)).collect();
    for name in REQUIRED_BINARIES {
        let path = bin_dir.join(name);
        let bytes = tokio::fs::read(&path).await.map_err(|e| io_err(format!("reading {}", path.display()), e))?;
        files.push((format!("/usr/bin/{name}"), bytes, 0o755));
    }
    let refs: Vec<(&str, &[u8], u32)> = files.iter().map(|(p, c, m)| (p.as_str(), c.as_slice(), *m)).collect();
    docker.write_files(container, &refs).await?;
    let version = docker.exec_ok(container, &["kubeadm", "version", "-o", "short"]).await?.trim().to_string();
    parse_version(&version)?;
    docker.exec_ok(container, &["/kind/setup.sh", &version]).await?;
    let pause = pause_image(docker, container, &version).await?;
    docker.exec_ok(container, &["sed", "-i", &format!("s#@PAUSE_IMAGE@#{pause}#"), "/etc/containerd/config.toml"]).await?;
    step.done();

    if !archives.is_empty() {
        preload_images(docker, container, archives, status).await?;
    }

    let step = status.step(format!("Committing {}", opts.tag));
    docker.exec_ok(container, &["sh", "-c", "rm -rf /kind/setup.sh /kind/images /tmp/* /var/run/containerd /var/log/*.log"]).await?;
    let id = commit(docker, container, opts, &version).await?;
    step.done();
    status.info(format!("Built node image {} (Kubernetes {version})", opts.tag));
    Ok(id)
}

/// The sandbox image this kubeadm version wants; containerd must use the same one.
async fn pause_image(docker: &Docker, container: &str, version: &str) -> Result<String> {
    let list = docker.exec_ok(container, &["kubeadm", "config", "images", "list", "--kubernetes-version", version]).await?;
    list.lines()
        .map(str::trim)
        .find(|l| l.contains("/pause:"))
        .map(str::to_string)
        .ok_or_else(|| NodeImageError::BadVersion(format!("kubeadm {version} names no pause image")))
}

async fn preload_images(docker: &Docker, container: &str, archives: &[PathBuf], status: &Status) -> Result<()> {
    let step = status.step(format!("Preloading {} images into containerd", archives.len()));
    docker.exec_detached(container, &["sh", "-c", "containerd >/tmp/containerd.log 2>&1"]).await?;
    wait_for_containerd(docker, container).await?;
    for (i, path) in archives.iter().enumerate() {
        let name = format!("{i}.tar");
        step.set_detail(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        docker.upload_file(container, "/kind/images", &name, path).await?;
        // --no-unpack: the build container's rootfs is overlayfs, and containerd's overlayfs
        // snapshotter cannot unpack onto it. CRI unpacks each image on first use in the node.
        let target = format!("/kind/images/{name}");
        docker.exec_ok(container, &["ctr", "-n", "k8s.io", "images", "import", "--no-unpack", &target]).await?;
        docker.exec_ok(container, &["rm", "-f", &target]).await?;
    }
    // Release tarballs name images with an -amd64 suffix; kubeadm asks for the plain name.
    docker
        .exec_ok(
            container,
            &[
                "sh",
                "-c",
                "ctr -n k8s.io images ls -q | grep -E -- '-(amd64|arm64):' | while read -r i; do \
               ctr -n k8s.io images tag \"$i\" \"$(echo \"$i\" | sed -E 's/-(amd64|arm64):/:/')\" >/dev/null 2>&1 || true; done",
            ],
        )
        .await?;
    let listed = docker.exec_ok(container, &["ctr", "-n", "k8s.io", "images", "ls", "-q"]).await?;
    tracing::info!("images in the node image:\n{listed}");
    // Stop containerd cleanly so its metadata database is consistent in the committed layer.
    docker
        .exec_ok(
            container,
            &["sh", "-c", "pkill containerd; for i in $(seq 50); do pgrep containerd >/dev/null || exit 0; sleep 0.1; done; exit 1"],
        )
        .await?;
    move_content_store_out_of_var(docker, container).await?;
    step.done();
    Ok(())
}

/// Where a berth node image keeps containerd's content store (the preloaded images' blobs).
pub const CONTENT_STORE_DIR: &str = "/kind/containerd-content";

/// Nodes mount a fresh volume on /var, and Docker seeds each one with a copy of the image's
/// /var: with the preloaded images' blobs there, every node would copy (on create) and delete
/// (on delete) hundreds of megabytes. The blobs only need a filesystem to be read from, unlike
/// the snapshots unpacked from them, so they stay in the image's own layer, read in place and
/// shared by every node, and /var keeps a symlink to them. Blobs a node adds later (loaded
/// images) land in the node's writable layer and go with it.
async fn move_content_store_out_of_var(docker: &Docker, container: &str) -> Result<()> {
    let script = format!(
        "set -e; c=/var/lib/containerd/io.containerd.content.v1.content; \
         [ -L $c ] || {{ mkdir -p $c; mv $c {CONTENT_STORE_DIR}; ln -s {CONTENT_STORE_DIR} $c; }}"
    );
    docker.exec_ok(container, &["sh", "-c", &script]).await?;
    Ok(())
}

async fn wait_for_containerd(docker: &Docker, container: &str) -> Result<()> {
    for _ in 0..100 {
        if docker.exec(container, &["ctr", "version"]).await?.code == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = docker.exec(container, &["tail", "-20", "/tmp/containerd.log"]).await?.stdout;
    Err(RuntimeError::Other(format!("containerd did not start in the build container:\n{log}")).into())
}

async fn commit(docker: &Docker, container: &str, opts: &BuildOptions, version: &str) -> Result<String> {
    let (repo, tag) = ImageRef::parse(&opts.tag)?.repo_and_tag();
    let mut labels: std::collections::HashMap<String, String> = opts.labels.iter().cloned().collect();
    labels.insert("dev.berth.node-image".into(), "true".into());
    labels.insert("dev.berth.kubernetes-version".into(), version.to_string());
    let config = bollard::models::ContainerConfig {
        entrypoint: Some(vec!["/usr/local/bin/entrypoint".into(), "/sbin/init".into()]),
        cmd: None,
        env: Some(vec!["container=docker".into(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]),
        // systemd shuts down cleanly on SIGRTMIN+3, not on SIGTERM.
        stop_signal: Some("SIGRTMIN+3".into()),
        labels: Some(labels),
        ..Default::default()
    };
    Ok(docker.commit(container, &repo, &tag, config).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cni_manifest_names_the_agent_image_we_build() {
        let manifest = NODE_FILES.iter().find(|(p, _, _)| p.ends_with("default-cni.yaml")).unwrap();
        assert!(std::str::from_utf8(manifest.1).unwrap().contains(&format!("image: {NETD_IMAGE}")));
    }

    #[test]
    fn node_files_are_embedded() {
        let entry = NODE_FILES.iter().find(|(p, _, _)| *p == "/usr/local/bin/entrypoint").unwrap();
        assert!(std::str::from_utf8(entry.1).unwrap().contains("exec \"$@\""));
    }
}
