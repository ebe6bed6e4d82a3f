//! Which Docker daemon berth talks to, decided as the docker CLI decides it: `DOCKER_HOST`
//! (with `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` for TLS), else the current context —
//! `DOCKER_CONTEXT`, else `currentContext` in the docker CLI's config.json — whose endpoint and
//! TLS material live under `contexts/` beside it (rootless Docker and Docker Desktop set one),
//! else the default socket.
//!
//! Podman serves the same API on a socket of its own. It is chosen as kind chooses its
//! providers: `BERTH_PROVIDER=podman` (kind's `KIND_EXPERIMENTAL_PROVIDER`), or on its own when
//! nothing names a Docker endpoint, Docker's default socket is absent and Podman's is there.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A daemon address and how to trust it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    /// Client key, client certificate and CA, for TLS.
    pub tls: Option<Tls>,
    /// Where the endpoint came from, for error messages ("DOCKER_HOST", "context rootless").
    pub source: String,
    /// Which engine berth expects there (the engine itself says which it is once connected).
    pub provider: Provider,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub ca: PathBuf,
}

impl Tls {
    fn in_dir(dir: &Path) -> Tls {
        Tls { key: dir.join("key.pem"), cert: dir.join("cert.pem"), ca: dir.join("ca.pem") }
    }
}

/// Looks up an environment variable (empty counts as unset).
pub type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// The environment the decision reads, injectable for tests.
pub struct Env {
    pub get: Lookup,
    /// The docker CLI's config directory (`DOCKER_CONFIG`, else `~/.docker`).
    pub config_dir: Option<PathBuf>,
    /// Whether a socket (or anything) exists at a path.
    pub exists: Box<dyn Fn(&Path) -> bool>,
    /// berth's user: root reaches rootful Podman, anyone else their own rootless one.
    pub uid: u32,
}

impl Env {
    pub fn current() -> Env {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config_dir =
            get("DOCKER_CONFIG").map(PathBuf::from).or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".docker")));
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Env { get: Box::new(get), config_dir, exists: Box::new(|p: &Path| p.exists()), uid }
    }
}

/// The engine family berth was asked for (`BERTH_PROVIDER`), or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Docker,
    Podman,
}

impl Provider {
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Docker => "Docker",
            Provider::Podman => "Podman",
        }
    }
}

/// Rootful Podman's API socket (`podman.socket` as root).
pub const PODMAN_ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("docker context {name:?} ({source_name}) has no metadata at {path}; `docker context ls` lists the contexts there are")]
    UnknownContext { name: String, source_name: String, path: PathBuf },
    #[error("docker context {name:?}: {reason}")]
    BadContext { name: String, reason: String },
    #[error("BERTH_PROVIDER={0:?} is not a provider berth knows; use docker or podman, or unset it")]
    UnknownProvider(String),
    #[error("{why}, but Podman's API socket {socket} is not there; {start}")]
    NoPodmanSocket { why: String, socket: PathBuf, start: &'static str },
}

/// Where Docker's default socket is (`DEFAULT_HOST` without its scheme).
pub fn default_socket() -> &'static Path {
    Path::new(DEFAULT_HOST.trim_start_matches("unix://"))
}

/// What to do when the engine does not answer: for Podman, how to start its API service, as
/// root or as one's own (rootless) user.
pub fn start_hint(provider: Provider, uid: u32) -> &'static str {
    match (provider, uid) {
        (Provider::Docker, _) => "start Docker, or set DOCKER_HOST to where it listens; BERTH_PROVIDER=podman for Podman",
        (Provider::Podman, 0) => "start it: `systemctl enable --now podman.socket`, or `podman system service --time=0 &`",
        (Provider::Podman, _) => "start it: `systemctl --user enable --now podman.socket`, or `podman system service --time=0 &`",
    }
}

/// Where this user's Podman listens: rootful for root, else under `$XDG_RUNTIME_DIR`
/// (`/run/user/UID` when unset, as Podman itself assumes).
fn podman_socket(env: &Env) -> PathBuf {
    if env.uid == 0 {
        return PathBuf::from(PODMAN_ROOTFUL_SOCKET);
    }
    let runtime_dir = (env.get)("XDG_RUNTIME_DIR").unwrap_or_else(|| format!("/run/user/{}", env.uid));
    Path::new(&runtime_dir).join("podman/podman.sock")
}

