//! `berth build node-image`: turns a base image with systemd and containerd, Kubernetes
//! binaries and image archives into a node image.
//!
//! This module owns the build container's life (create, copy in, import, commit, remove — the
//! container is removed on every path, success or not — failure and interrupt included) and
//! the checks on its inputs. The files that go into every node image live in `node-image/` at
//! the repository root and are embedded here at compile time. Where the Kubernetes binaries come
//! from: `--kube-bin` (a directory), `--kubernetes-version` (compiled from Go modules with the
//! local Go: `kubernetes.rs` over `go.rs`), or `--kube-version` (release downloads:
//! `download.rs`).

mod archive;
mod download;
pub mod go;
mod kubernetes;

use std::path::{Path, PathBuf};

use crate::image_ref::ImageRef;
use crate::runtime::{build_body, ImageConfig, Runtime, RuntimeError};
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
    ("/etc/crictl.yaml", include_bytes!("../../node-image/files/etc/crictl.yaml"), 0o644),
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
    #[error("give one of --kubernetes-version (build from Go modules), --kube-bin (local binaries) or --kube-version (download)")]
    SourceChoice,
    #[error(
        "--kubernetes-version needs Go ({go}: {reason}); install Go 1.26 or later (https://go.dev/doc/install), or name it with BERTH_GO"
    )]
    GoMissing { go: String, reason: String },
    #[error("{module} {version} is not served by the Go module proxy (`go env GOPROXY`): {reason}")]
    UnservedVersion { module: String, version: String, reason: String },
    #[error("{what} failed; go's last lines:\n{tail}")]
    GoFailed { what: String, tail: String },
    #[error("kubeadm {version} names the image {image}, which berth does not know how to build")]
    UnknownComponent { version: String, image: String },
    #[error("building pause needs a C compiler ({cc}: {reason}); install one with static libc (Debian: apt-get install gcc libc6-dev), or name it with CC")]
    NoCCompiler { cc: String, reason: String },
    #[error("compiling {what} failed:\n{tail}")]
    CompilerFailed { what: String, tail: String },
    #[error("--kubernetes-version builds for this machine ({host}); --arch {arch} needs --kube-version (release downloads)")]
    CrossBuild { host: String, arch: String },
    #[error("the build was interrupted ({0}); the build containers and temporary images were removed and no image was tagged")]
    Interrupted(&'static str),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("containerd did not start in the build container:\n{0}")]
    ContainerdDidNotStart(String),
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
    /// Build Kubernetes from its Go modules at this version.
    pub kubernetes_version: Option<String>,
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
    /// `--kubernetes-version vX.Y.Z`, compiled from Go modules.
    Modules(String),
}

/// Checks the flags that need no Docker: the binaries' source, the archives, the tag. The CLI
/// runs this before it connects to Docker, so a typo is reported even where Docker is down.
pub fn check_inputs(opts: &BuildOptions) -> Result<(KubeSource, Vec<PathBuf>)> {
    ImageRef::parse(&opts.tag)?;
    let archives = collect_archives(&opts.image_dirs)?;
    let source = match (&opts.kubernetes_version, &opts.kube_bin, &opts.kube_version) {
        (None, Some(dir), None) => {
            check_binaries(dir)?;
            KubeSource::Local(dir.clone())
        }
        (None, None, Some(version)) => KubeSource::Download(parse_version(version)?),
        (Some(version), None, None) => {
            let host = host_arch();
            if opts.arch != host {
                return Err(NodeImageError::CrossBuild { host: host.into(), arch: opts.arch.clone() });
            }
            KubeSource::Modules(parse_version(version)?)
        }
        _ => return Err(NodeImageError::SourceChoice),
    };
    Ok((source, archives))
}

/// Go's name for this machine's architecture, which builds from modules target.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the node image and returns its ID. SIGINT, SIGTERM or SIGHUP stops it; then, as on
/// failure, the build's containers and temporary images are removed and nothing is tagged.
pub async fn build(docker: &dyn Runtime, opts: &BuildOptions, status: &Status) -> Result<String> {
    build_until(docker, opts, status, crate::interrupt::interrupted()).await
}

