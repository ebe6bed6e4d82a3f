//! What berth gives the engine and reads back from it, in berth's own types: bollard's models
//! stay inside `runtime/`, so the cluster operations, the registry and node-image builds ask
//! questions ("is it running?", "which host ports does it publish?") instead of walking the
//! engine's optional fields, and a bollard upgrade changes this file, not theirs.
//!
//! Two types carry the engine's settings through unchanged where berth repeats them without
//! reading all of them: [`HostConfig`] (a snapshot keeps it, a restore gives it back; stored as
//! the engine's own JSON) and [`ImageConfig`] (what a commit records).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A container as a listing shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub labels: HashMap<String, String>,
    /// The engine's word for its state: `running`, `created`, `exited`, …
    pub state: String,
    /// The image it was created from, as the create named it.
    pub image: String,
    /// Unix seconds, where the engine says.
    pub created: Option<i64>,
}

impl ContainerSummary {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    pub(super) fn from_engine(c: bollard::models::ContainerSummary) -> ContainerSummary {
        ContainerSummary {
            name: ContainerSummary::engine_name(&c),
            id: c.id.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            created: c.created,
        }
    }

    /// A listed container's name, without Docker's leading `/`.
    pub(super) fn engine_name(c: &bollard::models::ContainerSummary) -> String {
        c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default()
    }
}

/// A local image as a listing shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSummary {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Bytes, its parent's layers included.
    pub size: i64,
    /// Unix seconds.
    pub created: i64,
}

impl ImageSummary {
    pub(super) fn from_engine(i: bollard::models::ImageSummary) -> ImageSummary {
        ImageSummary { id: i.id, repo_tags: i.repo_tags, labels: i.labels, size: i.size, created: i.created }
    }
}

/// A host port a container publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The container's side, with its protocol: `80/tcp`.
    pub container_port: String,
    /// The host address it listens on; empty for every interface.
    pub host_ip: String,
    /// 0 when the engine picks one.
    pub host_port: u16,
}

impl PublishedPort {
    /// Whether it listens on every interface of the host (so other machines reach it).
    pub fn on_every_interface(&self) -> bool {
        matches!(self.host_ip.as_str(), "" | "0.0.0.0" | "::")
    }
}

/// A container's host-side settings (privileges, published ports, mounts, runtime), as the
/// engine reports them and a restore hands them back. Serialized as the engine's own JSON, which
/// is what snapshots store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostConfig(pub(super) bollard::models::HostConfig);

impl HostConfig {
    pub fn privileged(&self) -> bool {
        self.0.privileged == Some(true)
    }

    /// The OCI runtime asked for by name, unless it is the engine's default.
    pub fn runtime(&self) -> Option<String> {
        self.0.runtime.clone().filter(|r| r != "runc" && !r.is_empty())
    }

    /// The host ports it publishes, by container port.
    pub fn published_ports(&self) -> Vec<PublishedPort> {
        let mut ports = Vec::new();
        for (container_port, bindings) in self.0.port_bindings.iter().flatten() {
            for b in bindings.iter().flatten() {
                ports.push(PublishedPort {
                    container_port: container_port.clone(),
                    host_ip: b.host_ip.clone().unwrap_or_default(),
                    host_port: b.host_port.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0),
                });
            }
        }
        ports.sort_by(|a, b| (&a.container_port, a.host_port).cmp(&(&b.container_port, b.host_port)));
        ports
    }

    /// Host paths bind-mounted into the container: (host path, path inside).
    pub fn bind_mounts(&self) -> Vec<(String, String)> {
        self.0
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ == Some(bollard::models::MountType::BIND))
            .map(|m| (m.source.clone().unwrap_or_default(), m.target.clone().unwrap_or_default()))
            .collect()
    }

    /// The same settings with `port` published at `host_ip:host_port` (tests build saved nodes
    /// with it).
    pub fn with_published_port(mut self, container_port: &str, host_ip: &str, host_port: u16) -> HostConfig {
        let binding = bollard::models::PortBinding { host_ip: Some(host_ip.into()), host_port: Some(host_port.to_string()) };
        let bindings = self.0.port_bindings.get_or_insert_with(HashMap::new).entry(container_port.to_string()).or_default();
        bindings.get_or_insert_with(Vec::new).push(binding);
        self
    }

    /// The same settings with the host's `source` bind-mounted at `target`.
    pub fn with_bind_mount(mut self, source: &str, target: &str) -> HostConfig {
        self.0.mounts.get_or_insert_with(Vec::new).push(bollard::models::Mount {
            typ: Some(bollard::models::MountType::BIND),
            source: Some(source.into()),
            target: Some(target.into()),
            ..Default::default()
        });
        self
    }
}

/// The config a commit records in an image: entrypoint, environment, stop signal, labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig(pub(super) bollard::models::ContainerConfig);

