//! Warm clusters: `berth snapshot save`, `create cluster --from-snapshot`, `snapshot delete`, on
//! the default one-node cluster with a plain Deployment (no pinning, no tolerations).
//!
//! One cluster is saved once and restored three times over: the objects, the app and a claim's
//! data come back, a new Deployment schedules within 5 s (the old leader leases and the
//! controller-manager's restart do not hold it up), a change in one copy (an object, a file in
//! the claim, a file of a container's image, a file written as root into containerd's image
//! layers on the node) is absent from the next, each restore runs on the spare /var copy made
//! before it (by the save, then by the restore before) and a restore without one copies, a
//! taken name or address is refused with nothing made, SIGINT mid-restore (on a spare, during
//! the copy, and after the kubeconfig was written) leaves nothing and the kubeconfig as it was,
//! SIGINT mid-save leaves nothing of that snapshot and a cluster that starts again, a snapshot
//! whose saved /var was pruned is refused by name, and `delete cluster` / `snapshot delete`
//! leave no volume behind. `snapshot_identity` (below): two clusters whose names once made
//! their snapshots share a volume, a save killed mid-copy and saved again, a snapshot missing a
//! node's image, an image built FROM a snapshot image.

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
    assert_eq!(copy_helpers(cluster), Vec::<String>::new(), "{when}: copy helpers left");
}

