//! The default StorageClass. Like kind, berth applies the node image's
//! /kind/manifests/default-storage.yaml right after the pod network: kindest/node images bring
//! local-path-provisioner, berth's images a StorageClass served by kube-controller-manager's
//! own host-path provisioner (switched on in the kubeadm config when the manifest names it).
//! An image with neither gets a warning: a PersistentVolumeClaim would never bind.

use super::{Ctx, Initialized, Provisioned};
use crate::cluster::Result;
use crate::runtime::Runtime;

pub const DEFAULT_STORAGE_MANIFEST: &str = "/kind/manifests/default-storage.yaml";
/// kube-controller-manager's in-tree provisioner, on with `--enable-hostpath-provisioner`.
pub const HOSTPATH_PROVISIONER: &str = "kubernetes.io/host-path";

/// The node image's default-storage manifest, if it has one.
pub async fn read_manifest(docker: &dyn Runtime, node: &str) -> Result<Option<String>> {
    let out = docker.exec(node, &["cat", DEFAULT_STORAGE_MANIFEST]).await?;
    Ok((out.code == 0 && !out.stdout.trim().is_empty()).then_some(out.stdout))
}

/// Whether a StorageClass in `manifest` is served by kube-controller-manager's host-path
/// provisioner.
pub fn uses_hostpath_provisioner(manifest: &str) -> bool {
    use serde::Deserialize;
    // A document that does not parse ends the look: the parser cannot resume after it.
    serde_yaml::Deserializer::from_str(manifest)
        .map_while(|d| serde_yaml::Value::deserialize(d).ok())
        .any(|doc| doc["kind"].as_str() == Some("StorageClass") && doc["provisioner"].as_str() == Some(HOSTPATH_PROVISIONER))
}

pub async fn run(ctx: &mut Ctx<'_>, nodes: &Provisioned, cluster: &Initialized) -> Result<()> {
    let Some(manifest) = nodes.default_storage.as_deref() else {
        ctx.warn(format!(
            "node image {} carries no default StorageClass ({DEFAULT_STORAGE_MANIFEST}): PersistentVolumeClaims without a storageClassName will not bind until you install a provisioner",
            ctx.control_plane().image
        ));
        return Ok(());
    };
    let applied = crate::kube::apply_manifest(&cluster.client, manifest).await?;
    tracing::info!("applied {applied} objects from {DEFAULT_STORAGE_MANIFEST}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berths_manifest_is_a_default_class_for_the_hostpath_provisioner() {
        let text = include_str!("../../../../node-image/manifests/default-storage.yaml");
        assert!(uses_hostpath_provisioner(text));
        let sc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"].as_str(), Some("true"));
        assert_eq!(sc["metadata"]["name"].as_str(), Some("standard"), "kind's name, so charts written for kind find it");
    }

    #[test]
    fn other_provisioners_are_left_to_their_own_pods() {
        let kinds_own =
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard}\nprovisioner: rancher.io/local-path\n";
        assert!(!uses_hostpath_provisioner(kinds_own));
        assert!(!uses_hostpath_provisioner("not: [yaml"));
    }
}
