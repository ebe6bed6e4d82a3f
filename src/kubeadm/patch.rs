//! The user's kubeadm patches, applied as kind applies them.
//!
//! - `kubeadmConfigPatches`: YAML mappings with a `kind` (and optionally an `apiVersion`),
//!   merged into every rendered document of that kind — of that apiVersion only when the patch
//!   names one — as JSON merge patches (RFC 7386: mappings merge, `null` deletes, anything else
//!   replaces), with two exceptions kind makes too: `certSANs` are added to berth's, not put in
//!   their place, and on kubeadm `v1beta4`, whose `extraArgs`/`kubeletExtraArgs` are lists of
//!   `{name, value}`, a map-shaped patch (the only shape older versions know) is merged into the
//!   list by name — the user's value wins, berth's other flags (`node-ip`) stay, `null` removes.
//!   So one patch file means the same flags on every Kubernetes version.
//! - `kubeadmConfigPatchesJSON6902`: RFC 6902 operations for the document whose apiVersion is
//!   `group/version` and whose kind is `kind`; applied after all merge patches.

use serde_json::{Map, Value};

use super::KubeadmError;
use crate::config::PatchJson6902;
use crate::patches::{parse_json6902, patch_target};

/// Applies merge patches, then RFC 6902 patches, to `docs`.
pub fn apply_patches(docs: &mut [Value], patches: &[String], json6902: &[PatchJson6902]) -> Result<(), KubeadmError> {
    for (i, text) in patches.iter().enumerate() {
        patch_target(text).map_err(|e| KubeadmError::Patch(format!("kubeadmConfigPatches[{i}] {e}")))?;
        let patch: Value = serde_yaml::from_str(text).expect("checked by patch_target");
        let kind = patch["kind"].as_str().unwrap_or_default();
        let patch_version = patch.get("apiVersion").and_then(Value::as_str);
        for doc in docs.iter_mut() {
            let doc_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
            let same_kind = doc.get("kind").and_then(Value::as_str) == Some(kind);
            if same_kind && patch_version.is_none_or(|v| v == doc_version) {
                let mut rest = patch.clone();
                merge_kubeadm_lists(doc, &mut rest, doc_version.ends_with("/v1beta4"), patch_version.is_none());
                json_patch::merge(doc, &rest);
            }
        }
    }
    for (i, p) in json6902.iter().enumerate() {
        let ops = parse_json6902(&p.patch).map_err(|e| KubeadmError::Patch(format!("kubeadmConfigPatchesJSON6902[{i}] {e}")))?;
        let api_version = if p.group.is_empty() { p.version.clone() } else { format!("{}/{}", p.group, p.version) };
        for doc in docs.iter_mut() {
            let same_kind = doc.get("kind").and_then(Value::as_str) == Some(p.kind.as_str());
            if same_kind && doc.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str()) {
                json_patch::patch(doc, &ops).map_err(|e| {
                    KubeadmError::Patch(format!("kubeadmConfigPatchesJSON6902[{i}] does not apply to {} {api_version}: {e}", p.kind))
                })?;
            }
        }
    }
    Ok(())
}

/// kind's special cases, taken out of `patch` before the plain merge: certSANs are appended;
/// on v1beta4 targets extra arguments are merged into the name/value list.
fn merge_kubeadm_lists(target: &mut Value, patch: &mut Value, v1beta4: bool, patch_unversioned: bool) {
    let (Some(target), Some(patch)) = (target.as_object_mut(), patch.as_object_mut()) else { return };
    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        match key.as_str() {
            "extraArgs" | "kubeletExtraArgs" if v1beta4 => {
                let value = patch.remove(&key).expect("listed key");
                let current = target.remove(&key).unwrap_or(Value::Null);
                target.insert(key, merge_args(current, &value, patch_unversioned));
            }
            "certSANs" => {
                let value = patch.remove(&key).expect("listed key");
                let list = target.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(list), Some(add)) = (list.as_array_mut(), value.as_array()) {
                    for san in add {
                        if !list.contains(san) {
                            list.push(san.clone());
                        }
                    }
                }
            }
            _ => {
                if patch[&key].is_object() {
                    let child = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                    merge_kubeadm_lists(child, patch.get_mut(&key).expect("listed key"), v1beta4, patch_unversioned);
                }
            }
        }
    }
}

