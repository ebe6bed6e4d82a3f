//! berth on Podman: Debian's rootful `podman system service`, chosen with `BERTH_PROVIDER=podman`
//! as a user chooses it. Two control planes behind berth's load balancer, Ready through it and
//! gone without a trace on delete; and a 1+2 cluster from README's quickstart command (the test image named
//! with `--image`), an image the user built with `podman build` loaded with `berth load
//! docker-image` under the name they gave it, a Deployment of it reached by Service name from a
//! pod on the other node, an image pushed with `podman push` to the local registry run by a pod,
//! `export logs`, `stop` / `start` and the Service answering again, and `delete` (registry, then
//! cluster) leaving no container, volume or network in Podman, berth's own network included.
//!
//! Ignored by default: `scripts/test` starts the Podman service (scripts/podman-service, which
//! copies the test images in) and runs these alone, after the Docker tests.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("running podman")
}

fn podman_lines(args: &[&str]) -> Vec<String> {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    lines.sort();
    lines
}

/// berth, told to use Podman, as a user tells it.
fn berth_podman(kc: &Path) -> Command {
    let mut c = berth(kc);
    c.env("BERTH_PROVIDER", "podman").env_remove("DOCKER_HOST");
    c
}

fn deletes_on_drop(name: &str, kc: &Path) -> impl Drop {
    struct Delete(String, std::path::PathBuf);
    impl Drop for Delete {
        fn drop(&mut self) {
            // The registry first: on berth's network it would keep the network after the cluster.
            let _ = berth_podman(&self.1).args(["delete", "registry"]).output();
            let _ = berth_podman(&self.1).args(["delete", "cluster", "--name", &self.0]).output();
        }
    }
    Delete(name.to_string(), kc.to_path_buf())
}

