use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::*;

const ADMIN_CONF: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://demo-control-plane:6443
  name: demo
contexts:
- context:
    cluster: demo
    user: kubernetes-admin
  name: kubernetes-admin@demo
current-context: kubernetes-admin@demo
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
";

const USER_FILE: &str = "apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    extensions:
    - name: vendor
      extension: {anything: kept}
users:
- name: prod
  user:
    exec: {command: get-token, apiVersion: client.authentication.k8s.io/v1}
contexts:
- name: prod
  context: {cluster: prod, user: prod, namespace: web}
current-context: prod
preferences: {colors: true}
x-unknown-top-level: still here
";

fn entries(cluster: &str) -> Value {
    for_cluster(ADMIN_CONF, cluster, "https://127.0.0.1:40000").unwrap()
}

fn names(doc: &Value, key: &str) -> Vec<String> {
    doc[key].as_sequence().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn for_cluster_renames_and_points_at_the_host_port() {
    let e = entries("demo");
    assert_eq!(e["current-context"].as_str(), Some("berth-demo"));
    assert_eq!(e["clusters"][0]["cluster"]["server"].as_str(), Some("https://127.0.0.1:40000"));
    assert_eq!(e["contexts"][0]["context"]["user"].as_str(), Some("berth-demo"));
    assert_eq!(e["users"][0]["user"]["client-key-data"].as_str(), Some("S0VZCg=="));
}

#[test]
fn merge_keeps_everything_else_and_remove_takes_only_ours() {
    let original: Value = serde_yaml::from_str(USER_FILE).unwrap();
    let mut doc = original.clone();
    merge(&mut doc, &entries("demo")).unwrap();
    assert_eq!(names(&doc, "contexts"), ["prod", "berth-demo"]);
    assert_eq!(doc["current-context"].as_str(), Some("berth-demo"));
    assert_eq!(doc["x-unknown-top-level"].as_str(), Some("still here"));
    assert_eq!(doc["clusters"][0], original["clusters"][0]);

    merge(&mut doc, &entries("demo")).unwrap();
    assert_eq!(names(&doc, "clusters"), ["prod", "berth-demo"], "merging twice replaces, never duplicates");

    assert!(remove(&mut doc, "berth-demo").unwrap());
    assert_eq!(doc["current-context"].as_str(), Some(""));
    doc["current-context"] = "prod".into();
    assert_eq!(doc, original);
    assert!(!remove(&mut doc, "berth-demo").unwrap());
}

#[test]
fn remove_keeps_current_context_pointing_elsewhere() {
    let mut doc: Value = serde_yaml::from_str(USER_FILE).unwrap();
    merge(&mut doc, &entries("demo")).unwrap();
    doc["current-context"] = "prod".into();
    remove(&mut doc, "berth-demo").unwrap();
    assert_eq!(doc["current-context"].as_str(), Some("prod"));
}

#[test]
fn file_round_trip_is_private_and_understood_by_kubectl() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/config");
    merge_into_file(&path, &entries("demo")).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!Path::new(&format!("{}.lock", path.display())).exists(), "the lock is released");
    if let Some(view) = kubectl(&path, &["config", "view", "-o", "jsonpath={.current-context}"]) {
        assert_eq!(view, "berth-demo");
    }
    assert!(remove_from_file(&path, "demo").unwrap());
    assert!(names(&read(&path).unwrap(), "contexts").is_empty());
}

/// The host's kubectl reading our file; None where no kubectl is installed.
fn kubectl(path: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("kubectl").arg("--kubeconfig").arg(path).args(args).output().ok()?;
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn fifty_concurrent_merges_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, USER_FILE).unwrap();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || merge_into_file(&path, &entries(&format!("c{i}"))))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let doc = read(&path).unwrap();
    let contexts = names(&doc, "contexts");
    assert_eq!(contexts.len(), 51, "{contexts:?}");
    for i in 0..50 {
        assert!(contexts.contains(&format!("berth-c{i}")), "missing berth-c{i}");
    }
    assert_eq!(doc["x-unknown-top-level"].as_str(), Some("still here"));
    if let Some(out) = kubectl(&path, &["config", "get-contexts", "-o", "name"]) {
        assert_eq!(out.lines().count(), 51);
    }
}

#[test]
fn a_file_that_is_not_yaml_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let garbage = "clusters: [unclosed\n\tnot: yaml: at all";
    std::fs::write(&path, garbage).unwrap();
    let err = merge_into_file(&path, &entries("demo")).unwrap_err();
    assert!(matches!(err, KubeconfigError::NotYaml { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);
    std::fs::write(&path, "- a list\n- not a config\n").unwrap();
    assert!(matches!(merge_into_file(&path, &entries("demo")), Err(KubeconfigError::NotYaml { .. })));
}

#[test]
fn an_unreadable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = merge_into_file(dir.path(), &entries("demo")).unwrap_err().to_string();
    assert!(err.contains("cannot read kubeconfig"), "{err}");
}

