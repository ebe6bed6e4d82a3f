//! Registries end to end: a node image pulled by `repo:tag@digest` (with progress, the digest
//! checked) from a registry on 127.0.0.1;
//! the local registry wired into every node, serving a pod that names localhost:PORT/...;
//! a pull from an unreachable registry failing in one line with nothing created.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const PORT: &str = "5001";

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn an_unreachable_registry_fails_in_one_line_and_creates_nothing() {
    if !require_e2e("an_unreachable_registry_fails_in_one_line_and_creates_nothing") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let image = format!("127.0.0.1:{port}/berth-test/node:{}", test_image_version());
    let (_dir, kc) = temp_kubeconfig();
    // berth's own network comes and goes with the clusters of tests running beside this one.
    let networks = || -> Vec<String> {
        let out = String::from_utf8(docker(&["network", "ls", "--format", "{{.Name}}"]).stdout).unwrap();
        out.lines().filter(|n| *n != "berth").map(str::to_string).collect()
    };
    let networks_before = networks();
    let start = Instant::now();
    let name = &cluster_name("nopull");
    let out = berth(&kc).args(["create", "cluster", "--name", name, "--image", &image]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30), "bounded: {:?}", start.elapsed());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&image) && errors[0].contains(&format!("from 127.0.0.1:{port}")), "{stderr}");
    assert!(cluster_containers(name).is_empty());
    assert_eq!(networks(), networks_before, "no network made");
    assert!(!kc.exists());
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn local_registry_serves_pods_and_node_images_are_pulled_from_a_registry() {
    if !require_e2e("local_registry_serves_pods_and_node_images_are_pulled_from_a_registry") {
        return;
    }
    let (dir, kc) = temp_kubeconfig();
    let (reg, pull, pull2) = (&cluster_name("reg"), &cluster_name("pull"), &cluster_name("pull2"));
    let _guards = [reg, pull, pull2].map(|name| ClusterGuard { name: name.clone(), kubeconfig: kc.clone() });
    let cfg = dir.path().join("reg.yaml");
    std::fs::write(&cfg, "kind: Cluster\napiVersion: berth.dev/v1alpha1\nnodes:\n- role: control-plane\n- role: worker\n").unwrap();
    let _ = berth(&kc).args(["delete", "registry"]).output();
    run_ok(berth(&kc).env("BERTH_REGISTRY_IMAGE", "berth-test/registry:1").args([
        "create",
        "cluster",
        "--name",
        reg,
        "--config",
        cfg.to_str().unwrap(),
        "--image",
        &test_image(),
        "--registry",
        PORT,
    ]));

    // A pod naming localhost:PORT/... with the default pull policy, on the worker.
    let tagged = format!("localhost:{PORT}/berth-test/toolbox:1");
    run_ok(Command::new("docker").args(["tag", "berth-test/toolbox:1", &tagged]));
    run_ok(Command::new("docker").args(["push", "-q", &tagged]));
    run_ok(Command::new("docker").args(["rmi", &tagged]));
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: from-registry}}\nspec:\n  nodeName: {reg}-worker\n  containers: [{{name: tb, image: \"{tagged}\", command: [sleep, infinity]}}]\n"
    );
    let pod_file = dir.path().join("pod.yaml");
    std::fs::write(&pod_file, pod).unwrap();
    run_ok(kubectl_cmd(&kc).args(["apply", "-f"]).arg(&pod_file));
    run_ok(kubectl_cmd(&kc).args(["wait", "--for=condition=Ready", "pod/from-registry", "--timeout=120s"]));
    let hosting = run_ok(kubectl_cmd(&kc).args([
        "-n",
        "kube-public",
        "get",
        "configmap",
        "local-registry-hosting",
        "-o",
        "jsonpath={.data.localRegistryHosting\\.v1}",
    ]));
    assert!(hosting.contains(&format!("host: \"localhost:{PORT}\"")), "{hosting}");

    // A node image pushed to the registry (published on 127.0.0.1) and then removed locally.
    // It carries a layer of its own, so the pull really transfers something (its other layers
    // are the test image's, which other tests keep using).
    let remote = format!("127.0.0.1:{PORT}/berth-test/node:{}", test_image_version());
    let ctx = dir.path().join("node-ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {}\nRUN echo pulled-from-a-registry > /kind/pulled\n", test_image())).unwrap();
    run_ok(Command::new("docker").env("DOCKER_BUILDKIT", "0").args(["build", "-q", "-t", &remote]).arg(&ctx));
    run_ok(Command::new("docker").args(["push", "-q", &remote]));
    // Pinned as berth's default is: repository, tag and digest (`repo:tag@sha256:…`).
    let repo_digest = run_ok(Command::new("docker").args(["image", "inspect", "-f", "{{index .RepoDigests 0}}", &remote]));
    let digest = repo_digest.trim().rsplit_once('@').expect("a pushed image has a repo digest").1.to_string();
    let pinned = format!("{remote}@{digest}");
    run_ok(Command::new("docker").args(["rmi", &remote]));
    assert!(!docker(&["image", "inspect", &remote]).status.success());

    // A digest the registry does not have: one line, nothing created, nothing pulled.
    let wrong = format!("{remote}@sha256:{}", "0".repeat(64));
    let out = berth(&kc).args(["create", "cluster", "--name", pull, "--image", &wrong]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().filter(|l| l.starts_with("ERROR:")).count() == 1 && stderr.contains(&format!("from 127.0.0.1:{PORT}")),
        "{stderr}"
    );
    assert!(cluster_containers(pull).is_empty());

    let out = berth(&kc).args(["create", "cluster", "--name", pull, "--image", &pinned, "--wait", "3m"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("Pulling {pinned}")) && stderr.contains("Pull complete"), "pull progress shown:\n{stderr}");
    let digests = run_ok(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{json .RepoDigests}}",
        &format!("127.0.0.1:{PORT}/berth-test/node@{digest}"),
    ]));
    assert!(digests.contains(&digest), "the pulled image carries the digest asked for: {digests}");
    let nodes = run_ok(kubectl_cmd(&kc).args([
        "--context",
        &format!("berth-{pull}"),
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
    ]));
    assert_eq!(nodes, "True");
    let marker = run_ok(Command::new("docker").args(["exec", &format!("{pull}-control-plane"), "cat", "/kind/pulled"]));
    assert_eq!(marker.trim(), "pulled-from-a-registry", "the node runs the pulled image");
    // Present now: no second pull unless asked (`--pull never` proves it is local).
    let again =
        berth(&kc).args(["create", "cluster", "--name", pull2, "--image", &pinned, "--pull", "never", "--wait", "0"]).output().unwrap();
    let (_, again_err) = text(&again);
    assert!(again.status.success() && !again_err.contains("Pulling"), "an image that is present is not pulled again:\n{again_err}");
    run_ok(berth(&kc).args(["delete", "cluster", "--name", pull2]));

    // Deleting clusters leaves the registry; `delete registry` removes it and its data.
    run_ok(berth(&kc).args(["delete", "clusters", reg, pull]));
    assert!(docker(&["inspect", "berth-registry"]).status.success(), "the registry outlives clusters");

    // Stopped, it still answers for its port: another port is refused before anything is made.
    run_ok(Command::new("docker").args(["stop", "berth-registry"]));
    let out = berth(&kc).args(["create", "cluster", "--name", pull2, "--image", &test_image(), "--registry", "5999"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains(&format!("set up for port {PORT}")), "{stderr}");
    assert!(!stderr.contains("Creating nodes") && cluster_containers(pull2).is_empty(), "refused before anything was made: {stderr}");

    run_ok(berth(&kc).args(["delete", "registry"]));
    assert!(!docker(&["inspect", "berth-registry"]).status.success());
    assert!(!volume_exists("berth-registry-data"));

    // A container of that name that berth did not make is neither used nor removed.
    run_ok(Command::new("docker").args(["create", "--name", "berth-registry", TOOLBOX, "true"]));
    let out = berth(&kc).args(["delete", "registry"]).output().unwrap();
    assert!(!out.status.success() && text(&out).1.contains("berth did not make"), "{}", text(&out).1);
    let out = berth(&kc).args(["create", "cluster", "--name", pull2, "--image", &test_image(), "--registry", PORT]).output().unwrap();
    assert!(!out.status.success() && text(&out).1.contains("berth did not make"), "{}", text(&out).1);
    assert!(docker(&["inspect", "berth-registry"]).status.success(), "the stranger's container is still there");
    assert!(cluster_containers(pull2).is_empty());
    run_ok(Command::new("docker").args(["rm", "berth-registry"]));
    let _ = docker(&["rmi", &remote]);
    let _ = docker(&["rmi", &format!("127.0.0.1:{PORT}/berth-test/node@{digest}")]);
}
