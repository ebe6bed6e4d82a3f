//! The seam between berth's operations and the container engine: everything create, start and
//! stop, snapshots, load, logs, load balancers and node-image builds ask of it, as a trait.
//! [`Docker`](super::Docker) implements it against the daemon; the in-memory fake in `fake.rs`
//! lets unit tests run those operations, their failures and roll-back in milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::model::{ContainerBody, ContainerDetails, ContainerSummary, Credentials, ImageConfig, ImageSummary, PullProgress};
use super::{ExecOutput, Lease, ProbeOutcome, RuntimeError};
use crate::config::Cidr;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What a command run in a container reads as its stdin.
pub type Input = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// What berth needs from a container engine.
#[async_trait]
pub trait Runtime: Send + Sync {
    // Images.
    async fn image_exists(&self, image: &str) -> Result<bool>;
    /// A local image's ID (the digest of its config), or None if it is not present.
    async fn image_id(&self, image: &str) -> Result<Option<String>>;
    /// A local image's size in bytes.
    async fn image_size(&self, image: &str) -> Result<i64>;
    /// The `repo@digest` names recorded for a local image.
    async fn repo_digests(&self, image: &str) -> Result<Vec<String>>;
    /// The `repo:tag` names the engine holds a local image under (Podman's `localhost/web:1`
    /// for what a user built and calls `web:1`).
    async fn repo_tags(&self, image: &str) -> Result<Vec<String>>;
    /// A local image's labels.
    async fn image_labels(&self, image: &str) -> Result<HashMap<String, String>>;
    /// Local images carrying `label` (or `label=value`).
    async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>>;
    /// Removes an image name (the image itself goes when no other name holds it).
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Commits a container's filesystem as image `repo:tag` with `config`; returns the image ID.
    async fn commit(&self, container: &str, repo: &str, tag: &str, config: ImageConfig) -> Result<String>;
    /// Writes `images` as one `docker save` archive to `path`.
    async fn save_images_to(&self, images: &[&str], path: &std::path::Path) -> Result<()>;
    /// Pulls `from_image` at `tag` (or digest), as a stream of progress reports.
    fn pull_progress(&self, from_image: &str, tag: &str, credentials: Option<Credentials>) -> BoxStream<'_, Result<PullProgress>>;

    // Networks.
    /// Makes sure the shared network exists; its subnet for pinned addresses, if it has one.
    /// Asked under berth's network lease (`held`): then no delete removes the network before
    /// the caller's containers are on it.
    async fn ensure_network(&self, name: &str, held: &Lease) -> Result<Option<Cidr>>;
    /// Removes the network when nothing uses it: no container on it, running or stopped, and,
    /// on berth's network, no snapshot keeping addresses in its subnet. Under the network
    /// lease. Returns whether it was removed.
    async fn remove_network_if_unused(&self, name: &str, held: &Lease) -> Result<bool>;
    async fn used_addresses(&self, network: &str) -> Result<BTreeSet<Ipv4Addr>>;
    /// Which container holds each address on `network` (running, or pinned by a stopped one).
    async fn address_holders(&self, network: &str) -> Result<BTreeMap<Ipv4Addr, String>>;

    // Containers.
    async fn create_container(&self, name: &str, body: ContainerBody) -> Result<String>;
    async fn start_container(&self, name: &str) -> Result<()>;
    async fn stop_container(&self, name: &str, timeout_secs: i32) -> Result<()>;
    /// Sends `signal` (e.g. `SIGUSR2`) to a container's main process.
    async fn signal(&self, name: &str, signal: &str) -> Result<()>;
    /// Waits for a container to exit and returns its exit code.
    async fn wait_exit(&self, name: &str) -> Result<i64>;
    /// Removes a container and its anonymous volumes; an absent one is not an error.
    async fn remove_container(&self, name: &str) -> Result<()>;
    /// The same removal as a future that owns what it needs: it can run after the caller's
    /// borrow of the runtime ends (a lease dropped without being released).
    fn removal(&self, name: &str) -> BoxFuture<'static, Result<()>>;
    /// Containers (running or not) carrying `label`, or `label=value`.
    async fn list_containers(&self, label: &str) -> Result<Vec<ContainerSummary>>;
    async fn inspect(&self, name: &str) -> Result<ContainerDetails>;
    /// The host port published for `container_port` (e.g. "6443/tcp").
    async fn published_port(&self, name: &str, container_port: &str) -> Result<u16>;
    async fn container_ip(&self, name: &str, network: &str) -> Result<String>;
    /// The container's own log (its console), last `lines` lines.
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String>;

    // Volumes.
    /// Creates an empty named volume with these labels.
    async fn create_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()>;
    async fn volume_exists(&self, name: &str) -> Result<bool>;
    /// Volumes carrying `label` (or `label=value`): their names and labels.
    async fn list_volumes(&self, label: &str) -> Result<Vec<(String, HashMap<String, String>)>>;
    /// Removes a volume; an absent one is not an error.
    async fn remove_volume(&self, name: &str) -> Result<()>;
    /// Removes a volume if it is there; true if this call removed it. Of callers racing for
    /// one, exactly one gets true.
    async fn remove_volume_if_there(&self, name: &str) -> Result<bool>;
    /// Removes every volume carrying `label` (or `label=value`); returns how many.
    async fn remove_volumes(&self, label: &str) -> Result<usize>;

    // Inside containers.
    /// Runs a command in a container, whatever its exit code.
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput>;
    /// Like [`exec`](Self::exec), streaming `input` to the command's stdin (then closing it).
    async fn exec_with_input(&self, container: &str, cmd: &[&str], input: Option<Input>) -> Result<ExecOutput>;
    /// Starts a command in the background and returns at once.
    async fn exec_detached(&self, container: &str, cmd: &[&str]) -> Result<()>;
    /// Writes files into a container: (absolute path, contents, mode).
    async fn write_files(&self, container: &str, files: &[(&str, &[u8], u32)]) -> Result<()>;
    /// Extracts a tar stream into `dir` in the container.
    async fn upload_tar(&self, container: &str, dir: &str, tar: BoxStream<'static, std::io::Result<bytes::Bytes>>) -> Result<()>;
    /// Streams a host file into `dir/name` in the container.
    async fn upload_file(&self, container: &str, dir: &str, name: &str, path: &std::path::Path) -> Result<()>;
    /// A path of the container as a tar stream.
    fn download_tar(&self, container: &str, path: &str) -> BoxStream<'_, Result<bytes::Bytes>>;
    /// One file of a container, running or stopped.
    async fn read_file(&self, container: &str, path: &str) -> Result<Vec<u8>>;

    // The daemon.
    /// Whether a privileged container from `image` can start here.
    async fn probe_privileged(&self, image: &str, runtime: Option<&str>, labels: &[(String, String)]) -> Result<ProbeOutcome>;
    /// Whether the daemon runs on another machine than berth.
    fn is_remote(&self) -> bool {
        false
    }
    /// Whether the daemon runs rootless.
    async fn rootless(&self) -> Result<bool> {
        Ok(false)
    }
    /// Which engine answers (Docker or Podman).
    fn provider(&self) -> super::endpoint::Provider {
        super::endpoint::Provider::Docker
    }

    /// Runs a command and returns its stdout; a non-zero exit is an error with its last lines.
    async fn exec_ok(&self, container: &str, cmd: &[&str]) -> Result<String> {
        self.exec(container, cmd).await?.into_stdout(container, cmd)
    }
}
