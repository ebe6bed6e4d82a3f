//! kind's example config (`configs/kind-compatible.yaml`), unchanged, on a real cluster: every
//! field it uses is checked for its effect, not for being accepted.

use std::io::Write;
use std::time::Duration;

use crate::common::*;

fn node_exec(node: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", node];
    args.extend_from_slice(cmd);
    run_ok(std::process::Command::new("docker").args(&args))
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: berth-test/toolbox:1
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo served-through-the-port-mapping > /www/index.html && exec busybox httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
";

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn kinds_example_config_works_field_by_field() {
    let Some(t) = test_cluster("kinds_example_config_works_field_by_field", "kindcfg") else { return };
    let (name, kc, dir) = (&t.name, t.kubeconfig.clone(), t.dir.path());
    // The config's relative hostPath `shared` is taken from the directory berth runs in.
    std::fs::create_dir(dir.join("shared")).unwrap();
    std::fs::write(dir.join("shared/hello.txt"), "from-the-host\n").unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/kind-compatible.yaml");
    // A proxy in the user's environment reaches the nodes, as kind passes it; the cluster's own
    // traffic stays off it (nothing here answers at proxy.invalid, so a create that sent its
    // joins through it would fail).
    run_ok(berth(&kc).current_dir(dir).env("HTTPS_PROXY", "http://proxy.invalid:3128").args([
        "create",
        "cluster",
        "--name",
        name,
        "--config",
        config,
        "--image",
        &test_image(),
    ]));
    let (cp, worker) = (format!("{name}-control-plane"), format!("{name}-worker"));
    // containerd itself runs with it (what its pulls use).
    let env = node_exec(&worker, &["sh", "-c", "tr '\\0' '\\n' < /proc/$(pidof containerd)/environ"]);
    assert!(env.contains("HTTPS_PROXY=http://proxy.invalid:3128"), "{env}");
    assert!(env.contains(&format!("{cp},{worker},.svc")) && env.contains("10.97.0.0/16,10.250.0.0/16"), "NO_PROXY: {env}");

    // extraMounts: the host's file, read-only, inside the worker.
    assert_eq!(node_exec(&worker, &["cat", "/host-shared/hello.txt"]).trim(), "from-the-host");
    assert!(!docker(&["exec", &worker, "touch", "/host-shared/x"]).status.success(), "readOnly: true");

    // labels (worker) and a kubeadm patch's node-labels (control plane).
    assert_eq!(kubectl_ok(&kc, &["get", "nodes", "-l", "tier=apps", "-o", "name"]).trim(), format!("node/{worker}"));
    assert_eq!(kubectl_ok(&kc, &["get", "nodes", "-l", "ingress-ready=true", "-o", "name"]).trim(), format!("node/{cp}"));

    // containerdConfigPatches: in containerd's effective config, on every node.
    for node in [&cp, &worker] {
        let dump = node_exec(node, &["containerd", "config", "dump"]);
        assert!(dump.contains("max_container_log_line_size = 32768"), "{node}: {dump}");
    }

    // networking.dnsSearch: the nodes' resolv.conf.
    let resolv = node_exec(&cp, &["cat", "/etc/resolv.conf"]);
    assert!(resolv.lines().any(|l| l == "search berth.test"), "{resolv}");

    // The cluster-wide kubeadm patch: the running API server has the flag, and it takes effect.
    let apiserver = kubectl_ok(
        &kc,
        &["-n", "kube-system", "get", "pod", &format!("kube-apiserver-{cp}"), "-o", "jsonpath={.spec.containers[0].command}"],
    );
    assert!(apiserver.contains("--service-node-port-range=30000-30100"), "{apiserver}");
    let outside = "apiVersion: v1\nkind: Service\nmetadata: {name: outside}\nspec:\n  type: NodePort\n  selector: {app: none}\n  ports: [{port: 80, nodePort: 30500}]\n";
    let refused = kubectl_cmd(&kc).args(["apply", "-f", "-"]).stdin(std::process::Stdio::piped()).output_with_stdin(outside);
    assert!(!refused.status.success() && text(&refused).1.contains("valid range"), "{:?}", text(&refused));

    // extraPortMappings with hostPort -1: a fixed free port on 127.0.0.1 (kept by Docker across
    // restarts because it is written into the container), serving the NodePort from the host.
    let bindings = run_ok(std::process::Command::new("docker").args(["inspect", "-f", "{{json .HostConfig.PortBindings}}", &cp]));
    let bindings: serde_json::Value = serde_json::from_str(&bindings).unwrap();
    let binding = &bindings["30080/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1");
    let port: u16 = binding["HostPort"].as_str().unwrap().parse().expect("a fixed host port, not Docker's pick");
    run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    let applied = kubectl_cmd(&kc).args(["apply", "-f", "-"]).stdin(std::process::Stdio::piped()).output_with_stdin(WEB);
    assert!(applied.status.success(), "{:?}", text(&applied));
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);
    let body = eventually("the NodePort answers on the mapped host port", Duration::from_secs(120), || http_get("127.0.0.1", port));
    assert!(body.contains("served-through-the-port-mapping"), "{body}");
}

/// `Command::output` with text on stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output {
        let mut child = self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}
