//! Growing and shrinking a running cluster on the default path: a one-node cluster gets a
//! worker (`berth create node`), a Deployment of two replicas with pod anti-affinity spreads
//! over both nodes and its pods reach each other; `berth delete node` drains the worker (its
//! pod moves to the control plane) and leaves no container, volume or Node object. SIGINT during
//! `create node` leaves the cluster as it was. (Control planes: `multinode.rs`, on the HA
//! cluster.)

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const SPREAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 2
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: spread}}
      containers:
      - name: web
        image: berth-test/toolbox:1
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec busybox httpd -f -p 8080 -h /www']
";

/// (pod name, node, pod IP) of the Deployment's running pods.
fn spread_pods(kc: &Path) -> Vec<(String, String, String)> {
    let out = kubectl_ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=spread",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
        ],
    );
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_cluster_grows_by_a_worker_and_shrinks_again() {
    let Some(t) = test_cluster("a_cluster_grows_by_a_worker_and_shrinks_again", "grow") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    run_ok(berth(&kc).args(["create", "cluster", "--name", name, "--image", &test_image()]));
    let (cp, worker) = (format!("{name}-control-plane"), format!("{name}-worker"));
    let before = cluster_containers(name);

    // SIGINT while the new node joins: nothing of it is left, the cluster is as it was.
    let mut child = berth(&kc).args(["create", "node", "--name", name]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "create node ended before joining:\n{seen}");
        seen.push_str(&line);
        if line.contains(&format!("Joining {worker} as a worker")) {
            break;
        }
    }
    let volumes = container_volumes(&worker);
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    assert_eq!(child.wait().unwrap().code(), Some(1), "{seen}");
    assert!(seen.contains("interrupted (SIGINT)") && seen.contains("as it was"), "{seen}");
    assert_eq!(cluster_containers(name), before, "{seen}");
    assert!(!volumes.is_empty() && volumes.iter().all(|v| !volume_exists(v)), "the new node's /var went with it: {volumes:?}");
    eventually("no Node object of the interrupted node", Duration::from_secs(30), || {
        let nodes = kubectl_ok(&kc, &["get", "nodes", "-o", "name"]);
        (!nodes.contains(&worker)).then_some(()).ok_or(nodes)
    });
    assert!(run_ok(berth(&kc).args(["get", "clusters", "-o", "wide"])).contains("running"));

    // Grow: the worker joins, and berth lists it.
    run_ok(berth(&kc).args(["create", "node", "--name", name, "--labels", "tier=apps"]));
    let listed = run_ok(berth(&kc).args(["get", "nodes", "--name", name]));
    assert!(listed.lines().any(|l| l == worker), "{listed}");
    assert_eq!(kubectl_ok(&kc, &["get", "node", &worker, "-o", "jsonpath={.metadata.labels.tier}"]), "apps");
    run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", name]));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spread.yaml");
    std::fs::write(&manifest, SPREAD).unwrap();
    run_ok(kubectl_cmd(&kc).args(["apply", "-f"]).arg(&manifest));
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/spread", "--timeout=120s"]);
    let pods = eventually("two pods, one on each node", Duration::from_secs(60), || {
        let pods = spread_pods(&kc);
        let mut nodes: Vec<&str> = pods.iter().map(|(_, n, _)| n.as_str()).collect();
        nodes.sort();
        (nodes == [cp.as_str(), worker.as_str()]).then_some(pods.clone()).ok_or(format!("{pods:?}"))
    });
    // Each pod reaches the other, across the two nodes.
    for (from, to) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        let url = format!("{}:8080", to.2);
        curl_from_pod(&kc, &format!("{} reaches {}", from.0, to.0), &from.0, &url, &to.0, Duration::from_secs(60));
    }

    // Shrink: the worker is drained (its pod moves over) and nothing of it is left.
    let worker_volumes = container_volumes(&worker);
    let out = run_ok(berth(&kc).args(["delete", "node", &worker, "--name", name]));
    let _ = out;
    assert!(!cluster_containers(name).contains(&worker), "{:?}", cluster_containers(name));
    assert!(worker_volumes.iter().all(|v| !volume_exists(v)), "{worker_volumes:?}");
    assert!(!kubectl_ok(&kc, &["get", "nodes", "-o", "name"]).contains(&worker));
    kubectl_ok(&kc, &["wait", "--for=condition=Available", "deployment/spread", "--timeout=120s"]);
    eventually("both replicas run on the control plane", Duration::from_secs(60), || {
        let pods = spread_pods(&kc);
        (pods.len() == 2 && pods.iter().all(|(_, n, _)| *n == cp)).then_some(()).ok_or(format!("{pods:?}"))
    });
    let wide = run_ok(berth(&kc).args(["get", "clusters", "-o", "wide"]));
    let row = wide.lines().find(|l| l.split_whitespace().next() == Some(name.as_str())).unwrap_or_default();
    assert!(row.contains("running") && row.split_whitespace().nth(2) == Some("1"), "one node, running (not broken): {wide}");
}
