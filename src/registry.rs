//! Registries: pulling node images (with the user's Docker credentials and per-layer progress)
//! and the local registry container `berth-registry` that every node's containerd knows as
//! `localhost:PORT`, announced to tools through the `local-registry-hosting` ConfigMap
//! (KEP-1755).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::image_ref::ImageRef;
use crate::runtime::{local_registry_body, ContainerDetails, Credentials, LocalRegistrySpec, Runtime, RuntimeError, Secret, NETWORK_NAME};
use crate::ui::Status;

pub const REGISTRY_CONTAINER: &str = "berth-registry";
pub const REGISTRY_VOLUME: &str = "berth-registry-data";
pub const DEFAULT_REGISTRY_PORT: u16 = 5001;
pub const DEFAULT_REGISTRY_IMAGE: &str = "registry:2";
/// Port the registry listens on inside its container (the registry image's default).
const REGISTRY_INTERNAL_PORT: u16 = 5000;
/// A pull that makes no progress for this long is abandoned.
const PULL_STALL: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot pull {image} from {registry}: {reason}")]
    Pull { image: String, registry: String, reason: String },
    #[error(
        "berth's {REGISTRY_CONTAINER} container is set up for port {running}; use --registry {running} or `berth delete registry` first"
    )]
    PortMismatch { running: u16 },
    #[error("a container named {REGISTRY_CONTAINER} exists that berth did not make (it lacks the dev.berth.registry label); berth will neither use nor remove it: rename or remove it yourself")]
    Foreign,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Credentials for `host` as `docker login` left them in Docker's config file
/// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): from the credential helper it
/// names for that registry (`credHelpers`) or for all (`credsStore`), else its `auths` entry.
/// None where it names none, or the helper fails (the pull then goes without and the
/// registry's refusal is what the user sees).
pub fn credentials_for(host: &str) -> Option<Credentials> {
    // Docker files Docker Hub's login under its v1 address, and asks helpers by it.
    let server = if host == "docker.io" { "https://index.docker.io/v1/" } else { host };
    let secret = match docker_credential::get_credential(server) {
        Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => Secret::Password { username, password },
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => Secret::IdentityToken(token),
        Err(
            docker_credential::CredentialRetrievalError::NoCredentialConfigured
            | docker_credential::CredentialRetrievalError::ConfigNotFound
            | docker_credential::CredentialRetrievalError::ConfigReadError,
        ) => return None,
        Err(e) => {
            tracing::warn!("no credentials for {host}: {e}");
            return None;
        }
    };
    Some(Credentials { server: server.to_string(), secret })
}

/// Pulls `image`, showing each layer's progress; fails with one line naming the registry. A
/// reference with a digest is pulled by that digest, and the pulled image must carry it.
pub async fn pull(docker: &dyn Runtime, image: &ImageRef, status: &Status) -> Result<(), RegistryError> {
    let registry = image.registry().to_string();
    let fail = |reason: String| RegistryError::Pull { image: image.to_string(), registry: registry.clone(), reason };
    let (from_image, tag) = image.docker_pull_params();
    let step = status.step(format!("Pulling {image}"));
    let mut stream = docker.pull_progress(&from_image, &tag, credentials_for(&registry));
    let mut layers: HashMap<String, String> = HashMap::new();
    loop {
        let next = tokio::time::timeout(PULL_STALL, stream.next())
            .await
            .map_err(|_| fail(format!("no progress for {}s", PULL_STALL.as_secs())))?;
        let Some(item) = next else { break };
        let info = item.map_err(|e| fail(one_line(&pull_failure(e))))?;
        if let Some(err) = info.error {
            return Err(fail(one_line(&err)));
        }
        if let (Some(id), Some(state)) = (info.layer, info.status) {
            let line = match info.bytes {
                Some((cur, total)) if total > 0 => format!("{state} {:.0}/{:.0} MB", cur as f64 / 1e6, total as f64 / 1e6),
                _ => state.clone(),
            };
            if layers.get(&id) != Some(&line) {
                if state == "Pull complete" || state == "Already exists" {
                    status.info(format!("   {id}: {state}"));
                }
                layers.insert(id.clone(), line);
                let summary: Vec<String> =
                    layers.iter().filter(|(_, l)| !l.starts_with("Pull complete")).map(|(i, l)| format!("{i}: {l}")).collect();
                step.set_detail(summary.join(" | "));
            }
        }
    }
    if !docker.image_exists(&local_name(image)).await? {
        return Err(fail("the pull ended without the image".into()));
    }
    if image.digest().is_some() {
        let digests = docker.repo_digests(&local_name(image)).await?;
        if !digests.iter().any(|d| crate::image_ref::repo_digest_matches(image, d)) {
            return Err(fail(format!("the pulled image does not carry the digest asked for (it has {})", digests.join(", "))));
        }
    }
    step.done();
    Ok(())
}