/// A `[{name, value}]` list with `patch`'s arguments merged in by name.
fn merge_args(current: Value, patch: &Value, patch_unversioned: bool) -> Value {
    let as_list = |v: &Value| -> Vec<Value> {
        match v {
            Value::Array(items) => items.clone(),
            Value::Object(map) => map.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect(),
            _ => Vec::new(),
        }
    };
    let mut list = as_list(&current);
    // A map names v1beta3's shape: kind converts it only when the patch names no apiVersion.
    let changes = if patch.is_object() && !patch_unversioned { Vec::new() } else { as_list(patch) };
    for change in changes {
        let Some(name) = change.get("name").and_then(Value::as_str) else { continue };
        let value = change.get("value").cloned().unwrap_or(Value::Null);
        let at = list.iter().position(|item| item.get("name").and_then(Value::as_str) == Some(name));
        match (at, value.is_null()) {
            (Some(at), true) => {
                list.remove(at);
            }
            (Some(at), false) => list[at]["value"] = value,
            (None, false) => list.push(serde_json::json!({"name": name, "value": value})),
            (None, true) => {}
        }
    }
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_by_kind_deletes_nulls_and_adds_cert_sans() {
        let mut docs = vec![
            json!({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "apiServer": {"certSANs": ["a"], "extraArgs": {"v": "1"}}}),
            json!({"kind": "KubeletConfiguration", "failSwapOn": false}),
        ];
        let patch = "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    audit: \"x\"\n    v: null\n  certSANs: [b, a]\n";
        apply_patches(&mut docs, &[patch.to_string()], &[]).unwrap();
        assert_eq!(docs[0]["apiServer"]["extraArgs"], json!({"audit": "x"}));
        assert_eq!(docs[0]["apiServer"]["certSANs"], json!(["a", "b"]), "added to berth's, once each");
        assert_eq!(docs[1], json!({"kind": "KubeletConfiguration", "failSwapOn": false}));
    }

    #[test]
    fn map_shaped_args_merge_into_v1beta4_lists_by_name() {
        let mut docs = vec![json!({
            "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": [{"name": "node-ip", "value": "172.30.128.2"}, {"name": "v", "value": "1"}]},
        })];
        let patch = "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"50\"\n    v: \"4\"\n";
        apply_patches(&mut docs, &[patch.into()], &[]).unwrap();
        assert_eq!(
            docs[0]["nodeRegistration"]["kubeletExtraArgs"],
            json!([{"name": "node-ip", "value": "172.30.128.2"}, {"name": "v", "value": "4"}, {"name": "max-pods", "value": "50"}])
        );
        let list_patch = "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - {name: v, value: null}\n";
        apply_patches(&mut docs, &[list_patch.into()], &[]).unwrap();
        assert_eq!(docs[0]["nodeRegistration"]["kubeletExtraArgs"].as_array().unwrap().len(), 2, "null removes by name");
    }

    #[test]
    fn a_patch_naming_an_api_version_patches_only_that_version() {
        let mut docs = vec![json!({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration"})];
        let patch = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: other\n";
        apply_patches(&mut docs, &[patch.into()], &[]).unwrap();
        assert_eq!(docs[0].get("clusterName"), None);
    }

    #[test]
    fn json6902_patches_match_group_version_and_kind() {
        let mut docs = vec![
            json!({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "apiServer": {"extraArgs": {}}}),
            json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}),
        ];
        let p = PatchJson6902 {
            group: "kubeadm.k8s.io".into(),
            version: "v1beta3".into(),
            kind: "ClusterConfiguration".into(),
            patch: "- op: add\n  path: /apiServer/extraArgs/v\n  value: \"5\"\n".into(),
        };
        apply_patches(&mut docs, &[], std::slice::from_ref(&p)).unwrap();
        assert_eq!(docs[0]["apiServer"]["extraArgs"]["v"], "5");
        let wrong = PatchJson6902 { patch: "[{op: remove, path: /nothing}]".into(), ..p };
        let err = apply_patches(&mut docs, &[], &[wrong]).unwrap_err();
        assert!(err.to_string().contains("kubeadmConfigPatchesJSON6902[0] does not apply to ClusterConfiguration"), "{err}");
    }

    #[test]
    fn a_patch_without_kind_is_an_error() {
        let err = apply_patches(&mut [json!({})], &["foo: bar".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("no `kind`"));
    }
}
