//! Cluster configuration: the file a user writes (`--config`), read into typed structs.
//!
//! This module owns the public, versioned shape of the config ([`v1alpha4`]: kind's
//! `kind.x-k8s.io/v1alpha4` and berth's own `berth.dev/v1alpha1`, which share one schema),
//! strict decoding that rejects unknown fields, the defaulted model berth works with
//! ([`model`], filled in one place), and validation of both. It knows nothing about Docker:
//! the cluster module turns a validated [`Cluster`] into containers and kubeadm configs.

pub mod model;
pub mod v1alpha4;
mod validate;

use std::path::{Path, PathBuf};

pub use model::*;
pub use validate::{fixed_host_ports, validate, validate_cluster_name, Cidr, NameError, MAX_CLUSTER_NAME};

/// The apiVersions berth reads. kind's is accepted so a user's kind config works unchanged.
pub const BERTH_API_VERSION: &str = "berth.dev/v1alpha1";
pub const KIND_API_VERSION: &str = "kind.x-k8s.io/v1alpha4";

/// Files larger than this are refused before parsing: no real cluster config comes near it,
/// and a parser fed gigabytes should not be how a typo is discovered.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is {size} bytes; berth reads at most {MAX_CONFIG_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {}", .problems.join("; "))]
    Invalid { origin: String, problems: Vec<String> },
}

/// Reads, decodes, defaults and validates a config file.
pub fn load(path: &Path) -> Result<Cluster, ConfigError> {
    let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), size });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse(&text, &path.display().to_string())
}

/// Reads, decodes, defaults and validates a config from standard input (`--config -`).
pub fn read_stdin() -> Result<Cluster, ConfigError> {
    use std::io::Read;
    let path = PathBuf::from("-");
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    parse(&text, "standard input")
}

/// Decodes and validates config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Cluster, ConfigError> {
    let parse_err = |message: String| ConfigError::Parse { origin: origin.to_string(), message };
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(parse_err(format!("config is {} bytes; berth reads at most {MAX_CONFIG_BYTES}", text.len())));
    }
    let file: v1alpha4::Cluster = serde_yaml::from_str(text).map_err(|e| parse_err(describe_yaml_error(&e)))?;
    let problems = validate::validate_document(&file);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { origin: origin.to_string(), problems });
    }
    let cluster = Cluster::from_file(file);
    let problems = validate(&cluster);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { origin: origin.to_string(), problems });
    }
    Ok(cluster)
}

/// serde's message already names the field path and the line; add the hint users need most.
fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    if msg.contains("unknown field") {
        format!("{msg} (remove the field or fix its spelling; see configs/ for examples)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests;
