//! What `create cluster` is asked to do, as the CLI (or a library user) hands it over.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Cluster;
use crate::runtime::ModeRequest;

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub name: String,
    pub config: Cluster,
    /// The image for nodes whose config names none.
    pub image: String,
    /// How long to wait for Ready nodes; zero skips the wait.
    pub wait: Duration,
    pub retain: bool,
    pub kubeconfig_path: PathBuf,
    pub mode_request: ModeRequest,
    pub runtime: Option<String>,
    /// The haproxy image for the load balancer of clusters with several control planes.
    pub lb_image: String,
    /// When to pull node images.
    pub pull: PullPolicy,
}

#[cfg(test)]
impl CreateOptions {
    /// A one-node create of `name` on the test image that waits a minute, kubeconfig in /dev/null.
    pub fn for_tests(name: &str) -> CreateOptions {
        CreateOptions {
            name: name.into(),
            config: Cluster::default_config(),
            image: "berth-test/node:v1.20.2".into(),
            wait: Duration::from_secs(60),
            retain: false,
            kubeconfig_path: PathBuf::from("/dev/null"),
            mode_request: ModeRequest::Auto,
            runtime: None,
            lb_image: "berth-test/haproxy:1".into(),
            pull: PullPolicy::Never,
        }
    }
}

/// `--pull`: never surprise a user with "latest", but let them ask for a fresh image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only images that are not present locally.
    #[default]
    Missing,
    /// Pull every node image, even one that is present.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}
