//! Add-ons berth installs on request. kube-proxy and CoreDNS are kubeadm's own and not here.
//! Each add-on is a manifest of our own under `configs/addons/`, embedded at compile time, and
//! the images it runs: images the nodes lack are reported, never pulled behind the user's back.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::Client;

use crate::kube::KubeError;

pub const DASHBOARD: &str = "dashboard";
pub const DASHBOARD_MANIFEST: &str = include_str!("../configs/addons/dashboard.yaml");
pub const DASHBOARD_NAMESPACE: &str = "kubernetes-dashboard";
/// The images the manifest names, as containerd names them.
pub const DASHBOARD_IMAGES: &[&str] = &["docker.io/kubernetesui/dashboard:v2.7.0", "docker.io/kubernetesui/metrics-scraper:v1.0.8"];
pub const METRICS_SERVER: &str = "metrics-server";
pub const METRICS_SERVER_MANIFEST: &str = include_str!("../configs/addons/metrics-server.yaml");
pub const METRICS_SERVER_IMAGES: &[&str] = &["registry.k8s.io/metrics-server/metrics-server:v0.8.0"];

/// An add-on: its name (in `--addon` and `addons:`), manifest and images.
#[derive(Debug)]
pub struct Addon {
    pub name: &'static str,
    pub manifest: &'static str,
    pub images: &'static [&'static str],
    /// What works once its pods run, for the warning when they cannot.
    pub purpose: &'static str,
}

pub const ADDONS: &[Addon] = &[
    Addon { name: DASHBOARD, manifest: DASHBOARD_MANIFEST, images: DASHBOARD_IMAGES, purpose: "the Dashboard" },
    Addon { name: METRICS_SERVER, manifest: METRICS_SERVER_MANIFEST, images: METRICS_SERVER_IMAGES, purpose: "kubectl top" },
];

/// The add-on called `name`.
pub fn find(name: &str) -> Option<&'static Addon> {
    ADDONS.iter().find(|a| a.name == name)
}

/// Every add-on's name, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    ADDONS.iter().map(|a| a.name).collect()
}
/// The ServiceAccount `berth dashboard` asks tokens for (bound to cluster-admin).
pub const DASHBOARD_ADMIN: &str = "berth-dashboard-admin";
/// The shortest token the TokenRequest API issues.
pub const MIN_TOKEN_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no token was issued for {DASHBOARD_NAMESPACE}/{DASHBOARD_ADMIN}; is the dashboard add-on installed (`--addon dashboard`)?")]
    NoToken,
}

/// Applies an add-on's objects. Whether the nodes hold its images is the caller's question
/// (this module knows the catalogue and the API, not the container runtime).
pub async fn install(client: &Client, addon: &Addon) -> Result<(), AddonError> {
    crate::kube::apply_manifest(client, addon.manifest).await?;
    Ok(())
}

pub async fn dashboard_token(client: &Client, duration: Duration) -> Result<String, AddonError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), DASHBOARD_NAMESPACE);
    let seconds = duration.max(MIN_TOKEN_DURATION).as_secs() as i64;
    let request = TokenRequest { spec: TokenRequestSpec { expiration_seconds: Some(seconds), ..Default::default() }, ..Default::default() };
    let issued = match accounts.create_token_request(DASHBOARD_ADMIN, &Default::default(), &request).await {
        Err(kube::Error::Api(status)) if status.code == 404 => return Err(AddonError::NoToken),
        other => other?,
    };
    issued.status.map(|s| s.token).filter(|t| !t.is_empty()).ok_or(AddonError::NoToken)
}

/// The Dashboard through `kubectl proxy` (default port 8001): the proxy adds the credentials a
/// browser does not have.
pub fn dashboard_proxy_url() -> String {
    format!("http://localhost:8001/api/v1/namespaces/{DASHBOARD_NAMESPACE}/services/https:kubernetes-dashboard:/proxy/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(manifest: &str) -> Vec<String> {
        manifest
            .split("\n---\n")
            .map(|doc| {
                let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
                format!("{}/{}", v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap())
            })
            .collect()
    }

    #[test]
    fn metrics_server_has_what_its_deployment_documents_and_what_kind_users_add() {
        let have = objects(METRICS_SERVER_MANIFEST);
        for want in [
            "ServiceAccount/metrics-server",
            "ClusterRole/system:aggregated-metrics-reader",
            "ClusterRole/system:metrics-server",
            "RoleBinding/metrics-server-auth-reader",
            "ClusterRoleBinding/metrics-server:system:auth-delegator",
            "ClusterRoleBinding/system:metrics-server",
            "Service/metrics-server",
            "Deployment/metrics-server",
            "APIService/v1beta1.metrics.k8s.io",
        ] {
            assert!(have.contains(&want.to_string()), "missing {want}; have {have:?}");
        }
        for arg in ["--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname"] {
            assert!(METRICS_SERVER_MANIFEST.contains(arg), "{arg}");
        }
        for image in METRICS_SERVER_IMAGES {
            assert!(METRICS_SERVER_MANIFEST.contains(&format!("image: {image}")), "{image}");
        }
        assert_eq!(names(), ["dashboard", "metrics-server"]);
    }

    #[test]
    fn the_dashboard_manifest_has_what_upstream_deploys_and_no_skip_login() {
        let mut kinds = Vec::new();
        for doc in DASHBOARD_MANIFEST.split("\n---\n") {
            let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
            kinds.push(format!("{}/{}", v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap()));
        }
        for want in [
            "Namespace/kubernetes-dashboard",
            "ServiceAccount/kubernetes-dashboard",
            "Service/kubernetes-dashboard",
            "Secret/kubernetes-dashboard-certs",
            "Secret/kubernetes-dashboard-csrf",
            "Secret/kubernetes-dashboard-key-holder",
            "ConfigMap/kubernetes-dashboard-settings",
            "Role/kubernetes-dashboard",
            "ClusterRole/kubernetes-dashboard",
            "RoleBinding/kubernetes-dashboard",
            "ClusterRoleBinding/kubernetes-dashboard",
            "Deployment/kubernetes-dashboard",
            "Service/dashboard-metrics-scraper",
            "Deployment/dashboard-metrics-scraper",
            "ServiceAccount/berth-dashboard-admin",
        ] {
            assert!(kinds.contains(&want.to_string()), "missing {want}; have {kinds:?}");
        }
        assert!(!DASHBOARD_MANIFEST.contains("enable-skip-login"));
        assert!(!DASHBOARD_MANIFEST.contains("service-account-token"), "no long-lived token Secret");
        for image in DASHBOARD_IMAGES {
            let short = image.trim_start_matches("docker.io/");
            assert!(DASHBOARD_MANIFEST.contains(&format!("image: {short}")), "{short}");
        }
    }
}
