//! Docker API calls, through bollard. The API version is negotiated with the daemon (Docker
//! 20.10 speaks 1.41), never assumed.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};

use super::endpoint::Provider;
use super::model::{ContainerBody, ContainerDetails, ContainerSummary, Credentials, ImageConfig, ImageSummary, PullProgress};
use super::Runtime;
use tokio::io::AsyncWriteExt;

/// Marks a network berth created with a subnet of its own, where nodes can be pinned.
const LABEL_SUBNET: &str = "dev.berth.subnet";

/// How long berth waits for the daemon to answer at all before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach {engine} at {host}: {reason} ({hint})")]
    Unreachable { engine: &'static str, host: String, reason: String, hint: &'static str },
    /// No engine endpoint could be decided on (a bad context, an unknown provider, no Podman socket).
    #[error(transparent)]
    Endpoint(#[from] super::endpoint::EndpointError),
    #[error("{context}: {source}")]
    Api { context: String, source: bollard::errors::Error },
    #[error("a container named {0} already exists; delete that cluster first or choose another name")]
    NameTaken(String),
    #[error("`{command}` failed in {container} (exit code {code}):\n{tail}")]
    ExecFailed { container: String, command: String, code: i64, tail: String },
    #[error("{what} is held by berth process {holder} (container {container}); waited {waited:?} for it. If that process is gone, remove the container: docker rm {container}")]
    LeaseHeld { what: String, holder: String, container: String, waited: std::time::Duration },
    #[error("no free private /16 or /20 subnet left for berth's network {0}; remove Docker networks nothing uses (docker network prune)")]
    NoFreeSubnet(String),
    #[error("{0} disappeared while berth was using it (removed by someone else?)")]
    Vanished(String),
    #[error("{container} publishes no host port for {port}")]
    NotPublished { container: String, port: String },
    #[error("{container} has no address on network {network}")]
    NoAddress { container: String, network: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// What the in-memory fake runtime of the unit tests reports.
    #[cfg(test)]
    #[error("{0}")]
    Fake(String),
}

impl RuntimeError {
    fn api(context: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> RuntimeError {
        let context = context.into();
        move |source| RuntimeError::Api { context, source }
    }

    /// The HTTP status Docker answered with, if this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            RuntimeError::Api { source: bollard::errors::Error::DockerResponseServerError { status_code, .. }, .. } => Some(*status_code),
            _ => None,
        }
    }
}

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The output of a command run in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    /// The last `n` lines of stdout and stderr together: what a user needs to see of a failure.
    pub fn tail(&self, n: usize) -> String {
        let all: Vec<&str> = self.stdout.lines().chain(self.stderr.lines()).filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(n)..].join("\n")
    }

    /// Its stdout if the command exited 0; else an error with its last lines.
    pub fn into_stdout(self, container: &str, cmd: &[&str]) -> Result<String> {
        if self.code != 0 {
            let tail = self.tail(20);
            return Err(RuntimeError::ExecFailed { container: container.to_string(), command: cmd.join(" "), code: self.code, tail });
        }
        Ok(self.stdout)
    }
}

/// A connected Docker daemon.
#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    host: String,
    remote: bool,
    engine: Provider,
    /// Whether the engine runs rootless, asked once: it does not change while berth runs.
    rootless: tokio::sync::OnceCell<bool>,
}

/// Docker or Podman, from the component list `/version` returns ("Podman Engine").
async fn engine_of(api: &bollard::Docker) -> Option<Provider> {
    let version = api.version().await.ok()?;
    let podman = version.components.unwrap_or_default().iter().any(|c| c.name.starts_with("Podman"));
    Some(if podman { Provider::Podman } else { Provider::Docker })
}

