//! Which Docker daemon berth talks to, decided as the docker CLI decides it: `DOCKER_HOST`
//! (with `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` for TLS), else the current context —
//! `DOCKER_CONTEXT`, else `currentContext` in the docker CLI's config.json — whose endpoint and
//! TLS material live under `contexts/` beside it (rootless Docker and Docker Desktop set one),
//! else the default socket.

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
}

impl Env {
    pub fn current() -> Env {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config_dir =
            get("DOCKER_CONFIG").map(PathBuf::from).or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".docker")));
        Env { get: Box::new(get), config_dir }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("docker context {name:?} ({source_name}) has no metadata at {path}; `docker context ls` lists the contexts there are")]
    UnknownContext { name: String, source_name: String, path: PathBuf },
    #[error("docker context {name:?}: {reason}")]
    BadContext { name: String, reason: String },
}

/// The endpoint the docker CLI would use.
pub fn resolve(env: &Env) -> Result<Endpoint, EndpointError> {
    if let Some(host) = (env.get)("DOCKER_HOST") {
        let tls = (env.get)("DOCKER_TLS_VERIFY").filter(|v| v != "0").map(|_| {
            let dir = (env.get)("DOCKER_CERT_PATH").map(PathBuf::from).or_else(|| env.config_dir.clone()).unwrap_or_default();
            Tls::in_dir(&dir)
        });
        return Ok(Endpoint { host, tls, source: "DOCKER_HOST".into() });
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
    Ok(Endpoint { host, tls, source: format!("docker context {name:?}") })
}

fn default_endpoint() -> Endpoint {
    Endpoint { host: DEFAULT_HOST.into(), tls: None, source: "the default socket".into() }
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
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env { get: Box::new(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())), config_dir: Some(config_dir.into()) }
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
        let at = |host: &str| Endpoint { host: host.into(), tls: None, source: String::new() }.is_remote();
        assert!(!at("unix:///var/run/docker.sock"));
        assert!(!at("tcp://127.0.0.1:2375") && !at("tcp://localhost:2375") && !at("tcp://[::1]:2375"));
        assert!(at("tcp://10.0.0.5:2376") && at("ssh://me@build-box") && at("https://docker.example:2376"));
    }
}