/// The name the local Docker knows `image` by: `name@digest` when pinned (Docker stores a
/// digest pull under that name, not under the tag beside it), else as written.
pub fn local_name(image: &ImageRef) -> String {
    image.canonical().unwrap_or_else(|| image.to_string())
}

/// Docker's own words for a failed pull, without berth's "pulling X:" context (the error
/// names the image already).
fn pull_failure(e: RuntimeError) -> String {
    match e {
        RuntimeError::Api { source, .. } => source.to_string(),
        e => e.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

const LABEL_REGISTRY: &str = "dev.berth.registry";

/// The registry container berth would use, as Docker describes it.
#[derive(Debug, PartialEq)]
pub struct ExistingRegistry {
    /// The host port it is set up to publish (running or not).
    pub port: Option<u16>,
    pub running: bool,
}

/// What `info` (of the container named [`REGISTRY_CONTAINER`]) says: berth's registry, or a
/// stranger's container that only shares the name.
fn describe_existing(info: &ContainerDetails) -> Result<ExistingRegistry, RegistryError> {
    if info.labels().get(LABEL_REGISTRY).map(String::as_str) != Some("true") {
        return Err(RegistryError::Foreign);
    }
    let internal = format!("{REGISTRY_INTERNAL_PORT}/tcp");
    let port =
        info.host_config().published_ports().into_iter().find(|p| p.container_port == internal && p.host_port != 0).map(|p| p.host_port);
    Ok(ExistingRegistry { port, running: info.running() })
}

/// The local registry as it stands: none, berth's (checked to be set up for `port`, running or
/// stopped), or an error for a foreign container of that name. Create calls it before making
/// anything.
pub async fn check_local_registry(docker: &dyn Runtime, port: u16) -> Result<Option<ExistingRegistry>, RegistryError> {
    let Ok(info) = docker.inspect(REGISTRY_CONTAINER).await else { return Ok(None) };
    let existing = describe_existing(&info)?;
    if let Some(running) = existing.port.filter(|p| *p != port) {
        return Err(RegistryError::PortMismatch { running });
    }
    Ok(Some(existing))
}

/// Starts the local registry, or reuses berth's (starting it if stopped); its data lives on a
/// named volume so it outlives clusters.
pub async fn ensure_local_registry(docker: &dyn Runtime, port: u16, image: &str) -> Result<(), RegistryError> {
    if let Some(existing) = check_local_registry(docker, port).await? {
        if !existing.running {
            docker.start_container(REGISTRY_CONTAINER).await?;
        }
        return Ok(());
    }
    let spec = LocalRegistrySpec {
        image,
        label: LABEL_REGISTRY,
        port,
        internal_port: REGISTRY_INTERNAL_PORT,
        volume: REGISTRY_VOLUME,
        network: NETWORK_NAME,
    };
    let body = local_registry_body(&spec);
    match docker.create_container(REGISTRY_CONTAINER, body).await {
        Ok(_) => {}
        // Another create started it a moment ago: use that one.
        Err(RuntimeError::NameTaken(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    docker.start_container(REGISTRY_CONTAINER).await?;
    Ok(())
}

/// Removes berth's registry container and its data volume; a foreign container of that name
/// (and its volume) is left alone. Returns the image the removed registry ran, if there was one.
pub async fn delete_local_registry(docker: &dyn Runtime) -> Result<Option<String>, RegistryError> {
    let info = docker.inspect(REGISTRY_CONTAINER).await.ok();
    if let Some(info) = &info {
        describe_existing(info)?;
    }
    let image = info.map(|i| i.image());
    docker.remove_container(REGISTRY_CONTAINER).await?;
    docker.remove_volume(REGISTRY_VOLUME).await?;
    Ok(image)
}

/// containerd's hosts.toml that sends `localhost:PORT` (as pods name it) to the registry
/// container on berth's network.
pub fn containerd_hosts_toml(port: u16) -> (String, String) {
    let path = format!("/etc/containerd/certs.d/localhost:{port}/hosts.toml");
    let upstream = format!("http://{REGISTRY_CONTAINER}:{REGISTRY_INTERNAL_PORT}");
    let body = format!("server = \"{upstream}\"\n\n[host.\"{upstream}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
    (path, body)
}

/// KEP-1755's ConfigMap, so Tilt, Skaffold and friends find the registry.
pub fn local_registry_hosting(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local-registry-hosting\n  namespace: kube-public\ndata:\n  localRegistryHosting.v1: |\n    host: \"localhost:{port}\"\n    hostFromContainerRuntime: \"{REGISTRY_CONTAINER}:{REGISTRY_INTERNAL_PORT}\"\n    hostFromClusterNetwork: \"{REGISTRY_CONTAINER}:{REGISTRY_INTERNAL_PORT}\"\n    help: \"push to localhost:{port}/NAME and use that name in pod specs\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        // "alice:s3cret"
        std::fs::write(dir.path().join("config.json"), r#"{"auths":{"127.0.0.1:5001":{"auth":"YWxpY2U6czNjcmV0"}}}"#).unwrap();
        std::env::set_var("DOCKER_CONFIG", dir.path());
        let c = credentials_for("127.0.0.1:5001").unwrap();
        assert_eq!(c.secret, Secret::Password { username: "alice".into(), password: "s3cret".into() });
        assert!(credentials_for("ghcr.io").is_none());

        // A credential helper named for one registry, and a store for the rest, as
        // `docker login` with docker-credential-* installed leaves them.
        let helper = dir.path().join("docker-credential-berthtest");
        std::fs::write(&helper, "#!/bin/sh\nread server\nprintf '{\"Username\":\"bob\",\"Secret\":\"%s-pw\"}' \"$server\"\n").unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let config =
            r#"{"auths":{"127.0.0.1:5001":{"auth":"YWxpY2U6czNjcmV0"}},"credHelpers":{"ghcr.io":"berthtest"},"credsStore":"berthtest"}"#;
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", dir.path().display()));
        let by_helper = credentials_for("ghcr.io").unwrap();
        assert_eq!(by_helper.secret, Secret::Password { username: "bob".into(), password: "ghcr.io-pw".into() });
        let hub = credentials_for("docker.io").unwrap();
        assert_eq!(hub.server, "https://index.docker.io/v1/");
        assert_eq!(hub.secret, Secret::Password { username: "bob".into(), password: "https://index.docker.io/v1/-pw".into() });
        std::env::set_var("PATH", path);
        std::env::remove_var("DOCKER_CONFIG");
    }

    #[test]
    fn a_registry_is_ours_by_label_and_its_port_is_read_even_when_stopped() {
        let info = |labels: &[(&str, &str)], running: bool| {
            ContainerDetails::from_engine_json(serde_json::json!({
                "Config": {"Labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>()},
                "HostConfig": {"PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5002"}]}},
                "State": {"Running": running},
            }))
        };
        let stopped = describe_existing(&info(&[(LABEL_REGISTRY, "true")], false)).unwrap();
        assert_eq!(stopped, ExistingRegistry { port: Some(5002), running: false });
        assert!(matches!(describe_existing(&info(&[("other", "x")], true)), Err(RegistryError::Foreign)));
    }

    #[test]
    fn hosts_toml_and_configmap_name_the_registry() {
        let (path, body) = containerd_hosts_toml(5001);
        assert_eq!(path, "/etc/containerd/certs.d/localhost:5001/hosts.toml");
        assert!(body.contains("server = \"http://berth-registry:5000\""));
        let cm: serde_yaml::Value = serde_yaml::from_str(&local_registry_hosting(5001)).unwrap();
        assert_eq!(cm["metadata"]["namespace"].as_str(), Some("kube-public"));
        let inner: serde_yaml::Value = serde_yaml::from_str(cm["data"]["localRegistryHosting.v1"].as_str().unwrap()).unwrap();
        assert_eq!(inner["host"].as_str(), Some("localhost:5001"));
    }
}