impl Docker {
    /// Connects to `DOCKER_HOST` (or the default socket) and negotiates the API version.
    pub async fn connect() -> Result<Docker> {
        let env = super::endpoint::Env::current();
        let endpoint = super::endpoint::resolve(&env)?;
        let host = endpoint.host.clone();
        let hint = super::endpoint::start_hint(endpoint.provider, env.uid);
        let unreachable = |reason: String| RuntimeError::Unreachable {
            engine: endpoint.provider.display_name(),
            host: format!("{host} ({})", endpoint.source),
            reason,
            hint,
        };
        let api = match &endpoint.tls {
            Some(tls) => bollard::Docker::connect_with_ssl(&host, &tls.key, &tls.cert, &tls.ca, 120, bollard::API_DEFAULT_VERSION),
            None if host.starts_with("ssh://") => {
                return Err(unreachable("ssh:// endpoints are not supported; forward the daemon's socket or use tcp:// with TLS".into()))
            }
            None => bollard::Docker::connect_with_host(&host),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let api = tokio::time::timeout(CONNECT_TIMEOUT, api.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        // Long operations (image commits, large uploads) must not hit bollard's 2-minute default.
        let api = api.with_timeout(Duration::from_secs(3600));
        let engine = engine_of(&api).await.unwrap_or(endpoint.provider);
        tracing::debug!("connected to {} at {host} ({})", engine.display_name(), endpoint.source);
        Ok(Docker { api, host, remote: endpoint.is_remote(), engine, rootless: tokio::sync::OnceCell::new() })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs a request again while Podman holds a container in its "stopped" state: for a moment
    /// between a container's exit and Podman's clean-up of it, Podman reports a state the Docker
    /// API has no name for (bollard's model cannot read the answer) and refuses to remove the
    /// container ("container state improper"). Both pass within a second; Docker's answers are
    /// taken as they are.
    async fn past_podman_stopped<T, F, Fut>(&self, request: F) -> std::result::Result<T, bollard::errors::Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    {
        use bollard::errors::Error;
        let mut tries = 0;
        loop {
            match request().await {
                Err(
                    Error::JsonDataError { .. } | Error::JsonSerdeError { .. } | Error::DockerResponseServerError { status_code: 500, .. },
                ) if self.engine == Provider::Podman && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                answer => return answer,
            }
        }
    }

    /// Every container on `network`, running or not: a stopped one keeps its place (and its
    /// pinned address) for its next start.
    async fn containers_on(&self, network: &str) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([("network".to_string(), vec![network.to_string()])]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = || self.api.list_containers(Some(opts.clone()));
        self.past_podman_stopped(list).await.map_err(RuntimeError::api("listing containers"))
    }

    /// The addresses snapshots keep on berth's network for their nodes (a restore puts them back
    /// there).
    async fn reserved_addresses(&self) -> Result<Vec<std::net::Ipv4Addr>> {
        let images = self.list_images(super::LABEL_RESERVED_ADDRESS).await?;
        Ok(images.iter().filter_map(|i| i.labels.get(super::LABEL_RESERVED_ADDRESS)?.parse().ok()).collect())
    }

    /// Subnets of every network the engine knows, and (for an engine on this host) of the host's
    /// routes: a new network overlaps none of them.
    async fn used_subnets(&self) -> Result<Vec<crate::config::Cidr>> {
        let routed = match self.remote {
            false => super::network::routed_subnets(&std::fs::read_to_string("/proc/net/route").unwrap_or_default()),
            true => Vec::new(),
        };
        let nets = self
            .api
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(RuntimeError::api("listing networks"))?;
        Ok(nets
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet.and_then(|s| crate::config::Cidr::parse(&s).ok()))
            .chain(routed)
            .collect())
    }

    /// The engine's whole answer for one container.
    async fn inspect_engine(&self, name: &str) -> Result<bollard::models::ContainerInspectResponse> {
        let inspect = || self.api.inspect_container(name, None::<InspectContainerOptions>);
        self.past_podman_stopped(inspect).await.map_err(RuntimeError::api(format!("inspecting container {name}")))
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let nets = self
            .api
            .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
            .await
            .map_err(RuntimeError::api("listing networks"))?;
        // The name filter matches substrings; keep exact names only.
        Ok(nets.into_iter().filter(|n| n.name.as_deref() == Some(name)).filter_map(|n| n.id).collect())
    }
}

#[async_trait]
impl Runtime for Docker {
    /// The daemon runs on another machine (see [`super::endpoint::Endpoint::is_remote`]).
    fn is_remote(&self) -> bool {
        self.remote
    }

    fn provider(&self) -> Provider {
        self.engine
    }

    fn removal(&self, name: &str) -> futures_util::future::BoxFuture<'static, Result<()>> {
        let (docker, name) = (self.clone(), name.to_string());
        Box::pin(async move { docker.remove_container(&name).await })
    }

    async fn remove_volumes(&self, label: &str) -> Result<usize> {
        let volumes = self.list_volumes(label).await?;
        for (name, _) in &volumes {
            self.remove_volume(name).await?;
        }
        Ok(volumes.len())
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.api.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(RuntimeError::api(format!("inspecting image {image}"))(e)),
        }
    }

