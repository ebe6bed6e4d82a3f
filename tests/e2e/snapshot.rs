//! Warm clusters: `berth snapshot save`, `create cluster --from-snapshot`, `snapshot delete`, on
//! the default one-node cluster with a plain Deployment (no pinning, no tolerations).
//!
//! One cluster is saved once and restored three times over: the objects, the app and a claim's
//! data come back, a new Deployment schedules within 5 s (the old leader leases and the
//! controller-manager's restart do not hold it up), image layers are shared with the snapshot
//! rather than copied, a change in one copy (an object, a file in the claim, a file of a
//! container's image) is absent from the next, each restore runs on the spare /var copy made
//! before it (by the save, then by the restore before) and a restore without one copies, a
//! taken name or address is refused with nothing made, SIGINT mid-restore (on a spare, during
//! the copy, and after the kubeconfig was written) leaves nothing and the kubeconfig as it was,
//! SIGINT mid-save leaves nothing of that snapshot and a cluster that starts again, a snapshot
//! whose saved /var was pruned is refused by name, and `delete cluster` / `snapshot delete`
//! leave no volume behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn images_labelled(label: &str) -> Vec<String> {
    let out = docker(&["images", "-q", "--filter", &format!("label={label}")]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Nothing of `cluster` is left: no container, no volume, no copy helper.
fn assert_nothing_of(cluster: &str, when: &str) {
    assert_eq!(cluster_containers(cluster), Vec::<String>::new(), "{when}: containers left");
    assert_eq!(volumes_labelled(&format!("dev.berth.cluster={cluster}")), Vec::<String>::new(), "{when}: volumes left");
    let helpers = docker(&["ps", "-aq", "--filter", "name=berth-copy"]);
    assert_eq!(String::from_utf8_lossy(&helpers.stdout).trim(), "", "{when}: copy helpers left");
}

/// `/data/FILE` as the restarted `keeper` pod reads it, once it runs again.
fn read_note(kc: &Path, file: &str) -> String {
    let path = format!("/data/{file}");
    eventually("the keeper pod runs again and reads its claim", Duration::from_secs(120), || {
        let o = kubectl(kc, &["exec", "keeper", "--", "cat", &path]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    })
}

fn restore(kc: &Path, snapshot: &str) -> std::process::Output {
    berth(kc).args(["create", "cluster", "--from-snapshot", snapshot]).output().unwrap()
}

fn restore_ok(kc: &Path, snapshot: &str) {
    let out = restore(kc, snapshot);
    assert!(out.status.success(), "restore failed:\n{}", text(&out).1);
}

/// The snapshot's ready spare /var copies, by marker: (spare volume, marker volume).
fn ready_spares(snapshot: &str) -> Vec<(String, String)> {
    let out = docker(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=dev.berth.snapshot={snapshot}"),
        "--filter",
        "label=dev.berth.spare.ready",
        "--format",
        "{{.Label \"dev.berth.spare.ready\"}} {{.Name}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(spare, marker)| (spare.to_string(), marker.to_string())))
        .collect()
}

/// The snapshot holds its saved /var of `node` and exactly one ready spare of it, and no other
/// spare but the one a running restored node uses (`in_use`): none claimed by a restore that is
/// gone, none cut short. Returns the ready spare.
fn assert_one_ready_spare(snapshot: &str, node: &str, in_use: Option<&str>, when: &str) -> String {
    let ready = ready_spares(snapshot);
    assert_eq!(ready.len(), 1, "{when}: ready spares {ready:?}");
    let (spare, marker) = &ready[0];
    let mut all = volumes_labelled(&format!("dev.berth.snapshot={snapshot}"));
    all.sort();
    let mut expected = vec![format!("berth-snapshot-{snapshot}-{node}-var"), spare.clone(), marker.clone()];
    expected.extend(in_use.map(str::to_string));
    expected.sort();
    assert_eq!(all, expected, "{when}: the snapshot's volumes");
    spare.clone()
}

/// The named volume a node's container keeps its /var on.
fn var_volume_of(node: &str) -> String {
    let out = run_ok(Command::new("docker").args([
        "inspect",
        node,
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/var\"}}{{.Name}}{{end}}{{end}}",
    ]));
    out.trim().to_string()
}

/// SIGINT to berth running `args` once `ready` says so; it must exit failing, saying it was
/// interrupted and what it removed.
fn interrupt(kc: &Path, args: &[&str], what: &str, ready: impl Fn() -> bool) {
    let mut child = berth(kc).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let began = Instant::now();
    while !ready() {
        assert!(began.elapsed() < Duration::from_secs(90), "{what}: the moment to interrupt never came");
        assert!(child.try_wait().unwrap().is_none(), "{what}: berth ended before the interrupt");
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: an interrupted command must fail");
    assert!(stderr.contains("interrupted") && stderr.contains("removed"), "{what}: {stderr}");
}

fn interrupt_restore(kc: &Path, snapshot: &str, what: &str, ready: impl Fn() -> bool) {
    interrupt(kc, &["create", "cluster", "--from-snapshot", snapshot], what, ready);
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_saved_cluster_restores_with_its_objects_and_apps_and_each_copy_is_its_own() {
    let Some(t) = test_cluster("a_saved_cluster_restores_with_its_objects_and_apps_and_each_copy_is_its_own", "snap") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    let snapshot = format!("warm-{name}");
    let _snapshot_guard = SnapshotGuard { snapshot: snapshot.clone(), cluster: name.clone(), kubeconfig: kc.clone() };

    run_ok(berth(&kc).args(["create", "cluster", "--name", name, "--image", &test_image()]));
    run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    kubectl_ok(&kc, &["create", "configmap", "kept", "--from-literal=answer=42"]);
    let serve = "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 8080 -h /www";
    kubectl_ok(&kc, &["create", "deployment", "web", "--image", TOOLBOX, "--", "sh", "-c", serve]);
    kubectl_ok(&kc, &["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);
    // A claim with data in it (the default StorageClass keeps volumes on the node's /var).
    let claim = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 10Mi}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: keeper}}\nspec:\n  containers:\n  - name: main\n    image: {TOOLBOX}\n    command: [sh, -c, 'echo saved-with-the-snapshot > /data/note && exec sleep infinity']\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n"
    );
    let manifest = t.dir.path().join("claim.yaml");
    std::fs::write(&manifest, claim).unwrap();
    run_ok(kubectl_cmd(&kc).args(["apply", "-f"]).arg(&manifest));
    kubectl_ok(&kc, &["wait", "--for=condition=Ready", "pod/keeper", "--timeout=120s"]);

    // Save: the cluster stops, and the snapshot is listed with its node.
    let out = berth(&kc).args(["snapshot", "save", &snapshot, "--name", name]).output().unwrap();
    assert!(out.status.success(), "save failed:\n{}", text(&out).1);
    let states =
        run_ok(Command::new("docker").args(["ps", "-a", "--filter", &format!("label=dev.berth.cluster={name}"), "--format", "{{.State}}"]));
    assert_eq!(states.trim(), "exited", "save leaves the cluster stopped");
    let listed = run_ok(berth(&kc).args(["snapshot", "list", "-o", "wide"]));
    let row = listed.lines().find(|l| l.starts_with(&format!("{snapshot} "))).unwrap_or_else(|| panic!("not listed:\n{listed}"));
    assert!(row.contains(name.as_str()) && row.contains(&test_image_version()), "{row}");
    let node = format!("{name}-control-plane");
    let made_by_save = assert_one_ready_spare(&snapshot, &node, None, "after the save");

    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert_nothing_of(name, "after deleting the saved cluster");
    assert_one_ready_spare(&snapshot, &node, None, "deleting the cluster keeps the snapshot");

    // A cluster made meanwhile leaves the snapshot's address free (the last full suite once saw
    // a parallel test's node take it, and the restore was refused), and runs beside the copy.
    let saved_address = run_ok(Command::new("docker").args([
        "image",
        "inspect",
        &format!("berth-snapshot/{snapshot}:{name}-control-plane"),
        "--format",
        "{{index .Config.Labels \"dev.berth.snapshot.address\"}}",
    ]));
    let neighbour = format!("{name}-n");
    let _neighbour_guard = ClusterGuard { name: neighbour.clone(), kubeconfig: kc.clone() };
    run_ok(berth(&kc).args(["create", "cluster", "--name", &neighbour, "--image", &test_image(), "--wait", "0"]));
    let taken = run_ok(Command::new("docker").args([
        "inspect",
        &format!("{neighbour}-control-plane"),
        "--format",
        "{{(index .NetworkSettings.Networks \"berth\").IPAddress}}",
    ]));
    assert_ne!(taken.trim(), saved_address.trim(), "a new node took the snapshot's address");

    // First copy: everything is back, and the scheduler works at once. It runs on the spare the
    // save made, and has made the next one.
    restore_ok(&kc, &snapshot);
    assert_eq!(var_volume_of(&node), made_by_save, "the first restore did not run on the save's spare");
    let made_by_first = assert_one_ready_spare(&snapshot, &node, Some(made_by_save.as_str()), "after the first restore");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", &neighbour]));
    assert_eq!(kubectl_ok(&kc, &["get", "configmap", "kept", "-o", "jsonpath={.data.answer}"]), "42");
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=60s"]);
    eventually("the restored app serves", Duration::from_secs(60), || {
        let o = kubectl(&kc, &["exec", "deploy/web", "--", "curl", "-s", "--max-time", "5", "http://127.0.0.1:8080/"]);
        let body = String::from_utf8_lossy(&o.stdout).into_owned();
        if body.contains("hello-from-web") {
            Ok(())
        } else {
            Err(format!("{body}{}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    let took = time_to_schedule(&kc, "fresh");
    assert!(took < Duration::from_secs(5), "scheduling right after the restore took {took:?}");
    assert_eq!(read_note(&kc, "note"), "saved-with-the-snapshot", "the claim's data came back");
    // Cluster DNS answers in the restored cluster: the Service by name, from another pod.
    curl_from_pod(&kc, "the restored Service answers by name", "keeper", "web.default", "hello-from-web", Duration::from_secs(30));
    kubectl_ok(&kc, &["exec", "keeper", "--", "sh", "-c", "echo first > /data/only-in-the-first-copy"]);
    kubectl_ok(&kc, &["create", "configmap", "only-in-the-first-copy"]);
    // Image layers are shared with the snapshot, not copied (a restore's copy was most of its
    // /var); a container that changes a file of its image changes its own copy of it.
    let shared = run_ok(Command::new("docker").args([
        "exec",
        &node,
        "find",
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
        "-path",
        "*/fs/usr/local/bin/kube-apiserver",
        "-links",
        "+1",
    ]));
    assert!(!shared.trim().is_empty(), "the API server's image layer was copied, not shared with the snapshot");
    kubectl_ok(&kc, &["exec", "deploy/web", "--", "sh", "-c", "echo changed-in-the-first-copy >> /etc/passwd"]);
    let out = berth(&kc).args(["snapshot", "delete", &snapshot]).output().unwrap();
    assert!(!out.status.success() && text(&out).1.contains("in use by cluster"), "deleting a snapshot in use: {}", text(&out).1);

    // A second restore while the first copy exists is refused, and makes nothing.
    let volumes_before = volumes_labelled("dev.berth.restored-from").len();
    let out = restore(&kc, &snapshot);
    assert!(!out.status.success() && text(&out).1.contains("already exists"), "{}", text(&out).1);
    assert_eq!(volumes_labelled("dev.berth.restored-from").len(), volumes_before, "a refused restore made a volume");
    assert_eq!(
        assert_one_ready_spare(&snapshot, &node, Some(made_by_save.as_str()), "after a refused restore"),
        made_by_first,
        "a refused restore took the spare"
    );

    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert_nothing_of(name, "after deleting the first copy");
    assert_eq!(
        assert_one_ready_spare(&snapshot, &node, None, "after deleting the first copy"),
        made_by_first,
        "the claimed spare was not removed"
    );

    // Second copy, on the spare the first restore made: the snapshot's objects, not the first
    // copy's change.
    let since = now_rfc3339();
    restore_ok(&kc, &snapshot);
    assert_eq!(var_volume_of(&node), made_by_first, "the second restore did not run on the first's spare");
    all_ready_since(&kc, 1, &since).unwrap();
    assert_eq!(kubectl_ok(&kc, &["get", "configmap", "kept", "-o", "jsonpath={.data.answer}"]), "42");
    let out = kubectl(&kc, &["get", "configmap", "only-in-the-first-copy"]);
    assert!(!out.status.success(), "a change made in the first copy leaked into the second");
    assert_eq!(read_note(&kc, "note"), "saved-with-the-snapshot");
    let out = kubectl(&kc, &["exec", "keeper", "--", "cat", "/data/only-in-the-first-copy"]);
    assert!(!out.status.success(), "a file written in the first copy's claim is in the second's");
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=60s"]);
    let passwd = kubectl_ok(&kc, &["exec", "deploy/web", "--", "cat", "/etc/passwd"]);
    assert!(!passwd.contains("changed-in-the-first-copy"), "a change to an image's file in the first copy reached the snapshot");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert_nothing_of(name, "after deleting the second copy");
    assert_one_ready_spare(&snapshot, &node, None, "after deleting the second copy");

    // An address taken by another container is refused by name, with nothing made.
    let address = &saved_address;
    let blocker = format!("{name}-blocker");
    run_ok(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &blocker,
        "--network",
        "berth",
        "--ip",
        address.trim(),
        TOOLBOX,
        "sleep",
        "600",
    ]));
    let out = restore(&kc, &snapshot);
    let _ = docker(&["rm", "-f", &blocker]);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains(address.trim()) && stderr.contains(&blocker), "{stderr}");
    assert_nothing_of(name, "after a refused restore");

    // SIGINT once the node runs on a spare, then (no spare left) while the volumes are copied,
    // and again once the kubeconfig has the context: each time nothing is left, the claimed spare
    // included, and the kubeconfig is as it was.
    let kubeconfig_before = std::fs::read(&kc).unwrap_or_default();
    interrupt_restore(&kc, &snapshot, "on a spare", || !cluster_containers(name).is_empty());
    assert_nothing_of(name, "after SIGINT on a spare");
    assert!(ready_spares(&snapshot).is_empty(), "an interrupted restore left a spare ready");
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={snapshot}")).len(), 1, "the claimed spare was left behind");
    interrupt_restore(&kc, &snapshot, "during the copy", || !volumes_labelled(&format!("dev.berth.cluster={name}")).is_empty());
    assert_nothing_of(name, "after SIGINT during the copy");
    interrupt_restore(&kc, &snapshot, "while waiting for Ready", || {
        std::fs::read_to_string(&kc).is_ok_and(|k| k.contains(&format!("berth-{name}")))
    });
    assert_nothing_of(name, "after SIGINT while waiting");
    assert_eq!(std::fs::read(&kc).unwrap_or_default(), kubeconfig_before, "the kubeconfig is as it was");

    // Without a spare a restore copies, and still makes the next one.
    restore_ok(&kc, &snapshot);
    assert!(!var_volume_of(&node).starts_with("berth-spare-"), "restored on a spare when none was ready");
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=60s"]);
    assert_one_ready_spare(&snapshot, &node, None, "after a restore that copied");

    // SIGINT while a save copies /var removes what it made; the cluster stays, and starts again.
    let cut = format!("{snapshot}-cut");
    interrupt(&kc, &["snapshot", "save", &cut, "--name", name], "during a save", || {
        !volumes_labelled(&format!("dev.berth.snapshot={cut}")).is_empty()
    });
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={cut}")), Vec::<String>::new(), "an interrupted save left volumes");
    assert_eq!(images_labelled(&format!("dev.berth.snapshot={cut}")), Vec::<String>::new(), "an interrupted save left images");
    let helpers = docker(&["ps", "-aq", "--filter", "name=berth-copy"]);
    assert_eq!(String::from_utf8_lossy(&helpers.stdout).trim(), "", "an interrupted save left a copy helper");
    let since = now_rfc3339();
    run_ok(berth(&kc).args(["start", "cluster", "--name", name]));
    all_ready_since(&kc, 1, &since).unwrap();
    assert_eq!(kubectl_ok(&kc, &["get", "configmap", "kept", "-o", "jsonpath={.data.answer}"]), "42");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert_nothing_of(name, "after deleting the third copy");
    // A snapshot whose saved /var was pruned is refused by name, with nothing made.
    run_ok(Command::new("docker").args(["volume", "rm", &format!("berth-snapshot-{snapshot}-{node}-var")]));
    let out = restore(&kc, &snapshot);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("are gone") && stderr.contains(&format!("{node}-var")), "{stderr}");
    assert_nothing_of(name, "after refusing a pruned snapshot");
    run_ok(berth(&kc).args(["snapshot", "delete", &snapshot]));
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={snapshot}")), Vec::<String>::new(), "snapshot delete left volumes");
    assert_eq!(images_labelled(&format!("dev.berth.snapshot={snapshot}")), Vec::<String>::new(), "snapshot delete left images");
}
