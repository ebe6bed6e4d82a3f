//! The syntax of the patches a cluster config carries (kubeadm merge patches, RFC 6902
//! operations for kubeadm's and containerd's configs): parsed here, in a leaf, so config
//! validation can refuse a malformed patch before anything runs without depending on the
//! modules that apply them (`kubeadm`, `containerd`).

use serde_json::Value;

/// The kinds of document berth renders for kubeadm, which a patch may name.
pub const KUBEADM_DOCUMENT_KINDS: &[&str] =
    &["InitConfiguration", "ClusterConfiguration", "JoinConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"];

/// The kind a merge patch names, or why it cannot be applied.
pub fn patch_target(text: &str) -> Result<String, String> {
    let patch: Value = serde_yaml::from_str(text).map_err(|e| format!("is not YAML: {e}"))?;
    if !patch.is_object() {
        return Err("must be a YAML mapping with a `kind` saying which document it patches".into());
    }
    patch.get("kind").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "has no `kind` saying which document it patches".into())
}

/// An RFC 6902 patch, written as YAML or JSON.
pub fn parse_json6902(text: &str) -> Result<json_patch::Patch, String> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| format!("is not YAML or JSON: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("is not a list of RFC 6902 operations: {e}"))
}
