//! `containerdConfigPatches` and `containerdConfigPatchesJSON6902`, applied to a node's
//! `/etc/containerd/config.toml` as kind applies them: the file is read as JSON, each TOML
//! patch is merged in as a JSON merge patch (RFC 7386) — skipped when it names another config
//! `version` than the file's — then each RFC 6902 patch is applied, and the result written
//! back as TOML. Running containerd is the cluster module's job; waiting for a containerd
//! just (re)started to answer ([`wait_until_answers`]) is shared by create and node-image
//! builds.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ContainerdPatchError {
    #[error("the node's containerd config is not TOML: {0}")]
    Config(String),
    #[error("containerdConfigPatches[{index}]: is not TOML: {message}")]
    Merge { index: usize, message: String },
    #[error("containerdConfigPatchesJSON6902[{index}]: {message}")]
    Json6902 { index: usize, message: String },
    #[error("the patched containerd config cannot be written as TOML: {0}")]
    Encode(String),
}

type Result<T, E = ContainerdPatchError> = std::result::Result<T, E>;

fn to_json(text: &str) -> Result<Value, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

fn config_version(config: &Value) -> Option<i64> {
    config.get("version").and_then(Value::as_i64)
}

/// `config` with every patch applied.
pub fn patch(config: &str, merge: &[String], json6902: &[String]) -> Result<String> {
    let mut doc = to_json(config).map_err(ContainerdPatchError::Config)?;
    let version = config_version(&doc);
    for (index, text) in merge.iter().enumerate() {
        let patch = to_json(text).map_err(|message| ContainerdPatchError::Merge { index, message })?;
        if config_version(&patch).is_some_and(|v| Some(v) != version) {
            continue;
        }
        json_patch::merge(&mut doc, &patch);
    }
    for (index, text) in json6902.iter().enumerate() {
        let ops = crate::patches::parse_json6902(text).map_err(|message| ContainerdPatchError::Json6902 { index, message })?;
        json_patch::patch(&mut doc, &ops).map_err(|e| ContainerdPatchError::Json6902 { index, message: e.to_string() })?;
    }
    toml::to_string(&doc).map_err(|e| ContainerdPatchError::Encode(e.to_string()))
}

/// Waits until the containerd in `container` answers (`ctr version` succeeds), asking every
/// 100 ms until `deadline`; on a timeout, the last answer is the detail.
pub async fn wait_until_answers(
    runtime: &dyn crate::runtime::Runtime,
    container: &str,
    what: &str,
    deadline: tokio::time::Instant,
) -> Result<(), crate::wait::Ended<crate::runtime::RuntimeError>> {
    use crate::wait::Check;
    crate::wait::until(what, deadline, std::time::Duration::from_millis(100), crate::wait::poll_only(), || async {
        match runtime.exec(container, &["ctr", "version"]).await {
            Ok(out) if out.code == 0 => Check::Done(()),
            Ok(out) => Check::NotYet(out.tail(3)),
            Err(e) => Check::Failed(e),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
"#;

    #[test]
    fn merges_tables_and_keeps_the_rest() {
        let registry = r#"[plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:5001"]
endpoint = ["http://kind-registry:5000"]
"#;
        let out = patch(CONFIG, &[registry.into()], &[]).unwrap();
        let doc = to_json(&out).unwrap();
        let cri = &doc["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["registry"]["mirrors"]["localhost:5001"]["endpoint"][0], "http://kind-registry:5000");
        assert_eq!(cri["sandbox_image"], "registry.k8s.io/pause:3.9");
        assert_eq!(cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"], false);
        assert_eq!(doc["version"], 2);
    }

    #[test]
    fn a_patch_for_another_config_version_is_skipped() {
        let out = patch(CONFIG, &["version = 3\n[plugins.x]\na = 1\n".into()], &[]).unwrap();
        assert!(!out.contains("plugins.x"), "{out}");
    }

    #[test]
    fn json6902_patches_apply_after_merges() {
        let ops = r#"[{"op": "replace", "path": "/plugins/io.containerd.grpc.v1.cri/sandbox_image", "value": "pause:x"}]"#;
        let out = patch(CONFIG, &[], &[ops.into()]).unwrap();
        assert_eq!(to_json(&out).unwrap()["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"], "pause:x");
        let bad = patch(CONFIG, &[], &[r#"[{"op": "remove", "path": "/nothing"}]"#.into()]).unwrap_err();
        assert!(bad.to_string().starts_with("containerdConfigPatchesJSON6902[0]:"), "{bad}");
        let not_toml = patch(CONFIG, &["[unclosed".into()], &[]).unwrap_err();
        assert!(not_toml.to_string().starts_with("containerdConfigPatches[0]: is not TOML"), "{not_toml}");
    }
}
