//! The seam between cluster logic and Docker: what creating, listing and deleting a cluster
//! asks of the container runtime, as a trait. [`Docker`](super::Docker) implements it for real;
//! the in-memory fake in `fake.rs` lets unit tests run planning, provisioning and roll-back in
//! milliseconds, without containers.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};

use super::{ExecOutput, ProbeOutcome, RuntimeError};
use crate::config::Cidr;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What the cluster module needs from a container runtime.
#[async_trait]
pub trait Runtime: Send + Sync {
    async fn image_exists(&self, image: &str) -> Result<bool>;
    /// The `repo@digest` names recorded for a local image.
    async fn repo_digests(&self, image: &str) -> Result<Vec<String>>;
    /// A local image's labels.
    async fn image_labels(&self, image: &str) -> Result<std::collections::HashMap<String, String>>;
    /// Whether a node's containerd holds an image of this name.
    async fn node_has_image(&self, node: &str, image: &str) -> Result<bool>;
    /// Makes sure the shared network exists; its subnet for pinned addresses, if it has one.
    /// `image` is any local image (the network lease's container is made from it).
    async fn ensure_network(&self, name: &str, image: &str) -> Result<Option<Cidr>>;
    async fn used_addresses(&self, network: &str) -> Result<BTreeSet<Ipv4Addr>>;
    async fn create_container(&self, name: &str, body: ContainerCreateBody) -> Result<String>;
    async fn start_container(&self, name: &str) -> Result<()>;
    async fn stop_container(&self, name: &str, timeout_secs: i32) -> Result<()>;
    /// Sends `signal` (e.g. `SIGUSR2`) to a container's main process.
    async fn signal(&self, name: &str, signal: &str) -> Result<()>;
    /// Removes a container and its anonymous volumes; an absent one is not an error.
    async fn remove_container(&self, name: &str) -> Result<()>;
    /// The same removal as a future that owns what it needs: it can run after the caller's
    /// borrow of the runtime ends (a lease dropped without being released).
    fn removal(&self, name: &str) -> futures_util::future::BoxFuture<'static, Result<()>>;
    /// Removes every volume carrying `label` (or `label=value`); returns how many.
    async fn remove_volumes(&self, label: &str) -> Result<usize>;
    /// Removes a volume; an absent one is not an error.
    async fn remove_volume(&self, name: &str) -> Result<()>;
    /// Creates an empty named volume with these labels.
    async fn create_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()>;
    /// Volumes carrying `label` (or `label=value`): their names and labels.
    async fn list_volumes(&self, label: &str) -> Result<Vec<(String, std::collections::HashMap<String, String>)>>;
    /// Containers (running or not) carrying `label`, or `label=value`.
    async fn list_containers(&self, label: &str) -> Result<Vec<ContainerSummary>>;
    async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse>;
    /// The host port published for `container_port` (e.g. "6443/tcp").
    async fn published_port(&self, name: &str, container_port: &str) -> Result<u16>;
    async fn container_ip(&self, name: &str, network: &str) -> Result<String>;
    /// Runs a command in a container, whatever its exit code.
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput>;
    /// Writes files into a container: (absolute path, contents, mode).
    async fn write_files(&self, container: &str, files: &[(&str, &[u8], u32)]) -> Result<()>;
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String>;
    /// Pulls `from_image` at `tag` (or digest), as a stream of progress reports.
    fn pull_progress(
        &self,
        from_image: &str,
        tag: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
    ) -> futures_util::stream::BoxStream<'_, Result<bollard::models::CreateImageInfo>>;
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

    /// Runs a command and returns its stdout; a non-zero exit is an error with its last lines.
    async fn exec_ok(&self, container: &str, cmd: &[&str]) -> Result<String> {
        self.exec(container, cmd).await?.into_stdout(container, cmd)
    }
}

#[async_trait]
impl Runtime for super::Docker {
    fn is_remote(&self) -> bool {
        super::Docker::is_remote(self)
    }
    async fn rootless(&self) -> Result<bool> {
        super::Docker::rootless(self).await
    }
    async fn image_exists(&self, image: &str) -> Result<bool> {
        super::Docker::image_exists(self, image).await
    }
    async fn repo_digests(&self, image: &str) -> Result<Vec<String>> {
        super::Docker::repo_digests(self, image).await
    }
    async fn image_labels(&self, image: &str) -> Result<std::collections::HashMap<String, String>> {
        super::Docker::image_labels(self, image).await
    }
    async fn node_has_image(&self, node: &str, image: &str) -> Result<bool> {
        super::Docker::node_has_image(self, node, image).await
    }
    async fn ensure_network(&self, name: &str, image: &str) -> Result<Option<Cidr>> {
        super::Docker::ensure_network(self, name, image).await
    }
    async fn used_addresses(&self, network: &str) -> Result<BTreeSet<Ipv4Addr>> {
        super::Docker::used_addresses(self, network).await
    }
    async fn create_container(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        super::Docker::create_container(self, name, body).await
    }
    async fn start_container(&self, name: &str) -> Result<()> {
        super::Docker::start_container(self, name).await
    }
    async fn stop_container(&self, name: &str, timeout_secs: i32) -> Result<()> {
        super::Docker::stop_container(self, name, timeout_secs).await
    }
    async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        super::Docker::signal(self, name, signal).await
    }
    async fn remove_container(&self, name: &str) -> Result<()> {
        super::Docker::remove_container(self, name).await
    }
    fn removal(&self, name: &str) -> futures_util::future::BoxFuture<'static, Result<()>> {
        let (docker, name) = (self.clone(), name.to_string());
        Box::pin(async move { docker.remove_container(&name).await })
    }
    async fn list_containers(&self, label: &str) -> Result<Vec<ContainerSummary>> {
        super::Docker::list_containers(self, label).await
    }
    async fn remove_volumes(&self, label: &str) -> Result<usize> {
        let volumes = super::Docker::list_volumes(self, label).await?;
        for (name, _) in &volumes {
            super::Docker::remove_volume(self, name).await?;
        }
        Ok(volumes.len())
    }
    async fn remove_volume(&self, name: &str) -> Result<()> {
        super::Docker::remove_volume(self, name).await
    }
    async fn create_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()> {
        super::Docker::create_volume(self, name, labels).await
    }
    async fn list_volumes(&self, label: &str) -> Result<Vec<(String, std::collections::HashMap<String, String>)>> {
        super::Docker::list_volumes(self, label).await
    }
    async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        super::Docker::inspect(self, name).await
    }
    async fn published_port(&self, name: &str, container_port: &str) -> Result<u16> {
        super::Docker::published_port(self, name, container_port).await
    }
    async fn container_ip(&self, name: &str, network: &str) -> Result<String> {
        super::Docker::container_ip(self, name, network).await
    }
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
        super::Docker::exec(self, container, cmd).await
    }
    async fn write_files(&self, container: &str, files: &[(&str, &[u8], u32)]) -> Result<()> {
        super::Docker::write_files(self, container, files).await
    }
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String> {
        super::Docker::logs_tail(self, name, lines).await
    }
    fn pull_progress(
        &self,
        from_image: &str,
        tag: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
    ) -> futures_util::stream::BoxStream<'_, Result<bollard::models::CreateImageInfo>> {
        super::Docker::pull_progress(self, from_image, tag, credentials)
    }
    async fn probe_privileged(&self, image: &str, runtime: Option<&str>, labels: &[(String, String)]) -> Result<ProbeOutcome> {
        super::Docker::probe_privileged(self, image, runtime, labels).await
    }
}
