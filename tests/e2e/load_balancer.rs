//! `berth load-balancer`: LoadBalancer Services get addresses the host reaches, TCP and UDP,
//! that follow scaling, port changes and deletion, survive a stop/start, differ between two
//! clusters, and leave nothing behind.

use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A Deployment serving its pod's name over HTTP on 8080 and echoing UDP on 9000, and two
/// LoadBalancer Services (Kubernetes 1.20 allows one protocol per LoadBalancer Service).
const APP: &str = r#"apiVersion: apps/v1
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
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && (perl -MIO::Socket::INET -e "\$s=IO::Socket::INET->new(LocalPort=>9000,Proto=>q(udp)) or die; while(\$s->recv(\$m,1024)){\$s->send(qq(echo:\$m))}" &) && exec busybox httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 53, targetPort: 9000, protocol: UDP}]
"#;

fn udp_echo(ip: &str, port: u16) -> Result<String, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    socket.send_to(b"ping", (ip, port)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The Service's load balancer address, once it has one.
fn ingress(kc: &Path, service: &str) -> String {
    eventually(&format!("{service} gets an address"), Duration::from_secs(60), || {
        let ip = kubectl_ok(kc, &["get", "service", service, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
        (!ip.is_empty()).then_some(ip).ok_or_else(|| "pending".to_string())
    })
}

fn apply(kc: &Path, yaml: &str) {
    let mut child = kubectl_cmd(kc).args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
}

/// `berth load-balancer` in the background; stopped by [`interrupt`].
fn serve(kc: &Path, name: &str, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    berth(kc).args(["load-balancer", "--name", name]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
}

/// Ctrl-C (`-INT`) or a closed terminal (`-HUP`): either way the command cleans up and exits 0.
fn interrupt(mut child: Child, signal: &str) {
    run_ok(Command::new("kill").args([signal, &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(status.success(), "load-balancer exits 0 on {signal}: {status}");
}

/// `berth load` stopped by SIGHUP (a closed terminal) while it writes its temporary archive of
/// the image: it says so, and the archive is gone from its temp dir.
fn interrupted_load(kc: &Path, name: &str, dir: &Path) {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = berth(kc)
        .env("TMPDIR", &tmp)
        .args(["load", "docker-image", TOOLBOX, "--name", name])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = std::time::Instant::now();
    while std::fs::read_dir(&tmp).unwrap().count() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the load ended before it was interrupted");
        assert!(began.elapsed() < Duration::from_secs(60), "the load made no temp dir");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_ok(Command::new("kill").args(["-HUP", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("interrupted (SIGHUP)") && stderr.contains("removed"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "an interrupted load left {left:?}");
}

/// The cluster's Service forwarders, by their role label.
fn forwarders(cluster: &str) -> Vec<String> {
    let role = containers_with_label("dev.berth.role=service-load-balancer");
    cluster_containers(cluster).into_iter().filter(|c| role.contains(c)).collect()
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn load_balancer_services_get_addresses_the_host_reaches() {
    let Some(a) = test_cluster("load_balancer_services_get_addresses_the_host_reaches", "lb-a") else { return };
    let b = test_cluster("load_balancer_services_get_addresses_the_host_reaches", "lb-b").unwrap();
    // Both clusters at once, as README's quickstart makes them.
    let create = |t: &TestCluster, hang_up_a_load: bool| {
        let (kc, name, dir) = (t.kubeconfig.clone(), t.name.clone(), t.dir.path().to_path_buf());
        std::thread::spawn(move || {
            run_ok(berth(&kc).args(["create", "cluster", "--name", &name, "--image", &test_image()]));
            if hang_up_a_load {
                interrupted_load(&kc, &name, &dir);
            }
            run_ok(berth(&kc).args(["load", "docker-image", TOOLBOX, "--name", &name]));
        })
    };
    let (ta, tb) = (create(&a, false), create(&b, true));
    ta.join().unwrap();
    tb.join().unwrap();
    let (ka, kb) = (a.kubeconfig.clone(), b.kubeconfig.clone());
    let serving_a = serve(&ka, &a.name, &a.dir.path().join("lb.log"));
    let serving_b = serve(&kb, &b.name, &b.dir.path().join("lb.log"));
    apply(&ka, APP);
    apply(&kb, APP);
    kubectl_ok(&ka, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);
    kubectl_ok(&kb, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);

    let (web, echo) = (ingress(&ka, "web"), ingress(&ka, "echo"));
    let body = eventually("HTTP through the address", Duration::from_secs(30), || http_get(&web, 80));
    assert!(body.contains("web-"), "the pod's name: {body}");
    assert_eq!(eventually("UDP through the address", Duration::from_secs(30), || udp_echo(&echo, 53)), "echo:ping");
    let web_b = ingress(&kb, "web");
    assert_ne!(web, web_b, "two clusters, two addresses");
    assert!(eventually("cluster b's Service answers", Duration::from_secs(30), || http_get(&web_b, 80)).contains("web-"));

    // Endpoints follow: none ready, no answer; back again, answers.
    kubectl_ok(&ka, &["scale", "deployment/web", "--replicas=0"]);
    eventually("no pods, no answer", Duration::from_secs(60), || match http_get(&web, 80) {
        Ok(body) => Err(format!("still answered: {body}")),
        Err(_) => Ok(()),
    });
    kubectl_ok(&ka, &["scale", "deployment/web", "--replicas=2"]);
    kubectl_ok(&ka, &["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"]);
    eventually("scaled back up, answers", Duration::from_secs(60), || http_get(&web, 80));

    // Ports follow: 80 becomes 81, at the same address.
    kubectl_ok(&ka, &["patch", "service", "web", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/ports/0/port","value":81}]"#]);
    eventually("the new port answers", Duration::from_secs(60), || http_get(&web, 81));
    assert!(http_get(&web, 80).is_err(), "the old port is closed");
    assert_eq!(ingress(&ka, "web"), web, "same address after a port change");

    // The address survives a stop/start of the cluster (the command keeps running).
    run_ok(berth(&ka).args(["stop", "cluster", "--name", &a.name]));
    run_ok(berth(&ka).args(["start", "cluster", "--name", &a.name]));
    assert_eq!(ingress(&ka, "web"), web);
    eventually("answers after stop/start", Duration::from_secs(120), || http_get(&web, 81));

    // Deleting a Service removes its forwarder and its address stops answering.
    kubectl_ok(&ka, &["delete", "service", "echo"]);
    eventually("echo's forwarder is gone", Duration::from_secs(30), || {
        let left = forwarders(&a.name);
        (left.len() == 1).then_some(()).ok_or(format!("{left:?}"))
    });
    assert!(udp_echo(&echo, 53).is_err(), "a deleted Service's address does not answer");

    // A second `berth load-balancer` for the same cluster is refused at once, naming the first,
    // and leaves the first's forwarders serving.
    let second = berth(&ka).args(["load-balancer", "--name", &a.name]).output().unwrap();
    let refusal = text(&second).1;
    assert!(!second.status.success(), "a second load-balancer for one cluster must be refused: {refusal}");
    assert!(refusal.contains(&format!("berth process {}@", serving_a.id())), "names the one serving: {refusal}");
    assert_eq!(forwarders(&a.name).len(), 1, "the refused one removed nothing");
    eventually("still answers beside a refused second server", Duration::from_secs(30), || http_get(&web, 81));

    // A closed terminal (SIGHUP) removes what the command made and takes the address back out
    // of the status, as Ctrl-C does.
    interrupt(serving_a, "-HUP");
    assert!(forwarders(&a.name).is_empty(), "{:?}", forwarders(&a.name));
    assert_eq!(kubectl_ok(&ka, &["get", "service", "web", "-o", "jsonpath={.status.loadBalancer.ingress}"]), "");
    let log = std::fs::read_to_string(a.dir.path().join("lb.log")).unwrap();
    assert!(log.contains(&format!("default/web: {web} (80/TCP)")) && log.contains("Removed"), "{log}");

    // Forwarders are not nodes: `get clusters -o wide` counts the one node.
    assert_eq!(forwarders(&b.name).len(), 2);
    let wide = run_ok(berth(&kb).args(["get", "clusters", "-o", "wide"]));
    let row = wide.lines().find(|l| l.split_whitespace().next() == Some(b.name.as_str())).unwrap_or_else(|| panic!("{wide}"));
    assert_eq!(row.split_whitespace().nth(2), Some("1"), "NODES of a one-node cluster with two forwarders: {row}");

    // delete cluster removes a running forwarder with the nodes.
    run_ok(berth(&kb).args(["delete", "cluster", "--name", &b.name]));
    assert!(cluster_containers(&b.name).is_empty(), "{:?}", cluster_containers(&b.name));
    interrupt(serving_b, "-INT");
}
