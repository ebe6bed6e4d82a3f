//! The default pod network. Like kind, berth installs the manifest the node image carries at
//! /kind/manifests/default-cni.yaml (with `{{ .PodSubnet }}` filled in): berth's own images
//! bring berth-netd, kindest/node images bring kindnetd. It runs right after `kubeadm init`,
//! before other nodes join: the DaemonSet then starts on each node as it registers.

use super::{Ctx, Initialized};
use crate::cluster::{ClusterError, ImageError, Result};

pub const DEFAULT_CNI_MANIFEST: &str = "/kind/manifests/default-cni.yaml";

/// Fills kind's template variable; the manifests use no other.
pub fn render_manifest(manifest: &str, pod_subnet: &str) -> String {
    manifest.replace("{{ .PodSubnet }}", pod_subnet).replace("{{.PodSubnet}}", pod_subnet)
}

pub async fn run(ctx: &Ctx<'_>, cluster: &Initialized) -> Result<()> {
    let cp = ctx.control_plane().name.clone();
    let manifest = ctx.docker.exec(&cp, &["cat", DEFAULT_CNI_MANIFEST]).await?;
    if manifest.code != 0 || manifest.stdout.trim().is_empty() {
        return Err(ClusterError::from(ImageError::NoDefaultCni {
            image: ctx.control_plane().image.to_string(),
            manifest: DEFAULT_CNI_MANIFEST,
        }));
    }
    let rendered = render_manifest(&manifest.stdout, ctx.opts.config.pod_subnet());
    let applied = crate::kube::apply_manifest(&cluster.client, &rendered).await?;
    tracing::info!("applied {applied} objects from {DEFAULT_CNI_MANIFEST}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_manifest_renders_to_valid_objects() {
        let text = include_str!("../../../../node-image/manifests/default-cni.yaml");
        let out = render_manifest(text, "10.250.0.0/16");
        assert!(!out.contains("{{"), "every template variable is filled");
        let kinds: Vec<String> = out
            .split("\n---\n")
            .map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).unwrap()["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
        assert!(out.contains("value: \"10.250.0.0/16\""));
    }
}
