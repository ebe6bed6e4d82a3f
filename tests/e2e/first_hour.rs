//! What a newcomer does in their first hour, on the default one-node cluster, with README's
//! quickstart commands: no `nodeName`, no tolerations, no storage class named. The cluster runs
//! the test image's Kubernetes (kubeadm's v1beta4 config on current versions), a Deployment
//! becomes Available, its Service answers another pod by name through cluster DNS
//! (`web.default` and the full `.svc.cluster.local` name), and a PersistentVolumeClaim binds and
//! keeps its data across pods and across `berth stop` / `berth start`, after which DNS answers
//! again.
//!
//! The test image is named with `--image` as README's quickstart does (nothing can be pulled
//! here).

use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn apply(kc: &Path, dir: &Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    run_ok(kubectl_cmd(kc).args(["apply", "-f"]).arg(&path));
}

/// A pod (no pinning, no tolerations) that mounts claim `data` at /data and runs `script`.
fn data_pod(name: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: main\n    image: {TOOLBOX}\n    command: [sh, -c, {script:?}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n"
    )
}

fn wait_pod_ready(kc: &Path, pod: &str) {
    kubectl_ok(kc, &["wait", "--for=condition=Ready", &format!("pod/{pod}"), "--timeout=120s"]);
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_newcomers_first_commands_work_on_the_default_cluster() {
    let Some(t) = test_cluster("a_newcomers_first_commands_work_on_the_default_cluster", "first") else { return };
    let (name, kc, dir) = (&t.name, t.kubeconfig.clone(), &t.dir);

    let out = berth(&kc).args(["create", "cluster", "--name", name, "--image", &test_image()]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "create failed:\n{stderr}");
    assert!(!stderr.contains("StorageClass"), "the test image carries a default StorageClass, so no warning:\n{stderr}");
    let node = format!("{name}-control-plane");
    let taints = kubectl_ok(&kc, &["get", "node", &node, "-o", "jsonpath={.spec.taints}"]);
    assert_eq!(taints.trim(), "", "a one-node cluster runs workloads: no NoSchedule taint");
    // The server is the image's Kubernetes, configured by kubeadm's current config API.
    let version = test_image_version();
    let server: serde_json::Value = serde_json::from_str(&kubectl_ok(&kc, &["version", "-o", "json"])).unwrap();
    assert_eq!(server["serverVersion"]["gitVersion"].as_str(), Some(version.as_str()), "{server}");
    let config = run_ok(std::process::Command::new("docker").args(["exec", &node, "cat", "/kind/kubeadm.conf"]));
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    if minor >= 36 {
        assert!(config.contains("apiVersion: kubeadm.k8s.io/v1beta4"), "{config}");
    }

    // The app: load the image, create a Deployment and a Service, as the kubectl docs show.
    run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    kubectl_ok(
        &kc,
        &[
            "create",
            "deployment",
            "web",
            "--image",
            TOOLBOX,
            "--",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-web > /www/index.html && exec busybox httpd -f -p 8080 -h /www",
        ],
    );
    kubectl_ok(&kc, &["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);
    kubectl_ok(&kc, &["run", "client", "--image", TOOLBOX, "--", "sleep", "infinity"]);
    wait_pod_ready(&kc, "client");
    // Create waited for cluster DNS: the Service answers by name at once (no retries needed
    // beyond the pod's first request).
    for host in ["web.default", "web.default.svc.cluster.local"] {
        curl_from_pod(
            &kc,
            &format!("the Service answers another pod as {host}"),
            "client",
            host,
            "hello-from-web",
            Duration::from_secs(20),
        );
    }

    // Storage: a claim that names no class binds through the default one.
    apply(&kc, dir.path(), "pvc.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 100Mi}}\n");
    eventually("the claim is Bound", Duration::from_secs(60), || {
        let phase = kubectl_ok(&kc, &["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]);
        if phase == "Bound" {
            Ok(())
        } else {
            Err(phase)
        }
    });
    let class = kubectl_ok(&kc, &["get", "pvc", "data", "-o", "jsonpath={.spec.storageClassName}"]);
    assert_eq!(class, "standard", "the default StorageClass was filled in");
    apply(&kc, dir.path(), "writer.yaml", &data_pod("writer", "echo kept-across-pods > /data/note && sleep infinity"));
    wait_pod_ready(&kc, "writer");
    kubectl_ok(&kc, &["delete", "pod", "writer", "--grace-period=1", "--wait=true"]);
    apply(&kc, dir.path(), "reader.yaml", &data_pod("reader", "sleep infinity"));
    wait_pod_ready(&kc, "reader");
    assert_eq!(kubectl_ok(&kc, &["exec", "reader", "--", "cat", "/data/note"]).trim(), "kept-across-pods");

    // Stop and start: the data is still there, the app serves again.
    run_ok(berth(&kc).args(["stop", "cluster", "--name", name]));
    run_ok(berth(&kc).args(["start", "cluster", "--name", name, "--wait", "3m"]));
    let note = eventually("the reader runs again and sees the data", Duration::from_secs(120), || {
        let o = kubectl(&kc, &["exec", "reader", "--", "cat", "/data/note"]);
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert_eq!(note, "kept-across-pods", "the claim's data survives stop/start");
    curl_from_pod(&kc, "the Service answers by name after start", "client", "web.default", "hello-from-web", Duration::from_secs(120));
}