#[test]
fn a_held_lock_times_out_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let held = FileLock::acquire(&path, Duration::from_millis(10)).unwrap();
    let err = FileLock::acquire(&path, Duration::from_millis(200)).err().unwrap().to_string();
    assert!(err.contains("locked by another writer"), "{err}");
    drop(held);
    assert!(FileLock::acquire(&path, Duration::from_millis(10)).is_ok());
}

#[test]
fn default_path_prefers_explicit_then_kubeconfig_env() {
    assert_eq!(default_path(Some(Path::new("/x/y"))).unwrap(), Path::new("/x/y"));
}

mod fuzz {
    use proptest::prelude::*;
    use serde_yaml::Value;

    use super::super::*;
    use super::ADMIN_CONF;

    fn names(doc: &Value, key: &str) -> Vec<String> {
        doc[key].as_sequence().map(|s| s.iter().filter_map(|e| e["name"].as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whatever the user's file holds, merging then removing ours gives back every entry
        /// it had, and never panics.
        #[test]
        fn merge_then_remove_keeps_the_users_entries(
            existing in proptest::collection::vec("[a-z0-9@._-]{1,12}", 0..8),
            cluster in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
            extra in "[a-zA-Z]{1,8}",
        ) {
            let mut text = format!("apiVersion: v1\nkind: Config\n{extra}x: kept\nclusters:\n");
            for n in &existing {
                text.push_str(&format!("- name: \"{n}\"\n  cluster: {{server: https://x:1}}\n"));
            }
            text.push_str("contexts:\n");
            for n in &existing {
                text.push_str(&format!("- name: \"{n}\"\n  context: {{cluster: \"{n}\", user: \"{n}\"}}\n"));
            }
            let mut doc: Value = serde_yaml::from_str(&text).unwrap();
            let before = doc.clone();
            let ours = for_cluster(ADMIN_CONF, &cluster, "https://127.0.0.1:1").unwrap();
            merge(&mut doc, &ours).unwrap();
            prop_assert!(names(&doc, "contexts").contains(&context_name(&cluster)));
            remove(&mut doc, &context_name(&cluster)).unwrap();
            let mut kept = names(&before, "contexts");
            kept.retain(|n| *n != context_name(&cluster));
            prop_assert_eq!(names(&doc, "contexts"), kept);
            let extra_key = format!("{extra}x");
            prop_assert_eq!(doc[extra_key.as_str()].as_str(), Some("kept"));
        }

        /// Malformed kubeconfig shapes are errors, never panics.
        #[test]
        fn odd_shapes_never_panic(text in "\\PC{0,200}") {
            if let Ok(mut doc) = serde_yaml::from_str::<Value>(&text) {
                let ours = for_cluster(ADMIN_CONF, "c", "https://127.0.0.1:1").unwrap();
                let _ = merge(&mut doc, &ours);
                let _ = remove(&mut doc, "berth-c");
            }
        }
    }
}

#[test]
fn unmerge_gives_back_the_users_current_context() {
    let mut doc: Value = serde_yaml::from_str(
        "apiVersion: v1\nkind: Config\nclusters: [{name: keep, cluster: {server: 'https://k:6443'}}]\nusers: [{name: keep, user: {token: t}}]\ncontexts: [{name: keep, context: {cluster: keep, user: keep}}]\ncurrent-context: keep\n",
    )
    .unwrap();
    let before = doc.clone();
    let entries = for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap();
    merge(&mut doc, &entries).unwrap();
    assert_eq!(doc["current-context"].as_str(), Some("berth-demo"));
    assert!(unmerge(&mut doc, "berth-demo", Some("keep")).unwrap());
    assert_eq!(doc, before, "the file is as it was");

    // A file that had no current-context gets none back, not an empty string.
    let mut empty = Value::Null;
    merge(&mut empty, &entries).unwrap();
    unmerge(&mut empty, "berth-demo", None).unwrap();
    assert!(empty.get("current-context").is_none(), "{empty:?}");

    // If the user switched contexts meanwhile, their choice stands.
    merge(&mut doc, &entries).unwrap();
    doc["current-context"] = "keep".into();
    unmerge(&mut doc, "berth-demo", Some("other")).unwrap();
    assert_eq!(doc["current-context"].as_str(), Some("keep"));
}