impl ImageConfig {
    /// A config with this entrypoint and no command.
    pub fn with_entrypoint(entrypoint: Option<Vec<String>>) -> ImageConfig {
        ImageConfig(bollard::models::ContainerConfig { entrypoint, cmd: None, ..Default::default() })
    }

    pub fn env(mut self, env: Vec<String>) -> ImageConfig {
        self.0.env = Some(env);
        self
    }

    pub fn stop_signal(mut self, signal: &str) -> ImageConfig {
        self.0.stop_signal = Some(signal.into());
        self
    }

    /// Adds `labels` to those it has.
    pub fn labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> ImageConfig {
        self.0.labels.get_or_insert_with(HashMap::new).extend(labels);
        self
    }

    /// Each environment variable passed through `f`.
    pub fn map_env(mut self, f: impl Fn(&str) -> String) -> ImageConfig {
        self.0.env = self.0.env.map(|env| env.iter().map(|e| f(e)).collect());
        self
    }

    /// The image the container was created from, as it was named.
    pub fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }

    pub fn env_vars(&self) -> &[String] {
        self.0.env.as_deref().unwrap_or_default()
    }

    pub fn label_map(&self) -> HashMap<String, String> {
        self.0.labels.clone().unwrap_or_default()
    }
}

/// What an inspect says of one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerDetails(pub(super) bollard::models::ContainerInspectResponse);

impl ContainerDetails {
    pub fn running(&self) -> bool {
        self.0.state.as_ref().and_then(|s| s.running).unwrap_or(false)
    }

    /// The image as the container's create named it (its ID if the config does not say).
    pub fn image(&self) -> String {
        self.0.config.as_ref().and_then(|c| c.image.clone()).or_else(|| self.0.image.clone()).unwrap_or_default()
    }

    pub fn labels(&self) -> HashMap<String, String> {
        self.0.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default()
    }

    /// The container's own config: what a commit of it would record.
    pub fn config(&self) -> ImageConfig {
        ImageConfig(self.0.config.clone().unwrap_or_default())
    }

    pub fn host_config(&self) -> HostConfig {
        HostConfig(self.0.host_config.clone().unwrap_or_default())
    }

    /// The named volume mounted at `destination`.
    pub fn volume_at(&self, destination: &str) -> Option<String> {
        self.0.mounts.iter().flatten().find(|m| m.destination.as_deref() == Some(destination)).and_then(|m| m.name.clone())
    }

    /// The address the container is pinned to on `network` (not one the engine chose).
    pub fn pinned_address(&self, network: &str) -> Option<String> {
        self.0
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(network))
            .and_then(|e| e.ipam_config.as_ref())
            .and_then(|i| i.ipv4_address.clone())
            .filter(|a| !a.is_empty())
    }

    /// Details from the engine's JSON (`docker inspect`'s), as tests write them.
    #[cfg(test)]
    pub fn from_engine_json(json: serde_json::Value) -> ContainerDetails {
        ContainerDetails(serde_json::from_value(json).expect("an inspect answer"))
    }

    /// The engine's whole answer, as `docker inspect` prints it.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }
}

/// What a container is created from. Built by the functions in `spec.rs`, which own every
/// setting a berth container has.
#[derive(Debug, Clone, Default)]
pub struct ContainerBody(pub(super) bollard::models::ContainerCreateBody);

impl ContainerBody {
    /// The labels the container will carry.
    pub fn labels(&self) -> HashMap<String, String> {
        self.0.labels.clone().unwrap_or_default()
    }
}

/// Credentials for a registry, as a pull presents them.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// The registry they are for (`ghcr.io`).
    pub server: String,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    Password {
        username: String,
        password: String,
    },
    /// An OAuth refresh token, as some registries' logins leave (`identitytoken`).
    IdentityToken(String),
}

impl Credentials {
    pub(super) fn to_engine(&self) -> bollard::auth::DockerCredentials {
        let mut engine = bollard::auth::DockerCredentials { serveraddress: Some(self.server.clone()), ..Default::default() };
        match &self.secret {
            Secret::Password { username, password } => {
                engine.username = Some(username.clone());
                engine.password = Some(password.clone());
            }
            Secret::IdentityToken(token) => engine.identitytoken = Some(token.clone()),
        }
        engine
    }
}

/// One report of a pull's progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullProgress {
    /// The layer it is about, if any.
    pub layer: Option<String>,
    /// "Downloading", "Pull complete", …
    pub status: Option<String>,
    /// Bytes done and in all, where the engine says.
    pub bytes: Option<(i64, i64)>,
    /// The engine's reason, when the pull failed.
    pub error: Option<String>,
}

impl PullProgress {
    pub(super) fn from_engine(info: bollard::models::CreateImageInfo) -> PullProgress {
        PullProgress {
            layer: info.id,
            status: info.status,
            bytes: info.progress_detail.and_then(|p| Some((p.current?, p.total?))),
            error: info.error_detail.and_then(|d| d.message),
        }
    }
}