async fn build_until(
    docker: &dyn Runtime,
    opts: &BuildOptions,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<String> {
    let scaffolding = Scaffolding::default();
    let result = tokio::select! {
        biased;
        which = interrupt => Err(NodeImageError::Interrupted(which)),
        r = build_steps(docker, opts, status, &scaffolding) => r,
    };
    let _shield = crate::interrupt::Shielded::new();
    scaffolding.remove(docker).await;
    result
}

/// What a build makes only to throw away: containers and images under names of its own.
/// Removed whatever the build's outcome, interrupts included.
#[derive(Default)]
struct Scaffolding {
    containers: std::sync::Mutex<Vec<String>>,
    images: std::sync::Mutex<Vec<String>>,
}

impl Scaffolding {
    fn container(&self, name: &str) {
        self.containers.lock().expect("not poisoned").push(name.to_string());
    }

    fn image(&self, name: &str) {
        self.images.lock().expect("not poisoned").push(name.to_string());
    }

    async fn remove(&self, docker: &dyn Runtime) {
        let containers = std::mem::take(&mut *self.containers.lock().expect("not poisoned"));
        for c in containers {
            if let Err(e) = docker.remove_container(&c).await {
                tracing::warn!("removing build container {c}: {e}");
            }
        }
        let images = std::mem::take(&mut *self.images.lock().expect("not poisoned"));
        for i in images {
            if let Err(e) = docker.remove_image(&i).await {
                tracing::debug!("removing temporary image {i}: {e}");
            }
        }
    }
}

async fn build_steps(docker: &dyn Runtime, opts: &BuildOptions, status: &Status, scaffolding: &Scaffolding) -> Result<String> {
    let step = status.step("Checking inputs");
    let (source, mut archives) = check_inputs(opts)?;
    if !docker.image_exists(&opts.base_image).await? {
        return Err(NodeImageError::BaseImageMissing(opts.base_image.clone()));
    }
    let go = match &source {
        KubeSource::Modules(_) => Some(go::Go::find().await?),
        _ => None,
    };
    step.done();

    let work_dir = tempfile::tempdir().map_err(|e| io_err("creating a work directory", e))?;
    let mut over_base = vec![netd_image()];
    let bin_dir = match source {
        KubeSource::Local(dir) => dir,
        KubeSource::Download(version) => {
            let step = status.step(format!("Downloading Kubernetes {version}"));
            let fetched = download::fetch_release(&opts.kube_base_url, &version, &opts.arch, work_dir.path()).await?;
            archives.extend(fetched);
            step.done();
            work_dir.path().join("bin")
        }
        KubeSource::Modules(version) => {
            let go = go.expect("found above");
            let built = kubernetes::build(&go, &version, status).await?;
            archives.extend(built.archives);
            over_base.push(OverBase {
                name: built.kube_proxy,
                files: vec![("/usr/local/bin/kube-proxy".into(), built.bin_dir.join("kube-proxy"))],
                entrypoint: None,
            });
            built.bin_dir
        }
    };

    let step =
        status.step(format!("Building {} over the base image", over_base.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")));
    archives.push(build_over_base(docker, &opts.base_image, &bin_dir, &over_base, work_dir.path(), scaffolding).await?);
    step.done();

    let container = crate::ids::unique("berth-build");
    scaffolding.container(&container);
    build_in_container(docker, opts, &container, &bin_dir, &archives, status).await
}

/// An image made from the base image plus files: (path in the image, file on the host).
struct OverBase {
    name: String,
    files: Vec<(String, PathBuf)>,
    entrypoint: Option<Vec<String>>,
}

/// berth's network agent: the base image plus kubectl and the berth-netd script.
fn netd_image() -> OverBase {
    OverBase {
        name: NETD_IMAGE.into(),
        files: vec![("/usr/local/bin/kubectl".into(), PathBuf::from("kubectl"))],
        entrypoint: Some(vec!["/usr/local/bin/berth-netd".into()]),
    }
}

/// Builds each image of `images` over `base` (files relative to `bin_dir` unless absolute;
/// [`NETD_IMAGE`] also gets the berth-netd script) and saves them all in one archive in `dir`,
/// so the base's layers are in it once.
async fn build_over_base(
    docker: &dyn Runtime,
    base: &str,
    bin_dir: &Path,
    images: &[OverBase],
    dir: &Path,
    scaffolding: &Scaffolding,
) -> Result<PathBuf> {
    let mut renames = Vec::new();
    for image in images {
        let container = crate::ids::unique("berth-build-image");
        // Names of this build's own: two builds at once must not save each other's images.
        let own_name = format!("berth.dev/build-image:{}", container.trim_start_matches("berth-build-image-"));
        // Their names (berth-build-*) say what build containers are; no label may (`build_body`).
        let body = build_body(base, None);
        scaffolding.container(&container);
        docker.create_container(&container, body).await?;
        let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
        for (at, from) in &image.files {
            let from = bin_dir.join(from);
            let bytes = tokio::fs::read(&from).await.map_err(|e| io_err(format!("reading {}", from.display()), e))?;
            files.push((at.clone(), bytes, 0o755));
        }
        if image.name == NETD_IMAGE {
            files.push(("/usr/local/bin/berth-netd".into(), NETD_SCRIPT.to_vec(), 0o755));
        }
        let refs: Vec<(&str, &[u8], u32)> = files.iter().map(|(p, c, m)| (p.as_str(), c.as_slice(), *m)).collect();
        docker.write_files(&container, &refs).await?;
        let (repo, tag) = ImageRef::parse(&own_name).expect("a valid name").repo_and_tag();
        let config = ImageConfig::with_entrypoint(image.entrypoint.clone());
        scaffolding.image(&own_name);
        docker.commit(&container, &repo, &tag, config).await?;
        docker.remove_container(&container).await?;
        renames.push((own_name, image.name.clone()));
    }
    let saved = dir.join("over-base-own-names.tar");
    let path = dir.join("over-base.tar");
    let own: Vec<&str> = renames.iter().map(|(own, _)| own.as_str()).collect();
    docker.save_images_to(&own, &saved).await?;
    let pairs: Vec<(&str, &str)> = renames.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let result = archive::retag(&saved, &path, &pairs);
    let _ = std::fs::remove_file(&saved);
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
    docker: &dyn Runtime,
    opts: &BuildOptions,
    container: &str,
    bin_dir: &Path,
    archives: &[PathBuf],
    status: &Status,
) -> Result<String> {
    let step = status.step("Starting build container");
    let body = build_body(&opts.base_image, Some(vec!["sleep".into(), "infinity".into()]));
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
async fn pause_image(docker: &dyn Runtime, container: &str, version: &str) -> Result<String> {
    let list = docker.exec_ok(container, &["kubeadm", "config", "images", "list", "--kubernetes-version", version]).await?;
    list.lines()
        .map(str::trim)
        .find(|l| l.contains("/pause:"))
        .map(str::to_string)
        .ok_or_else(|| NodeImageError::BadVersion(format!("kubeadm {version} names no pause image")))
}

async fn preload_images(docker: &dyn Runtime, container: &str, archives: &[PathBuf], status: &Status) -> Result<()> {
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
async fn move_content_store_out_of_var(docker: &dyn Runtime, container: &str) -> Result<()> {
    let script = format!(
        "set -e; c=/var/lib/containerd/io.containerd.content.v1.content; \
         [ -L $c ] || {{ mkdir -p $c; mv $c {CONTENT_STORE_DIR}; ln -s {CONTENT_STORE_DIR} $c; }}"
    );
    docker.exec_ok(container, &["sh", "-c", &script]).await?;
    Ok(())
}

async fn wait_for_containerd(docker: &dyn Runtime, container: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    match crate::containerd::wait_until_answers(docker, container, "containerd answered in the build container", deadline).await {
        Ok(()) => Ok(()),
        Err(crate::wait::Ended::Failed(e)) => Err(e.into()),
        Err(crate::wait::Ended::Timeout(_)) => {
            let log = docker.exec(container, &["tail", "-20", "/tmp/containerd.log"]).await?.stdout;
            Err(NodeImageError::ContainerdDidNotStart(log))
        }
    }
}

async fn commit(docker: &dyn Runtime, container: &str, opts: &BuildOptions, version: &str) -> Result<String> {
    let (repo, tag) = ImageRef::parse(&opts.tag)?.repo_and_tag();
    let mut labels: std::collections::HashMap<String, String> = opts.labels.iter().cloned().collect();
    labels.insert("dev.berth.node-image".into(), "true".into());
    labels.insert("dev.berth.kubernetes-version".into(), version.to_string());
    let config = ImageConfig::with_entrypoint(Some(vec!["/usr/local/bin/entrypoint".into(), "/sbin/init".into()]))
        .env(vec!["container=docker".into(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()])
        // systemd shuts down cleanly on SIGRTMIN+3, not on SIGTERM.
        .stop_signal("SIGRTMIN+3")
        .labels(labels);
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