/// The copy helpers (`dev.berth.copy`) whose cluster or snapshot label contains `word`: this
/// test's own, not those of the tests running beside it (the two snapshot tests run at once).
fn copy_helpers(word: &str) -> Vec<String> {
    let format = "{{.ID}} {{.Label \"dev.berth.cluster\"}} {{.Label \"dev.berth.snapshot\"}}";
    let out = docker(&["ps", "-a", "--filter", "label=dev.berth.copy", "--format", format]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().skip(1).any(|label| label.contains(word)))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
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

/// The volume holding the snapshot's saved /var of `node` (named for the save that made it).
fn saved_var(snapshot: &str, node: &str) -> String {
    let prefix = format!("berth-snapshot-{snapshot}-{node}-");
    let found: Vec<String> = volumes_labelled(&format!("dev.berth.snapshot={snapshot}"))
        .into_iter()
        .filter(|v| v.starts_with(&prefix) && !v.ends_with("-complete"))
        .collect();
    assert_eq!(found.len(), 1, "one saved /var of {node}: {found:?}");
    found[0].clone()
}

/// The image the snapshot's save committed of `node` (`berth-snapshot/NAME:NODE-ID`).
fn saved_image(snapshot: &str, node: &str) -> String {
    let out =
        run_ok(Command::new("docker").args(["images", &format!("berth-snapshot/{snapshot}"), "--format", "{{.Repository}}:{{.Tag}}"]));
    let found: Vec<&str> = out.lines().filter(|t| t.starts_with(&format!("berth-snapshot/{snapshot}:{node}-"))).collect();
    assert_eq!(found.len(), 1, "one saved image of {node}: {out}");
    found[0].to_string()
}

/// The snapshot holds its saved /var of `node`, its completion marker and exactly one ready
/// spare of it, and no other spare but the one a running restored node uses (`in_use`): none
/// claimed by a restore that is gone, none cut short. Returns the ready spare.
fn assert_one_ready_spare(snapshot: &str, node: &str, in_use: Option<&str>, when: &str) -> String {
    let ready = ready_spares(snapshot);
    assert_eq!(ready.len(), 1, "{when}: ready spares {ready:?}");
    let (spare, marker) = &ready[0];
    let mut all = volumes_labelled(&format!("dev.berth.snapshot={snapshot}"));
    all.sort();
    let mut expected = vec![saved_var(snapshot, node), format!("berth-snapshot-{snapshot}-complete"), spare.clone(), marker.clone()];
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

/// `signal` (`-INT`, `-TERM`, `-HUP`) to berth running `args` once `ready` says so; it must
/// exit failing, saying it was interrupted and what it removed.
fn interrupt(kc: &Path, args: &[&str], signal: &str, what: &str, ready: impl Fn() -> bool) {
    let mut child = berth(kc).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let began = Instant::now();
    while !ready() {
        assert!(began.elapsed() < Duration::from_secs(90), "{what}: the moment to interrupt never came");
        assert!(child.try_wait().unwrap().is_none(), "{what}: berth ended before the interrupt");
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(Command::new("kill").args([signal, &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: an interrupted command must fail");
    let named = format!("interrupted (SIG{})", signal.trim_start_matches('-'));
    assert!(stderr.contains(&named) && stderr.contains("removed"), "{what}: {stderr}");
}

fn interrupt_restore(kc: &Path, snapshot: &str, signal: &str, what: &str, ready: impl Fn() -> bool) {
    interrupt(kc, &["create", "cluster", "--from-snapshot", snapshot], signal, what, ready);
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
        &saved_image(&snapshot, &format!("{name}-control-plane")),
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
    // The restored node shares no file with the snapshot: a container that changes a file of
    // its image changes its own copy, and even root on the node, writing in place into
    // containerd's committed image layers (a privileged pod could), changes only this copy.
    kubectl_ok(&kc, &["exec", "deploy/web", "--", "sh", "-c", "echo changed-in-the-first-copy >> /etc/passwd"]);
    let layers = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots";
    let written = run_ok(Command::new("docker").args([
        "exec",
        &node,
        "sh",
        "-c",
        &format!(
            "f=$(find {layers} -path '*/fs/usr/lib/os-release' -type f | head -n 1); echo written-in-the-first-copy >> \"$f\"; echo \"$f\""
        ),
    ]));
    let written = written.trim().to_string();
    assert!(written.ends_with("/fs/usr/lib/os-release"), "{written}");
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
    let tail = run_ok(Command::new("docker").args(["exec", &node, "tail", "-n", "1", &written]));
    assert!(!tail.contains("written-in-the-first-copy"), "a write into the first copy's image layer reached the snapshot");
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

    // SIGINT once the node runs on a spare, then (no spare left) SIGTERM while the volumes are
    // copied, and SIGHUP (a closed terminal) once the kubeconfig has the context: each time nothing is left, the claimed spare
    // included, and the kubeconfig is as it was.
    let kubeconfig_before = std::fs::read(&kc).unwrap_or_default();
    interrupt_restore(&kc, &snapshot, "-INT", "on a spare", || !cluster_containers(name).is_empty());
    assert_nothing_of(name, "after SIGINT on a spare");
    assert!(ready_spares(&snapshot).is_empty(), "an interrupted restore left a spare ready");
    let mut left = volumes_labelled(&format!("dev.berth.snapshot={snapshot}"));
    left.sort();
    let mut kept = vec![saved_var(&snapshot, &node), format!("berth-snapshot-{snapshot}-complete")];
    kept.sort();
    assert_eq!(left, kept, "the claimed spare was left behind");
    interrupt_restore(&kc, &snapshot, "-TERM", "during the copy", || !volumes_labelled(&format!("dev.berth.cluster={name}")).is_empty());
    assert_nothing_of(name, "after SIGINT during the copy");
    interrupt_restore(&kc, &snapshot, "-HUP", "while waiting for Ready", || {
        std::fs::read_to_string(&kc).is_ok_and(|k| k.contains(&format!("berth-{name}")))
    });
    assert_nothing_of(name, "after SIGINT while waiting");
    assert_eq!(std::fs::read(&kc).unwrap_or_default(), kubeconfig_before, "the kubeconfig is as it was");

    // Without a spare a restore copies, and still makes the next one.
    restore_ok(&kc, &snapshot);
    assert!(!var_volume_of(&node).starts_with("berth-spare-"), "restored on a spare when none was ready");
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=60s"]);
    assert_one_ready_spare(&snapshot, &node, None, "after a restore that copied");

    // SIGHUP while a save copies /var removes what it made; the cluster stays, and starts again.
    let cut = format!("{snapshot}-cut");
    interrupt(&kc, &["snapshot", "save", &cut, "--name", name], "-HUP", "during a save", || {
        !volumes_labelled(&format!("dev.berth.snapshot={cut}")).is_empty()
    });
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={cut}")), Vec::<String>::new(), "an interrupted save left volumes");
    assert_eq!(images_labelled(&format!("dev.berth.snapshot={cut}")), Vec::<String>::new(), "an interrupted save left images");
    assert_eq!(copy_helpers(name), Vec::<String>::new(), "an interrupted save left a copy helper");
    let since = now_rfc3339();
    run_ok(berth(&kc).args(["start", "cluster", "--name", name]));
    all_ready_since(&kc, 1, &since).unwrap();
    assert_eq!(kubectl_ok(&kc, &["get", "configmap", "kept", "-o", "jsonpath={.data.answer}"]), "42");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert_nothing_of(name, "after deleting the third copy");
    // A snapshot whose saved /var was pruned is refused by name, with nothing made.
    let var = saved_var(&snapshot, &node);
    run_ok(Command::new("docker").args(["volume", "rm", &var]));
    let out = restore(&kc, &snapshot);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("are gone") && stderr.contains(&var), "{stderr}");
    assert_nothing_of(name, "after refusing a pruned snapshot");
    run_ok(berth(&kc).args(["snapshot", "delete", &snapshot]));
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={snapshot}")), Vec::<String>::new(), "snapshot delete left volumes");
    assert_eq!(images_labelled(&format!("dev.berth.snapshot={snapshot}")), Vec::<String>::new(), "snapshot delete left images");
}

/// Snapshot `name` as `berth snapshot list -o json` reports it, if listed.
fn listed(kc: &Path, name: &str) -> Option<serde_json::Value> {
    let all: serde_json::Value = serde_json::from_str(&run_ok(berth(kc).args(["snapshot", "list", "-o", "json"]))).unwrap();
    all.as_array().unwrap().iter().find(|s| s["name"] == name).cloned()
}

/// Everything Docker holds under snapshot `name`'s label: volumes and image IDs, sorted.
fn objects_of(snapshot: &str) -> (Vec<String>, Vec<String>) {
    let label = format!("dev.berth.snapshot={snapshot}");
    let (mut volumes, mut images) = (volumes_labelled(&label), images_labelled(&label));
    volumes.sort();
    images.sort();
    (volumes, images)
}

/// The `who` ConfigMap's value: which cluster (and which state of it) a restore brought back.
fn who(kc: &Path) -> String {
    kubectl_ok(kc, &["get", "configmap", "who", "-o", "jsonpath={.data.is}"])
}

fn set_who(kc: &Path, value: &str) {
    let manifest = kubectl_ok(kc, &["create", "configmap", "who", &format!("--from-literal=is={value}"), "--dry-run=client", "-o", "yaml"]);
    let mut apply = kubectl_cmd(kc).args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut apply.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success(), "setting who={value}");
}

/// Snapshots that cannot mix or half-exist. Cluster `base-DEV` saved as `ci-PID` and cluster
/// `DEV` saved as `ci-PID-base` once made one volume name (`berth-snapshot-ci-PID-base-DEV-…`):
/// here each restores its own objects, and deleting one leaves the other whole. Two saves of one
/// name at once: one wins, the other refuses, nothing of the winner's is lost. A save killed
/// with SIGKILL mid-copy and run again under the same name restores the second state only. An
/// image built FROM a snapshot image is neither counted in the snapshot nor deleted with it. A
/// snapshot missing a node's image is listed incomplete and refused by restore, naming the node.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn snapshot_identity() {
    let Some(t) = test_cluster("snapshot_identity", "id") else { return };
    let (dev, kc_dev) = (t.name.clone(), t.kubeconfig.clone());
    let (base, kc_base) = (format!("base-{dev}"), t.dir.path().join("base-kubeconfig"));
    let _base_guard = ClusterGuard { name: base.clone(), kubeconfig: kc_base.clone() };
    let pid = std::process::id();
    let (ci, ci_base) = (format!("ci-{pid}"), format!("ci-{pid}-base"));
    let _ci_guard = SnapshotGuard { snapshot: ci.clone(), cluster: dev.clone(), kubeconfig: kc_dev.clone() };
    let _ci_base_guard = SnapshotGuard { snapshot: ci_base.clone(), cluster: dev.clone(), kubeconfig: kc_dev.clone() };
    let _base_snapshot_guard = SnapshotGuard { snapshot: ci.clone(), cluster: base.clone(), kubeconfig: kc_base.clone() };
    let (dev_node, base_node) = (format!("{dev}-control-plane"), format!("{base}-control-plane"));
    let derived = format!("berth-test/from-snapshot-{pid}:1");
    let _derived_guard = ImageGuard(derived.clone());

    let creates: Vec<_> = [(dev.clone(), kc_dev.clone()), (base.clone(), kc_base.clone())]
        .into_iter()
        .map(|(name, kc)| {
            std::thread::spawn(move || {
                run_ok(berth(&kc).args(["create", "cluster", "--name", &name, "--image", &test_image()]));
                set_who(&kc, &name);
            })
        })
        .collect();
    creates.into_iter().for_each(|c| c.join().unwrap());

    // Two saves of `ci` at once: one wins, the other refuses, and the winner's snapshot is whole.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            berth(&kc_base).args(["snapshot", "save", &ci, "--name", &base]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outcomes: Vec<_> = racers.into_iter().map(|r| r.wait_with_output().unwrap()).collect();
    let won = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "one save wins: {:?}", outcomes.iter().map(|o| text(o).1).collect::<Vec<_>>());
    let lost = outcomes.iter().find(|o| !o.status.success()).unwrap();
    let refusal = text(lost).1;
    assert!(refusal.contains(&format!("a snapshot named {ci:?} exists already")), "the other refuses: {refusal}");
    assert!(!refusal.contains("Removing"), "the refused save made nothing to remove: {refusal}");
    let ci_listed = listed(&kc_base, &ci).expect("ci is listed");
    assert_eq!((ci_listed["complete"].as_bool(), ci_listed["cluster"].as_str()), (Some(true), Some(base.as_str())), "{ci_listed}");
    assert_eq!(ci_listed["nodes"].as_array().unwrap().len(), 1, "{ci_listed}");
    let ci_var = saved_var(&ci, &base_node);

    run_ok(berth(&kc_dev).args(["snapshot", "save", &ci_base, "--name", &dev]));
    let ci_base_var = saved_var(&ci_base, &dev_node);
    assert_ne!(ci_var, ci_base_var, "two snapshots, two volumes");
    let listed_base = listed(&kc_dev, &ci_base).expect("ci-base is listed");
    assert_eq!((listed_base["complete"].as_bool(), listed_base["cluster"].as_str()), (Some(true), Some(dev.as_str())), "{listed_base}");

    // Each restores its own cluster's objects.
    run_ok(berth(&kc_base).args(["delete", "cluster", "--name", &base]));
    run_ok(berth(&kc_dev).args(["delete", "cluster", "--name", &dev]));
    restore_ok(&kc_base, &ci);
    assert_eq!(who(&kc_base), base, "ci restores base's objects");
    run_ok(berth(&kc_base).args(["delete", "cluster", "--name", &base]));
    restore_ok(&kc_dev, &ci_base);
    assert_eq!(who(&kc_dev), dev, "ci-base restores dev's objects");
    run_ok(berth(&kc_dev).args(["delete", "cluster", "--name", &dev]));

    // An image built FROM a snapshot image inherits its labels but is not part of it.
    let dockerfile = format!("FROM {}\nLABEL purpose=derived\n", saved_image(&ci_base, &dev_node));
    let mut build =
        Command::new("docker").args(["build", "-q", "-t", &derived, "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut build.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    assert!(build.wait().unwrap().success(), "building {derived}");
    assert_eq!(listed(&kc_dev, &ci_base).unwrap()["nodes"].as_array().unwrap().len(), 1, "the derived image counted as a node");

    // Deleting ci leaves every object of ci-base, which still restores.
    let ci_base_objects = objects_of(&ci_base);
    run_ok(berth(&kc_base).args(["snapshot", "delete", &ci]));
    assert_eq!(objects_of(&ci), (Vec::new(), Vec::new()), "snapshot delete left objects of ci");
    assert_eq!(objects_of(&ci_base), ci_base_objects, "deleting ci changed ci-base");
    restore_ok(&kc_dev, &ci_base);
    assert_eq!(who(&kc_dev), dev);

    // A save killed (SIGKILL: no cleanup at all) while it copies /var, then saved again under the
    // same name from a changed cluster: the second state, and nothing of the first.
    set_who(&kc_dev, "first-state");
    let mut killed =
        berth(&kc_dev).args(["snapshot", "save", &ci, "--name", &dev]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let began = Instant::now();
    while volumes_labelled(&format!("dev.berth.snapshot={ci}")).is_empty() {
        assert!(killed.try_wait().unwrap().is_none(), "the save ended before it was killed");
        assert!(began.elapsed() < Duration::from_secs(120), "the save never began copying");
        std::thread::sleep(Duration::from_millis(50));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    if let Some(cut) = listed(&kc_dev, &ci) {
        assert_eq!(cut["complete"].as_bool(), Some(false), "a killed save is never complete: {cut}");
    }
    let out = restore(&kc_base, &ci);
    assert!(!out.status.success(), "a killed save's leftovers restored");
    let since = now_rfc3339();
    run_ok(berth(&kc_dev).args(["start", "cluster", "--name", &dev]));
    eventually("the cluster is Ready after the killed save", Duration::from_secs(120), || all_ready_since(&kc_dev, 1, &since));
    set_who(&kc_dev, "second-state");
    let out = berth(&kc_dev).args(["snapshot", "save", &ci, "--name", &dev]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "saving again after the kill: {stderr}");
    assert!(format!("{stdout}{stderr}").contains("cut short"), "the killed save's leftovers were cleared: {stdout}{stderr}");
    saved_var(&ci, &dev_node);
    assert_eq!(copy_helpers(&ci), Vec::<String>::new(), "the killed save's copy helper is left");
    let lease = docker(&["ps", "-aq", "--filter", &format!("name=^berth-lease-snapshot-{ci}$")]);
    assert_eq!(String::from_utf8_lossy(&lease.stdout).trim(), "", "the save's lease is left");
    run_ok(berth(&kc_dev).args(["delete", "cluster", "--name", &dev]));
    restore_ok(&kc_dev, &ci);
    assert_eq!(who(&kc_dev), "second-state", "the second save's state, not the killed one's");
    run_ok(berth(&kc_dev).args(["delete", "cluster", "--name", &dev]));

    // A node's image removed: listed incomplete, naming it; restore refuses, naming it.
    run_ok(Command::new("docker").args(["rmi", &saved_image(&ci, &dev_node)]));
    let half = listed(&kc_dev, &ci).expect("a snapshot missing a node is still listed");
    assert_eq!(half["complete"].as_bool(), Some(false), "{half}");
    assert!(half["missing"].to_string().contains(&dev_node), "{half}");
    let out = restore(&kc_dev, &ci);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("incomplete") && stderr.contains(&dev_node), "{stderr}");
    assert_nothing_of(&dev, "after refusing an incomplete snapshot");
    run_ok(berth(&kc_dev).args(["snapshot", "delete", &ci]));
    assert_eq!(objects_of(&ci), (Vec::new(), Vec::new()), "deleting an incomplete snapshot left objects");

    // Deleting ci-base leaves the image built from it.
    run_ok(berth(&kc_dev).args(["snapshot", "delete", &ci_base]));
    assert!(docker(&["image", "inspect", &derived]).status.success(), "snapshot delete removed an image built FROM it");
    assert_eq!(objects_of(&ci_base).0, Vec::<String>::new(), "snapshot delete left volumes");
}

/// Removes an image when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}
