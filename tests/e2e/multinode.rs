//! Multi-node and HA clusters end to end: the default pod network across nodes and after a
//! node restart, kube-proxy Services, images loaded from the host, the Dashboard add-on and
//! its token, log export; three control planes behind the load balancer; and the real kind
//! v0.33.0 creating a cluster from berth's test node image, with pod traffic across its nodes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn node_ready(kc: &Path, node: &str) -> Result<(), String> {
    let out = kubectl(kc, &["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    if s == "True" {
        Ok(())
    } else {
        Err(format!("{node} Ready={s}"))
    }
}

/// A toolbox pod pinned to `node` (these tests are about traffic between particular nodes);
/// `command` is its shell command.
fn toolbox_pod(name: &str, node: &str, labels: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  \
         containers: [{{name: tb, image: {TOOLBOX}, imagePullPolicy: Never, command: [sh, -c, {command:?}]}}]\n"
    )
}

/// Every file under `dir`, depth first.
/// berth-netd's kubectl calls (one every 5 s) on `node`, watched for 12 s: they read the service
/// account token from a file, and no process's command line carries it (`ps` shows those).
fn netd_keeps_its_token_off_command_lines(node: &str) {
    let watch = r#"end=$(($(date +%s) + 12)); while [ "$(date +%s)" -lt "$end" ]; do
      for p in /proc/[0-9]*; do c=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
        case "$c" in kubectl*) echo "$c";; esac; done; sleep 0.02; done | sort -u"#;
    let seen = run_ok(Command::new("docker").args(["exec", node, "sh", "-c", watch]));
    assert!(seen.contains("--kubeconfig="), "netd's kubectl was never seen running: {seen}");
    assert!(!seen.contains("--token"), "a token on kubectl's command line: {seen}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path))
        } else {
            out.push(path)
        }
    }
    out
}

fn apply(kc: &Path, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    std::fs::write(&f, yaml).unwrap();
    kubectl_ok(kc, &["apply", "-f", f.to_str().unwrap()]);
}