    /// A local image's size in bytes.
    async fn image_size(&self, image: &str) -> Result<i64> {
        let info = self.api.inspect_image(image).await.map_err(RuntimeError::api(format!("inspecting image {image}")))?;
        Ok(info.size.unwrap_or(0))
    }

    /// The ID of a local image (the digest of its config), or None if it is not present.
    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.api.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(RuntimeError::api(format!("inspecting image {image}"))(e)),
        }
    }

    /// Pulls `from_image` at `tag` (a tag, or a digest, which the daemon then verifies), as a
    /// stream of Docker's progress reports.
    fn pull_progress(
        &self,
        from_image: &str,
        tag: &str,
        credentials: Option<Credentials>,
    ) -> futures_util::stream::BoxStream<'_, Result<PullProgress>> {
        let options = bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(from_image).tag(tag).build();
        let context = format!("pulling {from_image}");
        self.api
            .create_image(Some(options), None, credentials.as_ref().map(Credentials::to_engine))
            .map_ok(PullProgress::from_engine)
            .map_err(move |e| RuntimeError::Api { context: context.clone(), source: e })
            .boxed()
    }

    /// Commits a container's filesystem as image `repo:tag` with `config`; returns the image ID.
    async fn commit(&self, container: &str, repo: &str, tag: &str, config: ImageConfig) -> Result<String> {
        let options = bollard::query_parameters::CommitContainerOptionsBuilder::default()
            .container(container)
            .repo(repo)
            .tag(tag)
            .pause(true)
            .build();
        let resp = self.api.commit_container(options, config.0).await.map_err(RuntimeError::api(format!("committing {repo}:{tag}")))?;
        Ok(resp.id)
    }

    /// Removes a volume; an absent one is not an error.
    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.remove_volume_if_there(name).await.map(|_| ())
    }

    /// Removes a volume if it is there; true if this call removed it. Docker removes a volume
    /// once, so of callers racing for one, exactly one gets true.
    async fn remove_volume_if_there(&self, name: &str) -> Result<bool> {
        match self.api.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
            Ok(()) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(RuntimeError::api(format!("removing volume {name}"))(e)),
        }
    }

    /// Whether a volume of this name exists.
    async fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.api.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(RuntimeError::api(format!("inspecting volume {name}"))(e)),
        }
    }

    /// Creates a named volume carrying `labels`.
    async fn create_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()> {
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.iter().cloned().collect()),
            ..Default::default()
        };
        self.api.create_volume(request).await.map_err(RuntimeError::api(format!("creating volume {name}")))?;
        Ok(())
    }

    /// Volumes carrying `label` (or `label=value`): their names and labels.
    async fn list_volumes(&self, label: &str) -> Result<Vec<(String, HashMap<String, String>)>> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let opts = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&filters).build();
        let list = self.api.list_volumes(Some(opts)).await.map_err(RuntimeError::api("listing volumes"))?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(|v| (v.name, v.labels)).collect())
    }

    /// Local images carrying `label` (or `label=value`).
    async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::default().filters(&filters).build();
        let images = self.api.list_images(Some(opts)).await.map_err(RuntimeError::api("listing images"))?;
        Ok(images.into_iter().map(ImageSummary::from_engine).collect())
    }

    /// The `repo@digest` names Docker recorded for a local image (empty for one never pushed
    /// or pulled).
    async fn repo_digests(&self, image: &str) -> Result<Vec<String>> {
        let info = self.api.inspect_image(image).await.map_err(RuntimeError::api(format!("inspecting image {image}")))?;
        Ok(info.repo_digests.unwrap_or_default())
    }

    async fn repo_tags(&self, image: &str) -> Result<Vec<String>> {
        let info = self.api.inspect_image(image).await.map_err(RuntimeError::api(format!("inspecting image {image}")))?;
        Ok(info.repo_tags.unwrap_or_default())
    }

    /// Whether the daemon runs rootless (in a user namespace): it says so in `docker info`.
    async fn rootless(&self) -> Result<bool> {
        let ask = || async {
            let info = self.api.info().await.map_err(RuntimeError::api("asking the daemon for its info"))?;
            Ok(super::endpoint::is_rootless(&info.security_options.unwrap_or_default()))
        };
        self.rootless.get_or_try_init(ask).await.copied()
    }

    /// Removes an image name (the image itself goes when no other name holds it).
    async fn remove_image(&self, image: &str) -> Result<()> {
        self.api
            .remove_image(image, None::<bollard::query_parameters::RemoveImageOptions>, None)
            .await
            .map_err(RuntimeError::api(format!("removing image {image}")))?;
        Ok(())
    }

    async fn image_labels(&self, image: &str) -> Result<std::collections::HashMap<String, String>> {
        let info = self.api.inspect_image(image).await.map_err(RuntimeError::api(format!("inspecting image {image}")))?;
        Ok(info.config.and_then(|c| c.labels).unwrap_or_default())
    }

    /// Creates the shared network if it does not exist, with a subnet of its own so nodes can
    /// keep fixed addresses. The caller holds berth's network lease: two creates at once would
    /// otherwise both see the name free and the same subnet unused (Docker enforces neither a
    /// unique name nor, between two requests, a free subnet). Should a berth on another host of
    /// the same daemon still make a second one, all agree on the lowest ID and the extras are
    /// removed. Returns the subnet where nodes may be pinned, or None for a network made
    /// without one (older berth).
    async fn ensure_network(&self, name: &str, _held: &super::Lease) -> Result<Option<crate::config::Cidr>> {
        if self.networks_named(name).await?.is_empty() {
            let taken = self.used_subnets().await?;
            let subnet = super::network::choose_subnet(&taken).ok_or_else(|| RuntimeError::NoFreeSubnet(name.to_string()))?;
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([
                    ("dev.berth.network".to_string(), "true".to_string()),
                    (LABEL_SUBNET.to_string(), subnet.to_string()),
                ])),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        ip_range: Some(super::network::dynamic_range(subnet).to_string()),
                        gateway: Some(super::network::gateway(subnet).to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self.api.create_network(request).await {
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
                Err(e) => return Err(RuntimeError::api(format!("creating network {name}"))(e)),
            }
        }
        let mut ids = self.networks_named(name).await?;
        ids.sort();
        for extra in ids.iter().skip(1) {
            let _ = self.api.remove_network(extra).await;
        }
        let id = ids.first().ok_or_else(|| RuntimeError::Vanished(format!("network {name}")))?;
        let net = self
            .api
            .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .map_err(RuntimeError::api(format!("inspecting network {name}")))?;
        Ok(net.labels.unwrap_or_default().get(LABEL_SUBNET).and_then(|s| crate::config::Cidr::parse(s).ok()))
    }

    async fn remove_network_if_unused(&self, name: &str, _held: &super::Lease) -> Result<bool> {
        let ids = self.networks_named(name).await?;
        if ids.is_empty() {
            return Ok(false);
        }
        if !self.containers_on(name).await?.is_empty() {
            return Ok(false);
        }
        // A network made again gets another subnet, where a snapshot's saved addresses are not.
        if name == super::NETWORK_NAME && !self.reserved_addresses().await?.is_empty() {
            return Ok(false);
        }
        for id in &ids {
            match self.api.remove_network(id).await {
                Ok(()) => {}
                // Joined meanwhile by something that asks no lease (`docker run --network`): it stays.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 403 | 409, .. }) => return Ok(false),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(RuntimeError::api(format!("removing network {name}"))(e)),
            }
        }
        Ok(true)
    }

    /// Addresses on `network` that are taken: by running endpoints, pinned by any container (a
    /// stopped node still owns its address), and, on berth's network, held for a snapshot's
    /// nodes (a restore puts them back at their saved addresses).
    async fn used_addresses(&self, network: &str) -> Result<std::collections::BTreeSet<std::net::Ipv4Addr>> {
        let mut used = std::collections::BTreeSet::new();
        let net = self
            .api
            .inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .map_err(RuntimeError::api(format!("inspecting network {network}")))?;
        for ep in net.containers.unwrap_or_default().into_values() {
            if let Some(ip) = ep.ipv4_address.and_then(|a| a.split('/').next().and_then(|ip| ip.parse().ok())) {
                used.insert(ip);
            }
        }
        for c in self.containers_on(network).await? {
            let pinned = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(network))
                .and_then(|e| e.ipam_config)
                .and_then(|i| i.ipv4_address)
                .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok());
            used.extend(pinned);
        }
        if network == super::NETWORK_NAME {
            // A snapshot's nodes come back at their saved addresses: no new node may take them.
            used.extend(self.reserved_addresses().await?);
        }
        Ok(used)
    }

    async fn create_container(&self, name: &str, body: ContainerBody) -> Result<String> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        let resp = self.api.create_container(Some(opts), body.0).await.map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 409, .. } => RuntimeError::NameTaken(name.to_string()),
            e => RuntimeError::api(format!("creating container {name}"))(e),
        })?;
        Ok(resp.id)
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.api.start_container(name, None::<StartContainerOptions>).await.map_err(RuntimeError::api(format!("starting container {name}")))
    }

    /// Sends `signal` (e.g. `SIGUSR2`) to a container's main process.
    async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let opts = bollard::query_parameters::KillContainerOptionsBuilder::default().signal(signal).build();
        self.api.kill_container(name, Some(opts)).await.map_err(RuntimeError::api(format!("sending {signal} to container {name}")))
    }

    async fn stop_container(&self, name: &str, timeout_secs: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default().t(timeout_secs).build();
        match self.api.stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(RuntimeError::api(format!("stopping container {name}"))(e)),
        }
    }

    /// Removes a container and its anonymous volumes; a container already gone is not an error.
    async fn remove_container(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let remove = || self.api.remove_container(name, Some(opts.clone()));
        match self.past_podman_stopped(remove).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            // 409: removal already in progress (a concurrent delete).
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(RuntimeError::api(format!("removing container {name}"))(e)),
        }
    }

    /// Containers (running or not) carrying `label`, or `label=value`.
    async fn list_containers(&self, label: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = || self.api.list_containers(Some(opts.clone()));
        let found = self.past_podman_stopped(list).await.map_err(RuntimeError::api("listing containers"))?;
        Ok(found.into_iter().map(ContainerSummary::from_engine).collect())
    }

    async fn inspect(&self, name: &str) -> Result<ContainerDetails> {
        self.inspect_engine(name).await.map(ContainerDetails)
    }

    /// The host port Docker published for `container_port` (e.g. "6443/tcp").
    async fn published_port(&self, name: &str, container_port: &str) -> Result<u16> {
        let info = self.inspect_engine(name).await?;
        info.network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(container_port).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok())))
            .ok_or_else(|| RuntimeError::NotPublished { container: name.to_string(), port: container_port.to_string() })
    }

    /// The container's address on `network`.
    async fn container_ip(&self, name: &str, network: &str) -> Result<String> {
        let info = self.inspect_engine(name).await?;
        info.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut nets| nets.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| RuntimeError::NoAddress { container: name.to_string(), network: network.to_string() })
    }

    /// Runs a command in a container and collects its output, whatever its exit code. Output is
    /// not logged here: it may hold credentials (admin.conf, tokens); callers log what is safe.
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
        self.exec_with_input(container, cmd, None).await
    }

    /// Like [`exec`](Self::exec), streaming `input` to the command's stdin (then closing it)
    /// while its output is read, so neither side waits on a full pipe.
    async fn exec_with_input(&self, container: &str, cmd: &[&str], input: Option<super::Input>) -> Result<ExecOutput> {
        let context = || format!("running `{}` in {container}", cmd.join(" "));
        let created = self
            .api
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(input.is_some()),
                    ..Default::default()
                },
            )
            .await
            .map_err(RuntimeError::api(context()))?;
        let started = self
            .api
            .start_exec(&created.id, Some(StartExecOptions { detach: false, tty: false, output_capacity: None }))
            .await
            .map_err(RuntimeError::api(context()))?;
        let mut out = ExecOutput::default();
        let mut fed = Ok(());
        if let StartExecResults::Attached { mut output, input: mut stdin } = started {
            let feed = async move {
                if let Some(mut reader) = input {
                    tokio::io::copy(&mut reader, &mut stdin).await?;
                    stdin.shutdown().await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let drain = async {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(RuntimeError::api(context()))? {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            out.stdout.push_str(&String::from_utf8_lossy(&message));
                        }
                        LogOutput::StdErr { message } => {
                            out.stderr.push_str(&String::from_utf8_lossy(&message));
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
                Ok::<_, RuntimeError>(())
            };
            let (feed_result, drained) = tokio::join!(feed, drain);
            drained?;
            fed = feed_result;
        }
        let inspected = self.api.inspect_exec(&created.id).await.map_err(RuntimeError::api(context()))?;
        out.code = inspected.exit_code.unwrap_or(-1);
        // A command that failed stopped reading; its own output says more than the broken pipe.
        if let (Err(e), 0) = (fed, out.code) {
            return Err(RuntimeError::Io { context: format!("{}: feeding stdin", context()), source: e });
        }
        Ok(out)
    }

    /// Writes `images` as one `docker save` archive to `path`, streamed as Docker produces it.
    async fn save_images_to(&self, images: &[&str], path: &std::path::Path) -> Result<()> {
        let io = |source: std::io::Error| RuntimeError::Io { context: format!("writing {}", path.display()), source };
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut stream = self.api.export_images(images);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(RuntimeError::api(format!("saving {}", images.join(", "))))?;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)
    }

    /// Starts a command in the background and returns at once.
    async fn exec_detached(&self, container: &str, cmd: &[&str]) -> Result<()> {
        let context = || format!("starting `{}` in {container}", cmd.join(" "));
        let created = self
            .api
            .create_exec(container, CreateExecOptions { cmd: Some(cmd.iter().map(|s| s.to_string()).collect()), ..Default::default() })
            .await
            .map_err(RuntimeError::api(context()))?;
        self.api
            .start_exec(&created.id, Some(StartExecOptions { detach: true, tty: false, output_capacity: None }))
            .await
            .map_err(RuntimeError::api(context()))?;
        Ok(())
    }

    /// Writes files into a container: `files` are (absolute path, contents, mode).
    async fn write_files(&self, container: &str, files: &[(&str, &[u8], u32)]) -> Result<()> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents, mode) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(0);
            header.set_cksum();
            builder
                .append_data(&mut header, path.trim_start_matches('/'), *contents)
                .map_err(|source| RuntimeError::Io { context: format!("packing {path}"), source })?;
        }
        let tar = builder.into_inner().map_err(|source| RuntimeError::Io { context: "packing files".into(), source })?;
        self.upload_tar(container, "/", futures_util::stream::once(async { Ok(bytes::Bytes::from(tar)) }).boxed()).await
    }

    /// Extracts a tar stream into `dir` in the container.
    async fn upload_tar(
        &self,
        container: &str,
        dir: &str,
        tar: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    ) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::default().path(dir).build();
        self.api
            .upload_to_container(container, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(RuntimeError::api(format!("copying files into {container}:{dir}")))
    }

    /// Streams a host file into `dir/name` in the container as a one-entry tar, without reading
    /// it into memory (image archives run to hundreds of megabytes).
    async fn upload_file(&self, container: &str, dir: &str, name: &str, path: &std::path::Path) -> Result<()> {
        let io = |source: std::io::Error| RuntimeError::Io { context: format!("reading {}", path.display()), source };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        let mut header = tar::Header::new_gnu();
        header.set_path(name).map_err(io)?;
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        let padding = (512 - (size % 512) as usize) % 512;
        let head = futures_util::stream::once(async move { Ok(bytes::Bytes::copy_from_slice(header.as_bytes())) });
        // Pad the entry to a whole block, then the two zero blocks that end an archive.
        let tail = futures_util::stream::once(async move { Ok(bytes::Bytes::from(vec![0u8; padding + 1024])) });
        let body = head.chain(tokio_util::io::ReaderStream::new(file)).chain(tail);
        self.exec_ok(container, &["mkdir", "-p", dir]).await?;
        self.upload_tar(container, dir, body.boxed()).await
    }

    /// A directory of the container as a tar stream (for log export).
    fn download_tar(&self, container: &str, path: &str) -> futures_util::stream::BoxStream<'_, Result<bytes::Bytes>> {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default().path(path).build();
        let context = format!("copying {container}:{path}");
        self.api
            .download_from_container(container, Some(opts))
            .map_err(move |e| RuntimeError::Api { context: context.clone(), source: e })
            .boxed()
    }

    /// One file of a container, running or stopped (through Docker's archive API, not an exec).
    async fn read_file(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let chunks: Vec<bytes::Bytes> = self.download_tar(container, path).try_collect().await?;
        let archive = chunks.concat();
        let mut tar = tar::Archive::new(archive.as_slice());
        let io = |source| RuntimeError::Io { context: format!("reading {container}:{path}"), source };
        let mut entries = tar.entries().map_err(io)?;
        let mut entry = entries.next().ok_or_else(|| io(std::io::ErrorKind::UnexpectedEof.into()))?.map_err(io)?;
        let mut out = Vec::new();
        entry.read_to_end(&mut out).map_err(io)?;
        Ok(out)
    }

    /// Which container holds each address on `network` (running, or pinned by a stopped one).
    async fn address_holders(&self, network: &str) -> Result<std::collections::BTreeMap<std::net::Ipv4Addr, String>> {
        let mut holders = std::collections::BTreeMap::new();
        for c in self.containers_on(network).await? {
            let name = ContainerSummary::engine_name(&c);
            let endpoint = c.network_settings.and_then(|n| n.networks).and_then(|mut n| n.remove(network));
            let Some(endpoint) = endpoint else { continue };
            let pinned = endpoint.ipam_config.and_then(|i| i.ipv4_address);
            for ip in [pinned, endpoint.ip_address].into_iter().flatten() {
                if let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() {
                    holders.insert(ip, name.clone());
                }
            }
        }
        Ok(holders)
    }

    /// The container's own log (its console), last `lines` lines.
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String> {
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let chunks: Vec<LogOutput> =
            self.api.logs(name, Some(opts)).try_collect().await.map_err(RuntimeError::api(format!("reading logs of {name}")))?;
        Ok(chunks.iter().map(|c| c.to_string()).collect())
    }

    /// Waits for a container to exit and returns its exit code.
    async fn wait_exit(&self, name: &str) -> Result<i64> {
        let mut stream = self.api.wait_container(name, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(RuntimeError::api(format!("waiting for {name}"))(e)),
            None => Err(RuntimeError::Vanished(format!("container {name} (no exit status)"))),
        }
    }

    /// Starts a throwaway `--privileged` container from `image` to learn whether this daemon
    /// (with `runtime`, if given) can run privileged containers at all.
    /// `labels` mark it as the caller's, so a caller interrupted mid-probe can sweep it up.
    async fn probe_privileged(&self, image: &str, runtime: Option<&str>, labels: &[(String, String)]) -> Result<super::ProbeOutcome> {
        use super::ProbeOutcome;
        let name = crate::ids::unique("berth-probe");
        let mut all_labels: HashMap<String, String> = labels.iter().cloned().collect();
        all_labels.insert(super::mode::LABEL_PROBE.to_string(), "true".to_string());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["true".to_string()]),
            labels: Some(all_labels),
            host_config: Some(bollard::models::HostConfig {
                privileged: Some(true),
                runtime: runtime.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = self.api.create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body).await {
            return Ok(ProbeOutcome::Failed(e.to_string()));
        }
        let outcome = match self.api.start_container(&name, None::<StartContainerOptions>).await {
            Ok(()) => ProbeOutcome::Started,
            Err(e) => ProbeOutcome::from_start_error(&e.to_string()),
        };
        self.remove_container(&name).await?;
        tracing::debug!("privileged probe: {outcome:?}");
        Ok(outcome)
    }
}