/// Fails the test unless Podman answers and holds `images` (scripts/podman-service copies them).
fn require_podman(images: &[&str]) {
    assert!(e2e_enabled(), "an end-to-end test: run it with BERTH_E2E=1");
    let ping = podman(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
    assert!(ping.status.success(), "BERTH_E2E=1 but podman does not answer: {}", String::from_utf8_lossy(&ping.stderr));
    for image in images {
        assert!(
            podman(&["image", "exists", image]).status.success(),
            "{image} is not in Podman's store (scripts/podman-service start copies it)"
        );
    }
}

/// Nothing of cluster `name` left in Podman: no container, no volume or network but those there
/// were, and no `berth` network.
fn nothing_left(name: &str, kc: &Path, volumes_before: &[String], networks_before: &[String]) {
    assert_eq!(
        podman_lines(&["ps", "-a", "--filter", &format!("label=dev.berth.cluster={name}"), "--format", "{{.Names}}"]),
        Vec::<String>::new()
    );
    assert!(podman_lines(&["ps", "-a", "--format", "{{.Names}}"]).iter().all(|c| !c.starts_with(name)), "no container of the cluster");
    assert_eq!(podman_lines(&["volume", "ls", "--format", "{{.Name}}"]), volumes_before, "no volume left behind");
    // berth's shared network goes with the last cluster on it (the Podman tests run one at a time).
    let networks_after = podman_lines(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks_after.iter().any(|n| n == "berth"), "berth's network is left: {networks_after:?}");
    let before: Vec<&String> = networks_before.iter().filter(|n| *n != "berth").collect();
    assert_eq!(networks_after.iter().collect::<Vec<_>>(), before, "no other network made or removed");
    let kubeconfig = std::fs::read_to_string(kc).unwrap_or_default();
    assert!(!kubeconfig.contains(&format!("berth-{name}")), "the context is gone:\n{kubeconfig}");
}

/// The local registry's port in the Podman tests (Docker's tests publish theirs on 5001).
const REGISTRY_PORT: &str = "5002";

#[test]
#[ignore = "needs a Podman service: scripts/test starts one and runs this alone"]
fn two_control_planes_on_podman_answer_through_their_balancer_and_leave_nothing() {
    let (image, lb_image) = (test_image(), "berth-test/haproxy:1");
    require_podman(&[&image, lb_image]);
    let name = &cluster_name("podman-ha");
    let (dir, kc) = temp_kubeconfig();
    let networks_before = podman_lines(&["network", "ls", "--format", "{{.Name}}"]);
    let volumes_before = podman_lines(&["volume", "ls", "--format", "{{.Name}}"]);
    let _delete = deletes_on_drop(name, &kc);
    let config = dir.path().join("ha.yaml");
    std::fs::write(&config, "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: control-plane\n")
        .unwrap();
    let out = berth_podman(&kc)
        .env("BERTH_LB_IMAGE", lb_image)
        .args(["create", "cluster", "--name", name, "--image", &image, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "HA create on Podman failed:\n{}", text(&out).1);
    // The kubeconfig names the balancer's published port, and both API servers answer behind it.
    let lb = format!("{name}-external-load-balancer");
    let published = podman_lines(&["port", &lb, "6443/tcp"]);
    let server = kubectl_ok(&kc, &["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let port = |p: &String| p.rsplit(':').next().unwrap_or_default().to_string();
    assert!(published.iter().any(|p| server.ends_with(&format!(":{}", port(p)))), "{server} is the balancer ({published:?})");
    eventually("both control planes Ready through the balancer", Duration::from_secs(120), || {
        let ready = kubectl_ok(
            &kc,
            &["get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}"],
        );
        (ready.split_whitespace().filter(|s| *s == "True").count() == 2).then_some(()).ok_or(ready)
    });
    run_ok(berth_podman(&kc).args(["delete", "cluster", "--name", name]));
    nothing_left(name, &kc, &volumes_before, &networks_before);
}

#[test]
#[ignore = "needs a Podman service: scripts/test starts one and runs this alone"]
fn a_cluster_on_podman_serves_a_podman_built_image_and_leaves_nothing() {
    let (image, registry_image) = (test_image(), "berth-test/registry:1");
    require_podman(&[&image, TOOLBOX, registry_image]);

    let name = &cluster_name("podman");
    let (dir, kc) = temp_kubeconfig();
    let networks_before = podman_lines(&["network", "ls", "--format", "{{.Name}}"]);
    let volumes_before = podman_lines(&["volume", "ls", "--format", "{{.Name}}"]);
    let _delete = deletes_on_drop(name, &kc);

    // An image the user builds with Podman, which stores it as localhost/NAME.
    let web_image = format!("berth-e2e-web:{}", std::process::id());
    let body = format!("served-from-a-podman-build-{}", std::process::id());
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {TOOLBOX}\nRUN mkdir -p /www && echo {body} > /www/index.html\nCMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"),
    )
    .unwrap();
    run_ok(Command::new("podman").args(["build", "-q", "-t", &web_image]).arg(dir.path()));
    let built = podman_lines(&["image", "inspect", "-f", "{{range .RepoTags}}{{.}}{{end}}", &web_image]);
    assert_eq!(built, [format!("localhost/{web_image}")], "Podman's own name for it");

    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n",
    )
    .unwrap();
    // With the local registry (on a port of its own: Docker's tests use 5001).
    let _ = berth_podman(&kc).args(["delete", "registry"]).output();
    let out = berth_podman(&kc)
        .env("BERTH_REGISTRY_IMAGE", registry_image)
        .args(["create", "cluster", "--name", name, "--image", &image, "--registry", REGISTRY_PORT, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "create on Podman failed:\n{stderr}");
    let (cp, worker, worker2) = (format!("{name}-control-plane"), format!("{name}-worker"), format!("{name}-worker2"));
    let mut running = podman_lines(&["ps", "--filter", &format!("label=dev.berth.cluster={name}"), "--format", "{{.Names}}"]);
    running.sort();
    assert_eq!(running, [cp.clone(), worker.clone(), worker2.clone()]);
    let listed = run_ok(berth_podman(&kc).args(["get", "clusters"]));
    assert!(listed.lines().any(|l| l.trim() == name.as_str()), "get clusters on Podman lists it: {listed}");

    // Loaded under the name the user gave; the Deployment says only that name.
    run_ok(berth_podman(&kc).args(["load", "docker-image", &web_image, TOOLBOX, "--name", name]));
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: \"{web_image}\", imagePullPolicy: Never}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    );
    // The client runs on the control plane, where the Deployment's pod cannot (its taint): what
    // it reaches, it reaches across nodes.
    let client = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  nodeName: {cp}\n  tolerations: [{{operator: Exists}}]\n  containers: [{{name: c, image: \"{TOOLBOX}\", imagePullPolicy: Never, command: [sleep, infinity]}}]\n"
    );
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, format!("{deployment}---\n{client}")).unwrap();
    run_ok(kubectl_cmd(&kc).args(["apply", "-f"]).arg(&manifest));
    kubectl_ok(&kc, &["rollout", "status", "deployment/web", "--timeout=120s"]);
    kubectl_ok(&kc, &["wait", "--for=condition=Ready", "pod/client", "--timeout=120s"]);
    let web_node = kubectl_ok(&kc, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.nodeName}"]);
    assert!(
        web_node == worker || web_node == worker2,
        "the Deployment's pod runs on a worker ({web_node}), the client on the control plane"
    );
    for host in ["web.default", "web.default.svc.cluster.local"] {
        curl_from_pod(&kc, &format!("the Service answers by name ({host}) across nodes"), "client", host, &body, Duration::from_secs(90));
    }

    // An image built and pushed to the local registry with Podman runs on the worker under that
    // name. An image of its own: Kubernetes 1.35+ kubelets (KubeletEnsureSecretPulledImages)
    // record the image ID a pull brought, and after a restart refuse a `Never` pod an image of
    // that ID under a name they never pulled (seen here when the loaded image was pushed too).
    let pushed = format!("localhost:{REGISTRY_PORT}/berth-e2e/pushed:{}", std::process::id());
    let pushed_body = format!("pushed-with-podman-{}", std::process::id());
    let push_dir = dir.path().join("pushed");
    std::fs::create_dir(&push_dir).unwrap();
    std::fs::write(push_dir.join("Containerfile"), format!("FROM {TOOLBOX}\nRUN mkdir -p /www && echo {pushed_body} > /www/index.html\n"))
        .unwrap();
    run_ok(Command::new("podman").args(["build", "-q", "-t", &pushed]).arg(&push_dir));
    run_ok(Command::new("podman").args(["push", "-q", "--tls-verify=false", &pushed]));
    let _ = podman(&["rmi", &pushed]);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: from-registry}}\nspec:\n  nodeName: {worker}\n  containers: [{{name: web, image: \"{pushed}\", command: [sleep, infinity]}}]\n"
    );
    let pod_file = dir.path().join("from-registry.yaml");
    std::fs::write(&pod_file, pod).unwrap();
    run_ok(kubectl_cmd(&kc).args(["apply", "-f"]).arg(&pod_file));
    kubectl_ok(&kc, &["wait", "--for=condition=Ready", "pod/from-registry", "--timeout=120s"]);
    let served = kubectl_ok(&kc, &["exec", "from-registry", "--", "cat", "/www/index.html"]);
    assert_eq!(served.trim(), pushed_body, "the pod runs the pushed image");

    // Logs: per node, the journals and the kube-system pods' logs.
    let logs = tempfile::tempdir().unwrap();
    run_ok(berth_podman(&kc).args(["export", "logs"]).arg(logs.path()).args(["--name", name]));
    for node in [&cp, &worker, &worker2] {
        for f in ["kubelet.log", "containerd.log", "journal.log", "kubernetes-version.txt", "inspect.json"] {
            let p = logs.path().join(node).join(f);
            assert!(std::fs::metadata(&p).is_ok_and(|m| m.len() > 0), "{} is missing or empty", p.display());
        }
    }
    let pods = std::fs::read_dir(logs.path().join(&cp).join("pods")).unwrap();
    assert!(pods.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("kube-system_")), "kube-system pod logs");

    // Stopped and started, the cluster serves again through the same kubeconfig.
    run_ok(berth_podman(&kc).args(["stop", "cluster", "--name", name]));
    let states = podman_lines(&["inspect", "-f", "{{.State.Status}}", &cp, &worker, &worker2]);
    assert_eq!(states, ["exited", "exited", "exited"], "every node stopped");
    let started_at = now_rfc3339();
    run_ok(berth_podman(&kc).args(["start", "cluster", "--name", name]));
    eventually("every node freshly Ready after start", Duration::from_secs(120), || all_ready_since(&kc, 3, &started_at));
    curl_from_pod(&kc, "the Service answers by name after start", "client", "web.default", &body, Duration::from_secs(120));

    // Delete the registry, then the cluster: nothing is left in Podman.
    run_ok(berth_podman(&kc).args(["delete", "registry"]));
    assert!(!podman(&["container", "exists", "berth-registry"]).status.success(), "the registry container is gone");
    run_ok(berth_podman(&kc).args(["delete", "cluster", "--name", name]));
    nothing_left(name, &kc, &volumes_before, &networks_before);
    let _ = podman(&["rmi", &web_image]);
}