fn pod_ip(kc: &Path, pod: &str) -> String {
    kubectl_ok(kc, &["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

fn wait_pods_ready(kc: &Path, pods: &[&str]) {
    let mut args = vec!["wait", "--for=condition=Ready", "--timeout=120s"];
    let names: Vec<String> = pods.iter().map(|p| format!("pod/{p}")).collect();
    args.extend(names.iter().map(String::as_str));
    kubectl_ok(kc, &args);
}

/// A kubeconfig that authenticates with `token` only (no client certificate).
fn token_kubeconfig(kc: &Path, token: &str, dir: &Path) -> std::path::PathBuf {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(kc).unwrap()).unwrap();
    let mut user = serde_yaml::Mapping::new();
    user.insert("token".into(), token.into());
    doc["users"][0]["user"] = serde_yaml::Value::Mapping(user);
    let path = dir.join("token-kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    path
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn workers_network_restart_load_dashboard_and_logs() {
    let Some(t) = test_cluster("workers_network_restart_load_dashboard_and_logs", "multi") else { return };
    let (name, kc, dir) = (&t.name, t.kubeconfig.clone(), &t.dir);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/workers.yaml");
    let out = berth(&kc)
        .args([
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            config,
            "--image",
            &test_image(),
            "--wait",
            "4m",
            "--addon",
            "dashboard",
            "--addon",
            "metrics-server",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "create failed:\n{stderr}");
    // Dashboard images are not in the test node image: the warning names them.
    assert!(stderr.contains("dashboard:") && stderr.contains("kubernetesui/dashboard:v2.7.0"), "{stderr}");
    // metrics-server's image is in the test image (built from its module): no warning, and
    // `kubectl top` prints numbers for every node and for pods within a minute.
    assert!(!stderr.contains("metrics-server/metrics-server") && !stderr.contains("kubectl top"), "{stderr}");
    let api =
        kubectl_ok(&kc, &["get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.spec.service.namespace}/{.spec.service.name}"]);
    assert_eq!(api, "kube-system/metrics-server", "the metrics API is registered with the aggregator");
    let (cp, w1, w2) = (&format!("{name}-control-plane"), &format!("{name}-worker"), &format!("{name}-worker2"));
    eventually("the metrics API is Available", Duration::from_secs(60), || {
        let available = kubectl_ok(
            &kc,
            &["get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].status}"],
        );
        (available == "True").then_some(()).ok_or(available)
    });
    let top = eventually("kubectl top nodes has numbers for every node", Duration::from_secs(60), || {
        let o = kubectl(&kc, &["top", "nodes", "--no-headers"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let with_numbers = |node: &str| {
            out.lines().any(|l| {
                l.starts_with(node)
                    && l.split_whitespace().nth(1).is_some_and(|cpu| cpu.ends_with('m') && cpu[..cpu.len() - 1].parse::<u64>().is_ok())
            })
        };
        if o.status.success() && [cp, w1, w2].iter().all(|n| with_numbers(n)) {
            Ok(out)
        } else {
            Err(format!("{out}{}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    assert!(top.lines().all(|l| l.contains("Mi") && l.contains('%')), "{top}");
    eventually("kubectl top pods -A has numbers", Duration::from_secs(60), || {
        let o = kubectl(&kc, &["top", "pods", "-A", "--no-headers"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let numbered = out.lines().filter(|l| l.split_whitespace().nth(2).is_some_and(|cpu| cpu.ends_with('m'))).count();
        if o.status.success() && out.contains("kube-apiserver-") && numbered >= 5 {
            Ok(())
        } else {
            Err(format!("{out}{}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    for n in [cp, w1, w2] {
        node_ready(&kc, n).unwrap();
    }
    let ds = kubectl_ok(&kc, &["-n", "kube-system", "get", "ds", "berth-netd", "-o", "jsonpath={.status.numberReady}"]);
    assert_eq!(ds, "3", "berth-netd on every node");

    // One export fans out to every node; a second load skips them all.
    let loaded = run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    let (_, err) = text(&berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]).output().unwrap());
    assert!(err.contains("already holds") || err.contains("already present"), "second load skips: {loaded}\n{err}");

    // A pod on every node with imagePullPolicy: Never runs only if the load reached that node.
    let mut manifest = String::new();
    manifest.push_str(&toolbox_pod(
        "web",
        w1,
        "app: web",
        "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 8080 -h /www",
    ));
    manifest.push_str("---\n");
    manifest.push_str(&toolbox_pod("client", w2, "app: client", "exec sleep infinity"));
    manifest.push_str("---\n");
    manifest.push_str(&toolbox_pod("on-cp", cp, "app: cp", "exec sleep infinity"));
    manifest.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n");
    apply(&kc, &manifest);
    wait_pods_ready(&kc, &["web", "client", "on-cp"]);

    let check_network = |what: &str| {
        let web_ip = pod_ip(&kc, "web");
        let client_ip = pod_ip(&kc, "client");
        eventually(&format!("{what}: client pings web across nodes"), Duration::from_secs(60), || {
            let o = kubectl(&kc, &["exec", "client", "--", "ping", "-c", "2", "-W", "2", &web_ip]);
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stdout).into_owned())
            }
        });
        kubectl_ok(&kc, &["exec", "web", "--", "ping", "-c", "2", "-W", "2", &client_ip]);
        // By name, through cluster DNS, from a pod on another node than the Service's pod.
        for host in ["web.default", "web.default.svc.cluster.local"] {
            let what = format!("{what}: the Service answers another node's pod as {host}");
            curl_from_pod(&kc, &what, "client", host, "hello-from-web", Duration::from_secs(60));
        }
    };
    check_network("before restart");
    netd_keeps_its_token_off_command_lines(&format!("{name}-worker"));

    // A restarted node comes back Ready and its pods get the pod network again.
    run_ok(Command::new("docker").args(["restart", w1]));
    eventually("the restarted worker is Ready", Duration::from_secs(120), || {
        node_ready(&kc, w1)?;
        let restarts = kubectl_ok(&kc, &["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"]);
        let ready = kubectl_ok(&kc, &["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].ready}"]);
        if restarts != "0" && ready == "true" {
            Ok(())
        } else {
            Err(format!("web restarts={restarts} ready={ready}"))
        }
    });
    check_network("after restart");

    // The three nodes saved and restored: all freshly Ready, the pods back, the pod network
    // across nodes and the Service working again.
    let snapshot = format!("multi-{name}");
    let _snapshot_guard = SnapshotGuard { snapshot: snapshot.clone(), cluster: name.clone(), kubeconfig: kc.clone() };
    run_ok(berth(&kc).args(["snapshot", "save", &snapshot, "--name", name]));
    // A saved /var and a ready spare copy of it per node.
    let saved = volumes_labelled(&format!("dev.berth.snapshot={snapshot}"));
    let node_copies = saved.iter().filter(|v| v.starts_with("berth-snapshot-") && !v.ends_with("-complete"));
    assert_eq!(node_copies.count(), 3, "{saved:?}");
    assert!(saved.contains(&format!("berth-snapshot-{snapshot}-complete")), "the completion marker: {saved:?}");
    let spares = volumes_labelled("dev.berth.spare.ready");
    assert_eq!(spares.iter().filter(|v| v.contains(&snapshot)).count(), 3, "ready spares: {spares:?}");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    let since = now_rfc3339();
    run_ok(berth(&kc).args(["create", "cluster", "--from-snapshot", &snapshot]));
    all_ready_since(&kc, 3, &since).unwrap();
    for node in cluster_containers(name) {
        let var = run_ok(Command::new("docker").args(["inspect", &node, "--format", "{{index .Config.Labels \"dev.berth.var-volume\"}}"]));
        assert!(var.trim().starts_with("berth-spare-"), "{node} restored on {var:?}, not on a spare");
    }
    wait_pods_ready(&kc, &["web", "client", "on-cp"]);
    check_network("after a restore");

    // Dashboard: objects exist and the printed token is a working credential.
    for obj in [
        "deployment/kubernetes-dashboard",
        "deployment/dashboard-metrics-scraper",
        "service/kubernetes-dashboard",
        "secret/kubernetes-dashboard-csrf",
    ] {
        kubectl_ok(&kc, &["-n", "kubernetes-dashboard", "get", obj]);
    }
    let printed = run_ok(berth(&kc).args(["dashboard", "--name", name, "--duration", "15m"]));
    assert!(printed.contains("/api/v1/namespaces/kubernetes-dashboard/services/https:kubernetes-dashboard:/proxy/"), "{printed}");
    let token = printed.lines().find_map(|l| l.strip_prefix("Token:")).expect("a Token: line").trim().to_string();
    // A TokenRequest token: it expires when asked (15 min after it was issued), and no token
    // Secret of berth's exists to leak.
    let claims = token.split('.').nth(1).expect("a JWT");
    use base64::Engine;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 15 * 60, "the token expires after --duration: {claims}");
    assert!(!kubectl(&kc, &["-n", "kubernetes-dashboard", "get", "secret", "berth-dashboard-admin-token"]).status.success());
    let with_token = token_kubeconfig(&kc, &token, dir.path());
    assert_eq!(kubectl_ok(&with_token, &["auth", "can-i", "list", "pods", "--all-namespaces"]).trim(), "yes");
    let with_bad = token_kubeconfig(&kc, "not-a-real-token", dir.path());
    assert!(!kubectl(&with_bad, &["auth", "can-i", "list", "pods", "--all-namespaces"]).status.success(), "a wrong token is refused");

    // Logs: per node, journals, console, version, inspect output and kube-system pod logs.
    let logs = tempfile::tempdir().unwrap();
    run_ok(berth(&kc).args(["export", "logs"]).arg(logs.path()).args(["--name", name]));
    for node in [cp, w1, w2] {
        for f in ["kubelet.log", "containerd.log", "journal.log", "serial.log", "kubernetes-version.txt", "inspect.json"] {
            let p = logs.path().join(node).join(f);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{} is missing or empty", p.display());
        }
        let pods_dir = logs.path().join(node).join("pods");
        let kube_system = std::fs::read_dir(&pods_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("kube-system_"));
        assert!(kube_system, "kube-system pod logs under {}", pods_dir.display());
    }
    assert_eq!(std::fs::read_to_string(logs.path().join(cp).join("kubernetes-version.txt")).unwrap().trim(), test_image_version());
    // The logs hold cluster material: the user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&logs.path().join(cp)), 0o700, "node directory");
    assert_eq!(mode(&logs.path().join(cp).join("journal.log")), 0o600, "journal");
    let pod_log = walk_files(&logs.path().join(cp).join("pods")).into_iter().next().expect("a pod log");
    assert_eq!(mode(&pod_log), 0o600, "{}", pod_log.display());
    assert_eq!(mode(pod_log.parent().unwrap()), 0o700, "{}", pod_log.display());

    // A node removed by hand: the cluster is broken, by name; delete removes the rest. (`-v`:
    // the node's /var is an anonymous volume, which only its container's removal can name.)
    run_ok(Command::new("docker").args(["rm", "-f", "-v", w2]));
    let wide = run_ok(berth(&kc).args(["get", "clusters", "-o", "wide"]));
    let line = wide.lines().find(|l| l.starts_with(name.as_str())).unwrap_or_default();
    assert!(line.contains("broken") && line.contains(&format!("missing: {w2}")), "{wide}");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert!(cluster_containers(name).is_empty(), "{:?}", cluster_containers(name));
    assert_eq!(volumes_labelled(&format!("dev.berth.cluster={name}")), Vec::<String>::new(), "the restored nodes' volumes are gone");
    run_ok(berth(&kc).args(["snapshot", "delete", &snapshot]));
    assert_eq!(volumes_labelled(&format!("dev.berth.snapshot={snapshot}")), Vec::<String>::new(), "snapshot delete left volumes");
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn ha_control_planes_survive_losing_one() {
    let Some(t) = test_cluster("ha_control_planes_survive_losing_one", "ha") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    let node = |suffix: &str| format!("{name}-{suffix}");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/cluster/ha-3-1.yaml");
    run_ok(berth(&kc).env("BERTH_LB_IMAGE", "berth-test/haproxy:1").args([
        "create",
        "cluster",
        "--name",
        name,
        "--config",
        config,
        "--image",
        &test_image(),
        "--wait",
        "5m",
    ]));
    let server = kubectl_ok(&kc, &["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let lb_port = run_ok(Command::new("docker").args(["port", &node("external-load-balancer"), "6443/tcp"]));
    assert!(lb_port.trim().ends_with(server.rsplit(':').next().unwrap()), "kubeconfig {server} points at the load balancer ({lb_port})");
    let nodes = kubectl_ok(&kc, &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 4, "{nodes}");
    let taints = kubectl_ok(&kc, &["get", "node", &node("control-plane2"), "-o", "jsonpath={.spec.taints[*].effect}"]);
    assert_eq!(taints, "NoSchedule", "with a worker, control planes keep kubeadm's taint");

    // load and export logs act on the nodes, not on the load balancer (no containerd there).
    let loaded = run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    for node in ["control-plane", "control-plane2", "control-plane3", "worker"].map(node) {
        let has = run_ok(Command::new("docker").args([
            "exec",
            &node,
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "ls",
            "-q",
            "name==docker.io/berth-test/toolbox:1",
        ]));
        assert!(!has.trim().is_empty(), "{node} holds the loaded image: {loaded}");
    }
    let logs = tempfile::tempdir().unwrap();
    run_ok(berth(&kc).args(["export", "logs"]).arg(logs.path()).args(["--name", name]));
    assert!(logs.path().join(node("worker")).join("kubelet.log").exists());
    assert!(logs.path().join(node("external-load-balancer")).join("inspect.json").exists(), "the balancer's inspect output is kept");

    run_ok(Command::new("docker").args(["stop", &node("control-plane")]));
    let after = eventually("the API answers with one control plane stopped", Duration::from_secs(30), || {
        let o = kubectl(&kc, &["get", "nodes", "--request-timeout=10s", "-o", "name"]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert_eq!(after.lines().count(), 4, "{after}");

    // Three control planes, a worker and the balancer saved (the stopped one too) and restored:
    // etcd's three members find each other again, every node is freshly Ready through the
    // balancer, and a new Deployment is scheduled at once.
    let snapshot = format!("ha-{name}");
    let _snapshot_guard = SnapshotGuard { snapshot: snapshot.clone(), cluster: name.clone(), kubeconfig: kc.clone() };
    run_ok(berth(&kc).args(["snapshot", "save", &snapshot, "--name", name]));
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    let since = now_rfc3339();
    run_ok(berth(&kc).args(["create", "cluster", "--from-snapshot", &snapshot]));
    assert_no_stale_leader_lease(&kc, &since, "the restore");
    all_ready_since(&kc, 4, &since).unwrap();
    // Within a leader lease's duration: the lease check above is the sharp one.
    let took = time_to_schedule(&kc, "after-restore");
    assert!(took < Duration::from_secs(15), "scheduling right after the restore took {took:?}");

    // One control plane leaves (etcd keeps two members; the API still answers through the
    // balancer), and a new one joins (three members again, and the balancer sends to it).
    let members = || -> Vec<String> {
        let out = kubectl_ok(
            &kc,
            &[
                "-n",
                "kube-system",
                "exec",
                &format!("etcd-{}", node("control-plane")),
                "--",
                "etcdctl",
                "--endpoints=https://127.0.0.1:2379",
                "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
                "--cert=/etc/kubernetes/pki/etcd/server.crt",
                "--key=/etc/kubernetes/pki/etcd/server.key",
                "member",
                "list",
                "-w",
                "simple",
            ],
        );
        out.lines().filter_map(|l| l.split(", ").nth(2).map(str::to_string)).collect()
    };
    assert_eq!(members().len(), 3, "{:?}", members());
    run_ok(berth(&kc).args(["delete", "node", &node("control-plane3"), "--name", name]));
    let left = members();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&node("control-plane3")), "{left:?}");
    assert!(!cluster_containers(name).contains(&node("control-plane3")));
    let through_balancer = kubectl_ok(&kc, &["get", "nodes", "-o", "name"]);
    assert_eq!(through_balancer.lines().count(), 3, "{through_balancer}");
    let lb = run_ok(Command::new("docker").args(["exec", &node("external-load-balancer"), "cat", "/usr/local/etc/haproxy/haproxy.cfg"]));
    assert!(!lb.contains(&format!("server {}", node("control-plane3"))), "the balancer dropped it: {lb}");
    run_ok(berth(&kc).args(["create", "node", "--name", name, "--role", "control-plane"]));
    let back = members();
    assert_eq!(back.len(), 3, "{back:?}");
    assert!(back.contains(&node("control-plane3")), "{back:?}");
    node_ready(&kc, &node("control-plane3")).unwrap();
    let lb = run_ok(Command::new("docker").args(["exec", &node("external-load-balancer"), "cat", "/usr/local/etc/haproxy/haproxy.cfg"]));
    assert!(lb.contains(&format!("server {0} {0}:6443", node("control-plane3"))), "{lb}");
}

/// kind runs every node --privileged; where the default runtime cannot, a PATH shim adds the
/// runtime that can to kind's `docker run` (sandbox plumbing for this test only).
fn kind_env() -> Option<tempfile::TempDir> {
    let probe = Command::new("docker").args(["run", "--rm", "--privileged", "--entrypoint", "true", &test_image()]).output().unwrap();
    if probe.status.success() {
        return None;
    }
    let runtime = std::env::var("BERTH_TEST_PRIVILEGED_RUNTIME").unwrap_or_else(|_| "nosr".into());
    let dir = tempfile::tempdir().unwrap();
    let real = String::from_utf8(Command::new("sh").args(["-c", "command -v docker"]).output().unwrap().stdout).unwrap();
    let shim = format!(
        "#!/bin/sh\nif [ \"$1\" = run ]; then shift; exec {} run --runtime={runtime} \"$@\"; fi\nexec {} \"$@\"\n",
        real.trim(),
        real.trim()
    );
    let path = dir.path().join("docker");
    std::fs::write(&path, shim).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Some(dir)
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn real_kind_creates_a_cluster_from_the_test_image() {
    if !require_e2e("real_kind_creates_a_cluster_from_the_test_image") {
        return;
    }
    let kind = std::env::var("BERTH_TEST_KIND")
        .unwrap_or_else(|_| run_ok(&mut Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/get-kind"))).trim().to_string());
    let shim = kind_env();
    let path = match &shim {
        Some(d) => format!("{}:{}", d.path().display(), std::env::var("PATH").unwrap()),
        None => std::env::var("PATH").unwrap(),
    };
    let (dir, kc) = temp_kubeconfig();
    let config = dir.path().join("kind.yaml");
    std::fs::write(&config, "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n").unwrap();
    let name = &cluster_name("kind");
    let kind_cmd = |args: &[&str]| {
        let mut c = Command::new(&kind);
        c.env("PATH", &path).args(args).arg("--kubeconfig").arg(&kc);
        c
    };
    let created =
        kind_cmd(&["create", "cluster", "--name", name, "--image", &test_image(), "--wait", "5m", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
    let result = std::panic::catch_unwind(|| {
        let (_, stderr) = text(&created);
        assert!(created.status.success(), "kind create failed:\n{stderr}");
        for node in [format!("{name}-control-plane"), format!("{name}-worker")] {
            eventually(&format!("{node} Ready under kind"), Duration::from_secs(120), || node_ready(&kc, &node));
        }
        let netd = kubectl_ok(&kc, &["-n", "kube-system", "get", "ds", "berth-netd", "-o", "jsonpath={.status.numberReady}"]);
        assert_eq!(netd, "2", "kind installed the image's default CNI manifest");
        // Pods on the two nodes reach each other over the image's pod network.
        run_ok(Command::new(&kind).env("PATH", &path).args(["load", "docker-image", TOOLBOX, "--name", name]));
        let (cp, worker) = (format!("{name}-control-plane"), format!("{name}-worker"));
        apply(
            &kc,
            &toolbox_pod(
                "kind-a",
                &cp,
                "",
                "mkdir -p /www && echo served-on-kind > /www/index.html && exec busybox httpd -f -p 8080 -h /www",
            ),
        );
        apply(&kc, &toolbox_pod("kind-b", &worker, "", "sleep infinity"));
        wait_pods_ready(&kc, &["kind-a", "kind-b"]);
        let ip = pod_ip(&kc, "kind-a");
        curl_from_pod(
            &kc,
            "a pod on kind's worker reaches one on its control plane",
            "kind-b",
            &format!("{ip}:8080"),
            "served-on-kind",
            Duration::from_secs(60),
        );
    });
    run_ok(&mut kind_cmd(&["delete", "cluster", "--name", name]));
    let left = containers_with_label(&format!("io.x-k8s.kind.cluster={name}"));
    assert!(left.is_empty(), "kind left {left:?}");
    // kind keeps its network for later clusters; this test leaves nothing of its own behind.
    if containers_with_label("io.x-k8s.kind.cluster").is_empty() {
        let _ = docker(&["network", "rm", "kind"]);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
