//! End to end through the CLI: create, inspect with the host's kubectl, get, delete; a create
//! whose kubeadm fails; a create interrupted by SIGINT. Each leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn kubectl_json(kubeconfig: &std::path::Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = kubectl(kubeconfig, &all);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn contexts(kubeconfig: &std::path::Path) -> Vec<String> {
    let out = kubectl(kubeconfig, &["config", "get-contexts", "-o", "name"]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn create_get_delete_one_node() {
    let Some(t) = test_cluster("create_get_delete_one_node", "one") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    // A context the user already had must survive create and delete.
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: keep, cluster: {server: 'https://keep.example:6443'}}]\nusers: [{name: keep, user: {token: t}}]\ncontexts: [{name: keep, context: {cluster: keep, user: keep}}]\ncurrent-context: keep\n").unwrap();
    let (context, node) = (format!("berth-{name}"), format!("{name}-control-plane"));

    let started = Instant::now();
    let out = run_ok(berth(&kc).args(["create", "cluster", "--name", name, "--image", &test_image(), "--wait", "3m"]));
    eprintln!("create took {:?}\n{out}", started.elapsed());

    // Only the merged kubeconfig is used from here on.
    assert_eq!(contexts(&kc), [context.as_str(), "keep"]);
    let current = run_ok(kubectl_cmd(&kc).args(["config", "current-context"]));
    assert_eq!(current.trim(), context);
    let nodes = kubectl_json(&kc, &["get", "nodes"]).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let ready = items[0]["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "node Ready: {:#}", items[0]["status"]["conditions"]);

    let ds = eventually("kube-proxy ready on every node", Duration::from_secs(90), || {
        let ds = kubectl_json(&kc, &["-n", "kube-system", "get", "daemonset", "kube-proxy"])?;
        let (want, ready) = (&ds["status"]["desiredNumberScheduled"], &ds["status"]["numberReady"]);
        if want.as_i64() >= Some(1) && want == ready {
            Ok(ds)
        } else {
            Err(format!("{ready}/{want}"))
        }
    });
    assert_eq!(ds["status"]["numberReady"], 1);
    // CoreDNS (its image built into the test node image) is serving when create returns:
    // create waits for it, as a user running `curl web.default` next needs.
    let coredns = kubectl_json(&kc, &["-n", "kube-system", "get", "deployment", "coredns"]).unwrap();
    let replicas = coredns["spec"]["replicas"].as_i64().unwrap_or(0);
    assert!(replicas >= 1 && coredns["status"]["readyReplicas"].as_i64() == Some(replicas), "CoreDNS not ready: {}", coredns["status"]);

    // Names only, one per line, as kind prints them (`for c in $(berth get clusters)`); the
    // table with -o wide.
    let listed = run_ok(berth(&kc).args(["get", "clusters"]));
    assert!(listed.lines().any(|l| l == name), "{listed}");
    assert!(listed.lines().all(|l| !l.contains(' ')), "{listed}");
    let wide = run_ok(berth(&kc).args(["get", "clusters", "-o", "wide"]));
    assert!(wide.lines().any(|l| l.starts_with(name.as_str()) && l.contains("running")), "{wide}");
    let json: serde_json::Value = serde_json::from_str(&run_ok(berth(&kc).args(["get", "clusters", "-o", "json"]))).unwrap();
    assert!(json.as_array().unwrap().iter().any(|c| c["name"] == name.as_str() && c["state"] == "running"));
    let nodes = run_ok(berth(&kc).args(["get", "nodes", "--name", name]));
    assert_eq!(nodes.trim(), node, "{nodes}");
    let nodes = run_ok(berth(&kc).args(["get", "nodes", "--name", name, "-o", "wide"]).env("BERTH_CLUSTER_NAME", "not-this-one"));
    assert!(nodes.contains(&node) && nodes.contains("control-plane") && nodes.contains("running"), "{nodes}");
    let internal = run_ok(berth(&kc).args(["get", "kubeconfig", "--name", name, "--internal"]));
    assert!(internal.contains(&format!("server: https://{node}:6443")), "{internal}");
    let exported = t.dir.path().join("internal-kubeconfig");
    run_ok(berth(&kc).args(["export", "kubeconfig", "--name", name, "--internal", "--kubeconfig"]).arg(&exported));
    let exported = std::fs::read_to_string(&exported).unwrap();
    assert!(exported.contains(&format!("server: https://{node}:6443")), "export kubeconfig --internal: {exported}");

    let volumes = container_volumes(&node);
    assert!(!volumes.is_empty(), "the node has its /var volume");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert!(cluster_containers(name).is_empty(), "containers left: {:?}", cluster_containers(name));
    for v in volumes {
        assert!(!volume_exists(&v), "volume {v} left behind");
    }
    assert_eq!(contexts(&kc), ["keep"]);
    let current = run_ok(kubectl_cmd(&kc).args(["config", "view", "-o", "jsonpath={.current-context}"]));
    assert_eq!(current.trim(), "", "current-context pointed at the deleted cluster, so it is unset");
}

/// A node image whose kubeadm fails, derived from the test image.
fn broken_image() -> String {
    let tag = "berth-test/node-broken-kubeadm:1";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeadm"),
        "#!/bin/sh\necho \"[init] pretending to work\"\necho \"error: this kubeadm is broken on purpose ($1)\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\nCOPY kubeadm /usr/bin/kubeadm\nRUN chmod 0755 /usr/bin/kubeadm\n", test_image()),
    )
    .unwrap();
    run_ok(Command::new("docker").env("DOCKER_BUILDKIT", "0").args(["build", "-q", "-t", tag]).arg(dir.path()));
    tag.to_string()
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn failed_create_cleans_up_unless_retain() {
    let Some(t) = test_cluster("failed_create_cleans_up_unless_retain", "fail") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    let image = broken_image();

    let out = berth(&kc).args(["create", "cluster", "--name", name, "--image", &image]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("kubeadm init failed on {name}-control-plane")), "{stderr}");
    assert!(stderr.contains("this kubeadm is broken on purpose"), "kubeadm's last lines are in the error:\n{stderr}");
    assert!(cluster_containers(name).is_empty(), "left: {:?}", cluster_containers(name));
    assert!(!kc.exists() || !std::fs::read_to_string(&kc).unwrap().contains(&format!("berth-{name}")));

    let out = berth(&kc).args(["create", "cluster", "--name", name, "--image", &image, "--retain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(cluster_containers(name), [format!("{name}-control-plane")], "--retain keeps the node");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", name]));
    assert!(cluster_containers(name).is_empty());
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn sigint_during_create_cleans_up() {
    let Some(t) = test_cluster("sigint_during_create_cleans_up", "sigint") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    let child = berth(&kc)
        .args(["create", "cluster", "--name", name, "--image", &test_image()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt while kubeadm init runs: it has written the static pods and waits for them.
    eventually("kubeadm init wrote the API server's static pod", Duration::from_secs(120), || {
        let node = format!("{name}-control-plane");
        let manifest = docker(&["exec", &node, "test", "-f", "/etc/kubernetes/manifests/kube-apiserver.yaml"]);
        let running = docker(&["exec", &node, "pgrep", "-x", "kubeadm"]);
        if manifest.status.success() && running.status.success() {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let pid = child.id().to_string();
    run_ok(Command::new("kill").args(["-INT", &pid]));
    let out = child.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted (SIGINT)") && stderr.contains("removed"), "{stderr}");
    assert!(cluster_containers(name).is_empty(), "left: {:?}", cluster_containers(name));
    assert!(!kc.exists() || !std::fs::read_to_string(&kc).unwrap().contains(&format!("berth-{name}")));
}

/// The current docker context is honoured, as the docker CLI honours it (rootless Docker and
/// Docker Desktop set one): berth reaches the daemon through the context's endpoint, and when
/// that endpoint is gone the error names it and the context.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn the_current_docker_context_is_the_daemon_berth_uses() {
    if !require_e2e("the_current_docker_context_is_the_daemon_berth_uses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    let config = dir.path().join("docker-config");
    let host = format!("host=unix://{}", socket.display());
    for args in [&["context", "create", "berth-e2e", "--docker", &host][..], &["context", "use", "berth-e2e"][..]] {
        run_ok(Command::new("docker").env("DOCKER_CONFIG", &config).env_remove("DOCKER_HOST").args(args));
    }
    let kc = dir.path().join("kubeconfig");
    let get = || {
        berth(&kc)
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(["get", "clusters"])
            .output()
            .unwrap()
    };
    let out = get();
    assert!(out.status.success(), "through the context's socket: {}", text(&out).1);
    std::fs::remove_file(&socket).unwrap();
    let out = get();
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()) && stderr.contains("docker context \"berth-e2e\""), "{stderr}");
}

/// `DOCKER_HOST=tcp://…` is reached: a relay on 127.0.0.1 passes each connection to the daemon's
/// socket (this machine's dockerd listens on its socket only), and berth lists clusters through
/// it. A loopback tcp endpoint is this machine's daemon, so create is not refused as remote.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_tcp_docker_host_is_reached() {
    if !require_e2e("a_tcp_docker_host_is_reached") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let unix = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").unwrap();
            let (mut tcp_r, mut unix_w) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut tcp_r, &mut unix_w));
            let (mut unix_r, mut tcp_w) = (unix, tcp);
            std::thread::spawn(move || std::io::copy(&mut unix_r, &mut tcp_w));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let host = format!("tcp://127.0.0.1:{port}");
    let out = berth(&kc).env("DOCKER_HOST", &host).args(["get", "clusters", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "through {host}: {}", text(&out).1);
    let listed: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert!(listed.is_array(), "{listed}");
    // Nothing listens at this port: the error names the endpoint.
    let out = berth(&kc).env("DOCKER_HOST", "tcp://127.0.0.1:1").args(["get", "clusters"]).output().unwrap();
    assert!(!out.status.success() && text(&out).1.contains("tcp://127.0.0.1:1"), "{}", text(&out).1);
}
