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

/// A node's admin.conf that asks for more than credentials: a command to run, a file on the
/// node, a proxy. Only the certificate and key reach the user's kubeconfig; with no credential
/// at all it is refused.
#[test]
fn only_credentials_are_copied_from_a_nodes_admin_conf() {
    let planted = ADMIN_CONF
        .replace("    server: https://demo-control-plane:6443", "    server: https://demo-control-plane:6443\n    proxy-url: http://evil:3128\n    insecure-skip-tls-verify: true")
        .replace("    client-key-data: S0VZCg==", "    client-key-data: S0VZCg==\n    exec: {command: /tmp/x, apiVersion: client.authentication.k8s.io/v1}\n    client-certificate: /etc/passwd");
    let e = for_cluster(&planted, "demo", "https://127.0.0.1:40000").unwrap();
    let user: Vec<_> = e["users"][0]["user"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(user, ["client-certificate-data", "client-key-data"]);
    let cluster: Vec<_> = e["clusters"][0]["cluster"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(cluster, ["certificate-authority-data", "server"]);
    let exec_only =
        ADMIN_CONF.replace("    client-certificate-data: Q0VSVAo=\n    client-key-data: S0VZCg==\n", "    exec: {command: /tmp/x}\n");
    let err = for_cluster(&exec_only, "demo", "https://127.0.0.1:40000").unwrap_err().to_string();
    assert!(err.contains("exec"), "{err}");
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
fn a_merge_against_a_held_lock_fails_and_leaves_the_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, USER_FILE).unwrap();
    let held = FileLock::acquire(&path, Duration::from_millis(10)).unwrap();
    let err = update_within(&path, Duration::from_millis(200), |doc| merge(doc, &entries("demo")).map(|_| true)).unwrap_err();
    assert!(matches!(err, KubeconfigError::Locked { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), USER_FILE, "not a byte changed");
    drop(held);
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
fn a_roll_back_puts_back_an_empty_current_context_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let before = "apiVersion: v1\nkind: Config\npreferences: {}\nclusters: []\nusers: []\ncontexts: []\ncurrent-context: ''\n";
    std::fs::write(&path, before).unwrap();
    assert_eq!(current_context(&path).unwrap().as_deref(), Some(""));
    let record = MergeRecord::default();
    record.merge(&path, &for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap()).unwrap();
    // Someone else writes in between, so the take-back edits rather than restores the bytes.
    merge_into_file(&path, &for_cluster(ADMIN_CONF, "other", "https://127.0.0.1:4321").unwrap()).unwrap();
    update(&path, |doc| remove(doc, "berth-other")).unwrap();
    record.take_back(&path, "demo").unwrap();
    let after: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(after, serde_yaml::from_str::<Value>(before).unwrap(), "the file is as it was");
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

#[test]
fn the_file_written_follows_kubectls_rules_for_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let env = std::env::join_paths([&a, &b, &a, &c]).unwrap();
    let list = paths_from(None, Some(env)).unwrap();
    assert_eq!(list, [a.clone(), b.clone(), c.clone()], "repeats dropped, order kept");
    assert_eq!(path_for_merge(&list), c, "none exists: the last");
    std::fs::write(&b, "").unwrap();
    assert_eq!(path_for_merge(&list), b, "the first that exists");
    assert_eq!(paths_from(Some(&a), Some("x:y".into())).unwrap(), [a], "--kubeconfig alone");
}

#[test]
fn a_symlinked_kubeconfig_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("dotfiles/kubeconfig");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, USER_FILE).unwrap();
    let link = dir.path().join("config");
    std::os::unix::fs::symlink("dotfiles/kubeconfig", &link).unwrap();
    merge_into_file(&link, &entries("demo")).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced by a file");
    let doc = read(&real).unwrap();
    assert_eq!(names(&doc, "contexts"), ["prod", "berth-demo"], "written through the link");
}

/// Needs root (chown to another user): it runs with the real tests (`BERTH_E2E=1`, as
/// `scripts/test` runs them, as root) and fails, rather than passing, when not root there.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "needs root to chown: runs with BERTH_E2E=1 (scripts/test, as root)")]
fn the_owner_is_kept_and_sudo_gives_new_files_to_the_user() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test chowns files to another user: run it as root");
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing");
    std::fs::write(&existing, USER_FILE).unwrap();
    std::os::unix::fs::chown(&existing, Some(65534), Some(65534)).unwrap();
    write_as(&existing, &read(&existing).unwrap(), None).unwrap();
    assert_eq!(std::fs::metadata(&existing).unwrap().uid(), 65534, "an existing file keeps its owner");

    // Under sudo, a new ~/.kube/config in the invoking user's home is that user's.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let path = home.join(".kube/config");
    write_as(&path, &entries("demo"), Some((65534, 65534))).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 65534);
    assert_eq!(std::fs::metadata(home.join(".kube")).unwrap().uid(), 65534);
    // ... but not one in a directory that is not theirs (root's own, say).
    let roots = dir.path().join("root-owned/config");
    write_as(&roots, &entries("demo"), Some((65534, 65534))).unwrap();
    assert_eq!(std::fs::metadata(&roots).unwrap().uid(), 0);
}

#[test]
fn a_lock_left_behind_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    check_unlocked(&path).unwrap();
    std::fs::write(dir.path().join("config.lock"), "").unwrap();
    let err = check_unlocked(&path).unwrap_err();
    assert!(matches!(&err, KubeconfigError::Locked { lock, .. } if lock.ends_with("config.lock")), "{err}");
}

const THEIRS: &str = "# my clusters\napiVersion: v1\nkind: Config\nclusters: [{name: keep, cluster: {server: 'https://k:6443'}}]\nusers: [{name: keep, user: {token: t}}]\ncontexts: [{name: keep, context: {cluster: keep, user: keep}}]\ncurrent-context: keep\n";

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A create that does not finish leaves the user's file as it was, to the byte (comments,
/// flow style) and the mode, not merely the same entries.
#[test]
fn a_merge_taken_back_leaves_the_file_byte_for_byte() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, THEIRS).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let record = MergeRecord::default();
    record.merge(&path, &for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap()).unwrap();
    assert!(std::fs::read_to_string(&path).unwrap().contains("berth-demo"));
    record.take_back(&path, "demo").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), THEIRS);
    assert_eq!(mode_of(&path), 0o640);
}

#[test]
fn a_merge_into_no_file_taken_back_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".kube/config");
    let record = MergeRecord::default();
    record.merge(&path, &for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap()).unwrap();
    record.take_back(&path, "demo").unwrap();
    assert!(!path.exists());
}

/// Someone wrote the file between the merge and the take-back: their change stays, only the
/// cluster's entries go.
#[test]
fn a_take_back_after_another_write_keeps_that_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, THEIRS).unwrap();
    let record = MergeRecord::default();
    record.merge(&path, &for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap()).unwrap();
    merge_into_file(&path, &for_cluster(ADMIN_CONF, "other", "https://127.0.0.1:4321").unwrap()).unwrap();
    record.take_back(&path, "demo").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("berth-other") && !text.contains("berth-demo") && text.contains("keep"), "{text}");
}

/// An interrupt can reach the take-back before the blocking write has begun: the write then
/// never happens.
#[test]
fn a_take_back_before_the_merge_keeps_it_from_landing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, THEIRS).unwrap();
    let record = MergeRecord::default();
    record.take_back(&path, "demo").unwrap();
    record.merge(&path, &for_cluster(ADMIN_CONF, "demo", "https://127.0.0.1:1234").unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), THEIRS);
}