fn podman_endpoint(env: &Env, why: &str) -> Result<Endpoint, EndpointError> {
    // Podman's own variable for a remote or non-default service, when it names a socket or TCP.
    if let Some(host) = (env.get)("CONTAINER_HOST").filter(|h| h.starts_with("unix://") || h.starts_with("tcp://")) {
        return Ok(Endpoint { host, tls: None, source: "CONTAINER_HOST".into(), provider: Provider::Podman });
    }
    let socket = podman_socket(env);
    if !(env.exists)(&socket) {
        return Err(EndpointError::NoPodmanSocket { why: why.to_string(), socket, start: start_hint(Provider::Podman, env.uid) });
    }
    Ok(Endpoint { host: format!("unix://{}", socket.display()), tls: None, source: why.to_string(), provider: Provider::Podman })
}

/// The endpoint berth uses: Podman's when `BERTH_PROVIDER=podman`, or when nothing names a
/// Docker endpoint, Docker's default socket is missing and Podman's is there; else Docker's,
/// decided as the docker CLI decides.
pub fn resolve(env: &Env) -> Result<Endpoint, EndpointError> {
    match (env.get)("BERTH_PROVIDER").map(|p| p.to_ascii_lowercase()).as_deref() {
        Some("podman") => return podman_endpoint(env, "BERTH_PROVIDER=podman"),
        Some("docker") => return resolve_docker(env),
        Some(other) => return Err(EndpointError::UnknownProvider(other.to_string())),
        None => {}
    }
    let docker = resolve_docker(env)?;
    if docker.source == DEFAULT_SOURCE && !(env.exists)(default_socket()) && (env.exists)(&podman_socket(env)) {
        return podman_endpoint(env, &format!("Podman's socket (no Docker socket at {})", default_socket().display()));
    }
    Ok(docker)
}

/// The endpoint the docker CLI would use.
fn resolve_docker(env: &Env) -> Result<Endpoint, EndpointError> {
    if let Some(host) = (env.get)("DOCKER_HOST") {
        let tls = (env.get)("DOCKER_TLS_VERIFY").filter(|v| v != "0").map(|_| {
            let dir = (env.get)("DOCKER_CERT_PATH").map(PathBuf::from).or_else(|| env.config_dir.clone()).unwrap_or_default();
            Tls::in_dir(&dir)
        });
        return Ok(Endpoint { host, tls, source: "DOCKER_HOST".into(), provider: Provider::Docker });
    }
    let (name, source_name) = match (env.get)("DOCKER_CONTEXT") {
        Some(name) => (name, "DOCKER_CONTEXT".to_string()),
        None => match current_context(env) {
            Some(name) => (name, "currentContext in the docker CLI's config.json".to_string()),
            None => return Ok(default_endpoint()),
        },
    };
    if name == "default" {
        return Ok(default_endpoint());
    }
    let dir = env.config_dir.clone().unwrap_or_default().join("contexts");
    let id = hex(&Sha256::digest(name.as_bytes()));
    let meta_path = dir.join("meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|_| EndpointError::UnknownContext {
        name: name.clone(),
        source_name,
        path: meta_path.clone(),
    })?;
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EndpointError::BadContext { name: name.clone(), reason: format!("{}: {e}", meta_path.display()) })?;
    let docker = &meta["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| EndpointError::BadContext { name: name.clone(), reason: "its docker endpoint names no Host".into() })?
        .to_string();
    let tls_dir = dir.join("tls").join(&id).join("docker");
    let tls = tls_dir.join("ca.pem").exists().then(|| Tls::in_dir(&tls_dir));
    Ok(Endpoint { host, tls, source: format!("docker context {name:?}"), provider: Provider::Docker })
}

const DEFAULT_SOURCE: &str = "the default socket";

fn default_endpoint() -> Endpoint {
    Endpoint { host: DEFAULT_HOST.into(), tls: None, source: DEFAULT_SOURCE.into(), provider: Provider::Docker }
}

