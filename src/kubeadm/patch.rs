//! kubeadmConfigPatches: each patch is a YAML mapping with a `kind` (and optionally an
//! `apiVersion`); it is merged into every rendered document of that kind as a JSON merge patch
//! (RFC 7386): mappings merge, `null` deletes, anything else replaces. This is what kind's
//! merge patches do to kubeadm's documents.

use serde_json::Value;

use super::KubeadmError;

pub fn apply_patches(docs: &mut [Value], patches: &[String]) -> Result<(), KubeadmError> {
    for (i, text) in patches.iter().enumerate() {
        let patch: Value = serde_yaml::from_str(text).map_err(|e| KubeadmError::Patch(format!("[{i}] is not YAML: {e}")))?;
        let kind = patch
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| KubeadmError::Patch(format!("[{i}] has no `kind` saying which document it patches")))?
            .to_string();
        let api_version = patch.get("apiVersion").and_then(Value::as_str).map(str::to_string);
        for doc in docs.iter_mut() {
            let same_kind = doc.get("kind").and_then(Value::as_str) == Some(kind.as_str());
            let same_version = api_version.as_deref().is_none_or(|v| doc.get("apiVersion").and_then(Value::as_str) == Some(v));
            if same_kind && same_version {
                merge(doc, &patch);
            }
        }
    }
    Ok(())
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_by_kind_and_deletes_nulls() {
        let mut docs = vec![
            json!({"kind": "ClusterConfiguration", "apiServer": {"certSANs": ["a"], "extraArgs": {"v": "1"}}}),
            json!({"kind": "KubeletConfiguration", "failSwapOn": false}),
        ];
        let patch = "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    audit: \"x\"\n    v: null\n  certSANs: [b]\n";
        apply_patches(&mut docs, &[patch.to_string()]).unwrap();
        assert_eq!(docs[0]["apiServer"]["extraArgs"], json!({"audit": "x"}));
        assert_eq!(docs[0]["apiServer"]["certSANs"], json!(["b"]));
        assert_eq!(docs[1], json!({"kind": "KubeletConfiguration", "failSwapOn": false}));
    }

    #[test]
    fn a_patch_without_kind_is_an_error() {
        let err = apply_patches(&mut [json!({})], &["foo: bar".into()]).unwrap_err();
        assert!(err.to_string().contains("no `kind`"));
    }
}