fn current_context(env: &Env) -> Option<String> {
    let text = std::fs::read_to_string(env.config_dir.as_ref()?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["currentContext"].as_str().filter(|c| !c.is_empty()).map(str::to_string)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Endpoint {
    /// A daemon on another machine: berth publishes ports and picks free ones on *this* host,
    /// which would be the wrong host.
    pub fn is_remote(&self) -> bool {
        let Some(rest) = ["tcp://", "http://", "https://", "ssh://"].iter().find_map(|p| self.host.strip_prefix(p)) else { return false };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if host.starts_with('[') {
            host.split(']').next().unwrap_or_default().trim_start_matches('[')
        } else {
            host.split(':').next().unwrap_or_default()
        };
        !(host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    }
}

/// Whether `docker info`'s security options describe a rootless daemon (`name=rootless`).
pub fn is_rootless(security_options: &[String]) -> bool {
    security_options.iter().any(|o| o.split(',').any(|kv| kv == "name=rootless"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], config_dir: &Path) -> Env {
        host(vars, config_dir, &["/var/run/docker.sock"], 0)
    }

    /// An environment on a host where only the paths in `present` exist, for user `uid`.
    fn host(vars: &[(&str, &str)], config_dir: &Path, present: &[&str], uid: u32) -> Env {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let present: Vec<PathBuf> = present.iter().map(PathBuf::from).collect();
        Env {
            get: Box::new(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())),
            config_dir: Some(config_dir.into()),
            exists: Box::new(move |p| present.iter().any(|q| q == p)),
            uid,
        }
    }

    #[test]
    fn berth_provider_podman_finds_rootful_or_rootless_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let pick = |vars: &[(&str, &str)], present: &[&str], uid| resolve(&host(vars, dir.path(), present, uid));
        let e = pick(&[("BERTH_PROVIDER", "podman")], &[PODMAN_ROOTFUL_SOCKET, "/var/run/docker.sock"], 0).unwrap();
        assert_eq!((e.host.as_str(), e.provider), ("unix:///run/podman/podman.sock", Provider::Podman));
        // DOCKER_HOST is Docker's: with Podman asked for, it is not used.
        let e = pick(&[("BERTH_PROVIDER", "Podman"), ("DOCKER_HOST", "unix:///tmp/d.sock")], &[PODMAN_ROOTFUL_SOCKET], 0).unwrap();
        assert_eq!(e.host, "unix:///run/podman/podman.sock");
        let e = pick(&[("BERTH_PROVIDER", "podman"), ("XDG_RUNTIME_DIR", "/run/user/1000")], &["/run/user/1000/podman/podman.sock"], 1000)
            .unwrap();
        assert_eq!(e.host, "unix:///run/user/1000/podman/podman.sock");
        let e = pick(&[("BERTH_PROVIDER", "podman")], &["/run/user/1001/podman/podman.sock"], 1001).unwrap();
        assert_eq!(e.host, "unix:///run/user/1001/podman/podman.sock", "XDG_RUNTIME_DIR unset: /run/user/UID");
        let e = pick(&[("BERTH_PROVIDER", "podman"), ("CONTAINER_HOST", "unix:///srv/podman.sock")], &[], 0).unwrap();
        assert_eq!((e.host.as_str(), e.source.as_str()), ("unix:///srv/podman.sock", "CONTAINER_HOST"));
    }

    #[test]
    fn a_missing_podman_socket_is_named_with_how_to_start_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(&host(&[("BERTH_PROVIDER", "podman")], dir.path(), &[], 0)).unwrap_err().to_string();
        assert!(err.contains("BERTH_PROVIDER=podman, but Podman's API socket /run/podman/podman.sock is not there"), "{err}");
        assert!(err.contains("systemctl enable --now podman.socket") && err.contains("podman system service"), "{err}");
        let err = resolve(&host(&[("BERTH_PROVIDER", "podman"), ("XDG_RUNTIME_DIR", "/run/user/1000")], dir.path(), &[], 1000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/run/user/1000/podman/podman.sock") && err.contains("systemctl --user enable --now podman.socket"), "{err}");
        let err = resolve(&host(&[("BERTH_PROVIDER", "nerdctl")], dir.path(), &[], 0)).unwrap_err().to_string();
        assert!(err.contains("BERTH_PROVIDER=\"nerdctl\"") && err.contains("use docker or podman"), "{err}");
    }

    #[test]
    fn podman_is_found_on_its_own_only_where_docker_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pick = |vars: &[(&str, &str)], present: &[&str]| resolve(&host(vars, dir.path(), present, 0)).unwrap();
        // Only Podman's socket: Podman.
        let e = pick(&[], &[PODMAN_ROOTFUL_SOCKET]);
        assert_eq!(e.provider, Provider::Podman);
        assert!(e.source.contains("no Docker socket"), "{}", e.source);
        // Both: Docker, as before Podman was known.
        assert_eq!(pick(&[], &[PODMAN_ROOTFUL_SOCKET, "/var/run/docker.sock"]).provider, Provider::Docker);
        // Neither: Docker's default socket, whose absence the connection then names.
        assert_eq!(pick(&[], &[]).host, DEFAULT_HOST);
        // A Docker endpoint named by the user wins, even with no Docker socket on this host.
        assert_eq!(pick(&[("DOCKER_HOST", "tcp://10.0.0.5:2375")], &[PODMAN_ROOTFUL_SOCKET]).host, "tcp://10.0.0.5:2375");
        // BERTH_PROVIDER=docker never falls over to Podman.
        assert_eq!(pick(&[("BERTH_PROVIDER", "docker")], &[PODMAN_ROOTFUL_SOCKET]).provider, Provider::Docker);
    }

    /// A context as `docker context create NAME --docker host=HOST` writes it.
    fn make_context(dir: &Path, name: &str, host: &str, tls: bool) {
        let id = hex(&Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        let body = serde_json::json!({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}});
        std::fs::write(meta.join("meta.json"), body.to_string()).unwrap();
        if tls {
            let t = dir.join("contexts/tls").join(&id).join("docker");
            std::fs::create_dir_all(&t).unwrap();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(t.join(f), "x").unwrap();
            }
        }
    }

    #[test]
    fn docker_host_wins_then_the_context_then_the_default_socket() {
        let dir = tempfile::tempdir().unwrap();
        make_context(dir.path(), "rootless", "unix:///run/user/1000/docker.sock", false);
        std::fs::write(dir.path().join("config.json"), r#"{"currentContext": "rootless"}"#).unwrap();
        let e = resolve(&env(&[], dir.path())).unwrap();
        assert_eq!((e.host.as_str(), e.source.as_str()), ("unix:///run/user/1000/docker.sock", "docker context \"rootless\""));
        let e = resolve(&env(&[("DOCKER_HOST", "unix:///tmp/d.sock")], dir.path())).unwrap();
        assert_eq!(e.host, "unix:///tmp/d.sock");
        let e = resolve(&env(&[("DOCKER_CONTEXT", "default")], dir.path())).unwrap();
        assert_eq!(e.host, DEFAULT_HOST, "DOCKER_CONTEXT overrides config.json");
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert_eq!(resolve(&env(&[], dir.path())).unwrap().host, DEFAULT_HOST);
        let err = resolve(&env(&[("DOCKER_CONTEXT", "nope")], dir.path())).unwrap_err();
        assert!(err.to_string().contains("docker context \"nope\" (DOCKER_CONTEXT) has no metadata"), "{err}");
    }

    #[test]
    fn tls_comes_from_the_environment_or_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(&env(
            &[("DOCKER_HOST", "tcp://10.0.0.5:2376"), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")],
            dir.path(),
        ))
        .unwrap();
        assert_eq!(e.tls, Some(Tls { key: "/certs/key.pem".into(), cert: "/certs/cert.pem".into(), ca: "/certs/ca.pem".into() }));
        assert!(resolve(&env(&[("DOCKER_HOST", "tcp://h:2375")], dir.path())).unwrap().tls.is_none());
        make_context(dir.path(), "remote", "tcp://10.0.0.5:2376", true);
        let e = resolve(&env(&[("DOCKER_CONTEXT", "remote")], dir.path())).unwrap();
        assert!(e.tls.unwrap().ca.ends_with("docker/ca.pem"));
    }

    #[test]
    fn rootless_is_read_from_the_security_options() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_rootless(&opts(&["name=seccomp,profile=default", "name=rootless", "name=cgroupns"])));
        assert!(!is_rootless(&opts(&["name=apparmor", "name=seccomp,profile=default"])));
        assert!(!is_rootless(&[]));
    }

    #[test]
    fn remote_means_another_machine() {
        let at = |host: &str| Endpoint { host: host.into(), tls: None, source: String::new(), provider: Provider::Docker }.is_remote();
        assert!(!at("unix:///var/run/docker.sock"));
        assert!(!at("tcp://127.0.0.1:2375") && !at("tcp://localhost:2375") && !at("tcp://[::1]:2375"));
        assert!(at("tcp://10.0.0.5:2376") && at("ssh://me@build-box") && at("https://docker.example:2376"));
    }
}
