//! Trust: stop/start and restarts keep a cluster working; interrupting create at any step,
//! racing creates, and a cluster that never gets Ready all end cleanly; secrets stay out of
//! berth's logs even at the highest verbosity.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn node_addresses(cluster: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cluster_containers(cluster)
        .into_iter()
        .map(|n| {
            let ip = run_ok(Command::new("docker").args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &n]));
            (n, ip.trim().to_string())
        })
        .collect();
    out.sort();
    out
}

fn all_ready(kc: &Path, expected: usize) -> Result<(), String> {
    let out = kubectl(
        kc,
        &[
            "get",
            "nodes",
            "--request-timeout=5s",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ready = text.lines().filter(|l| *l == "True").count();
    if out.status.success() && ready == expected {
        Ok(())
    } else {
        Err(format!("{ready}/{expected} Ready; {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn cluster_state(kc: &Path, name: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&run_ok(berth(kc).args(["get", "clusters", "-o", "json"]))).unwrap();
    json.as_array().unwrap().iter().find(|c| c["name"] == name).map(|c| c["state"].as_str().unwrap().to_string()).unwrap_or_default()
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn stop_start_and_restarts_keep_the_cluster_and_logs_keep_secrets() {
    let Some(t) = test_cluster("stop_start_and_restarts_keep_the_cluster_and_logs_keep_secrets", "life") else { return };
    let (name, kc, dir) = (&t.name, t.kubeconfig.clone(), &t.dir);
    let (cp, worker) = (&format!("{name}-control-plane"), &format!("{name}-worker"));
    let cfg = dir.path().join("one-worker.yaml");
    std::fs::write(&cfg, "kind: Cluster\napiVersion: berth.dev/v1alpha1\nnodes:\n- role: control-plane\n- role: worker\n").unwrap();
    let out = berth(&kc)
        .args(["-vvv", "create", "cluster", "--name", name, "--config", cfg.to_str().unwrap(), "--image", &test_image()])
        .output()
        .unwrap();
    let (_, log) = text(&out);
    assert!(out.status.success(), "{log}");

    // Secrets: the client key, the bootstrap token's secret half.
    let kubeconfig_text = std::fs::read_to_string(&kc).unwrap();
    let key = kubeconfig_text.lines().find_map(|l| l.trim().strip_prefix("client-key-data:")).unwrap().trim().to_string();
    assert!(key.len() > 40);
    assert!(!log.contains(&key), "the client key appears in berth's -vvv log");
    let tokens = run_ok(Command::new("docker").args(["exec", cp, "kubeadm", "token", "list", "-o", "jsonpath={.token}{\"\\n\"}"]));
    for token in tokens.lines().filter(|t| !t.is_empty()) {
        let secret = token.split('.').nth(1).unwrap();
        assert!(!log.contains(secret), "a bootstrap token's secret appears in berth's -vvv log");
    }
    assert!(log.contains(&format!("kubeadm init on {cp}")), "kubeadm's output is logged at -vvv (redacted)");
    let mode = std::fs::metadata(&kc).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap();
    assert_eq!(mode, 0o600, "kubeconfig mode");
    let port = run_ok(Command::new("docker").args(["port", cp, "6443/tcp"]));
    assert!(port.trim().starts_with("127.0.0.1:"), "API server published on loopback only: {port}");

    let addresses = node_addresses(name);
    assert_eq!(cluster_state(&kc, name), "running");
    run_ok(berth(&kc).args(["stop", "cluster", "--name", name]));
    assert_eq!(cluster_state(&kc, name), "stopped");
    // Something takes the API server's pinned port while the cluster is stopped: start names
    // the port and what holds it, and starts nothing.
    let api_port: u16 = port.trim().rsplit(':').next().unwrap().parse().unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", api_port)).unwrap();
    let out = berth(&kc).args(["start", "cluster", "--name", name]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let expected = format!("port {api_port} on 127.0.0.1 is taken by");
    assert!(stderr.contains(&expected) && stderr.contains(&format!("(pid {})", std::process::id())), "{stderr}");
    assert_eq!(cluster_state(&kc, name), "stopped", "nothing was started");
    drop(squatter);
    let out = berth(&kc).args(["-v", "start", "cluster", "--name", name, "--wait", "3m"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // -v says where the seconds went: each node's own milestones, then the cluster's.
    for node in [cp, worker] {
        let line = stderr.lines().find(|l| l.contains(&format!("start of {node}: "))).unwrap_or_default();
        assert!(line.contains("containerd ") && line.contains("kubelet ready "), "{node}: {stderr}");
    }
    assert!(stderr.contains("kube-apiserver ") && stderr.contains("API server ready (/readyz) at "), "{stderr}");
    assert_eq!(cluster_state(&kc, name), "running");
    eventually("Ready after start, through the same kubeconfig", Duration::from_secs(60), || all_ready(&kc, 2));
    // What is applied right after start runs at once: the leases the stopped scheduler and
    // controller-manager left were released (not waited out for 15 s) and the controllers run.
    let took = time_to_schedule(&kc, "after-start");
    assert!(took < Duration::from_secs(5), "scheduling right after start took {took:?}");
    // Its image is not in this cluster's nodes: gone again, so it does not churn on the worker.
    kubectl_ok(&kc, &["delete", "deployment", "after-start", "--wait=true"]);
    kubectl_ok(&kc, &["wait", "--for=delete", "pod", "-l", "app=after-start", "--timeout=60s"]);
    // Starting a cluster that runs succeeds: running nodes need no fresh report (their kubelets
    // post status only on change, so waiting for one would run into --wait).
    run_ok(berth(&kc).args(["start", "cluster", "--name", name, "--wait", "30s"]));
    assert_eq!(node_addresses(name), addresses, "nodes keep their addresses across stop/start");

    run_ok(Command::new("docker").args(["stop", worker]));
    assert_eq!(cluster_state(&kc, name), "degraded");
    run_ok(Command::new("docker").args(["start", worker]));

    let restarted_at = now_rfc3339();
    run_ok(Command::new("docker").args(["restart", cp, worker]));
    eventually("Ready after docker restart of every node", Duration::from_secs(180), || all_ready_since(&kc, 2, &restarted_at));
    assert_eq!(node_addresses(name), addresses, "nodes keep their addresses across docker restart");

    // A worker whose kubelet never comes back: its Ready condition from before the stop must
    // not pass for news. `start` fails within --wait, naming that node.
    let hold = "[Unit]\nConditionPathExists=/nonexistent/berth-test-holds-the-kubelet\n";
    run_ok(Command::new("docker").args([
        "exec",
        worker,
        "sh",
        "-c",
        &format!("printf '{hold}' > /etc/systemd/system/kubelet.service.d/99-hold.conf"),
    ]));
    run_ok(berth(&kc).args(["stop", "cluster", "--name", name]));
    let out = berth(&kc).args(["start", "cluster", "--name", name, "--wait", "30s"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "start must not pass on a stale Ready condition:\n{stderr}");
    assert!(stderr.contains(&format!("{worker} (its kubelet has not reported since the start)")), "names the node:\n{stderr}");
    assert!(!stderr.contains(&format!("{cp} (its kubelet")), "the control plane did report:\n{stderr}");
}

/// The steps create prints, in order; interrupting at each must leave nothing behind.
const STEPS: &[&str] = &["Creating nodes", "Starting control plane", "Installing pod network", "Writing kubeconfig", "Waiting for Ready"];

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn interrupting_create_at_each_step_leaves_nothing() {
    if !require_e2e("interrupting_create_at_each_step_leaves_nothing") {
        return;
    }
    // A probe container left by a create that was killed outright (pid 999999 runs nothing):
    // a later create sweeps it once it is older than any live probe could be (60 s).
    let stale = "berth-probe-999999-stale";
    let _ = docker(&["rm", "-f", stale]);
    run_ok(Command::new("docker").args(["create", "--name", stale, "--label", "dev.berth.probe=true", &test_image()]));
    let stale_made = std::time::Instant::now();
    for (i, step) in STEPS.iter().enumerate() {
        let name = cluster_name(&format!("int{i}"));
        let (_dir, kc) = temp_kubeconfig();
        std::fs::write(&kc, USERS_KUBECONFIG).unwrap();
        let _guard = ClusterGuard { name: name.clone(), kubeconfig: kc.clone() };
        // Ctrl-C, a kill, and a closed terminal, in turn.
        let signal = ["-INT", "-TERM", "-HUP"][i % 3];
        let mut child = berth(&kc)
            .args(["create", "cluster", "--name", &name, "--image", &test_image()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let marker = format!(" • {step} ...");
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("create ended before step {step:?}:\n{seen}");
            }
            seen.push_str(&line);
            if line.trim_end() == marker {
                break;
            }
        }
        let pid = child.id();
        // The nodes' /var volumes as the signal comes (none yet while the first step runs).
        let volumes: Vec<String> = cluster_containers(&name).iter().flat_map(|c| container_volumes(c)).collect();
        run_ok(Command::new("kill").args([signal, &pid.to_string()]));
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let status = child.wait().unwrap();
        seen.push_str(&rest);
        assert_eq!(status.code(), Some(1), "interrupted at {step:?}:\n{seen}");
        assert!(seen.contains("interrupted"), "at {step:?}:\n{seen}");
        assert!(cluster_containers(&name).is_empty(), "at {step:?} left {:?}", cluster_containers(&name));
        for v in &volumes {
            assert!(!volume_exists(v), "at {step:?} left volume {v}");
        }
        // The privileged-mode probe is not labelled with the cluster; a create request still in
        // flight when the signal came lands late, so look once more after it would have.
        std::thread::sleep(Duration::from_secs(2));
        let probes = probe_containers_of(pid);
        assert!(probes.is_empty(), "at {step:?} left probe containers {probes:?}");
        // The user's kubeconfig is as it was: their entries, their current context.
        let kubeconfig = std::fs::read_to_string(&kc).unwrap_or_default();
        let now: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).unwrap();
        let before: serde_yaml::Value = serde_yaml::from_str(USERS_KUBECONFIG).unwrap();
        assert_eq!(now, before, "at {step:?} the kubeconfig is not as it was:\n{kubeconfig}");
    }
    if docker(&["inspect", stale]).status.success() {
        // No create of the loop looked after the orphan had aged: one more does, once it has.
        std::thread::sleep(Duration::from_secs(65).saturating_sub(stale_made.elapsed()));
        let (_dir, kc) = temp_kubeconfig();
        let sweep = cluster_name("int-sweep");
        let _ = berth(&kc).args(["create", "cluster", "--name", &sweep, "--image", &test_image(), "--wait", "0"]).output();
        let _ = berth(&kc).args(["delete", "cluster", "--name", &sweep]).output();
    }
    assert!(!docker(&["inspect", stale]).status.success(), "the orphaned probe container was swept");
}

/// A kubeconfig the user had before berth ran, with a current context of their own.
const USERS_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: keep\n  cluster: {server: 'https://keep.example:6443'}\nusers:\n- name: keep\n  user: {token: t}\ncontexts:\n- name: keep\n  context: {cluster: keep, user: keep}\ncurrent-context: keep\n";

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn parallel_creates_succeed_and_a_name_clash_harms_no_one() {
    if !require_e2e("parallel_creates_succeed_and_a_name_clash_harms_no_one") {
        return;
    }
    let (_dir, kc) = temp_kubeconfig();
    let names = ["par1", "par2", "par3"].map(cluster_name);
    let _guards: Vec<ClusterGuard> = names.iter().map(|n| ClusterGuard { name: n.to_string(), kubeconfig: kc.clone() }).collect();
    // Three clusters and a fourth create racing the first for its name, all at once, all
    // merging into one kubeconfig file.
    let mut runs: Vec<(String, std::process::Child)> = names
        .iter()
        .chain(std::iter::once(&names[0]))
        .map(|n| {
            let child = berth(&kc)
                .args(["create", "cluster", "--name", n, "--image", &test_image()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (n.to_string(), child)
        })
        .collect();
    let mut outcomes = Vec::new();
    for (name, child) in runs.drain(..) {
        let out = child.wait_with_output().unwrap();
        outcomes.push((name, out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    for (name, ok, stderr) in &outcomes[1..3] {
        assert!(ok, "{name} failed:\n{stderr}");
    }
    let clash: Vec<&(String, bool, String)> = outcomes.iter().filter(|(n, _, _)| *n == names[0]).collect();
    let winners = clash.iter().filter(|(_, ok, _)| *ok).count();
    assert_eq!(winners, 1, "exactly one of the two creates of {} wins: {clash:#?}", names[0]);
    let loser = clash.iter().find(|(_, ok, _)| !ok).unwrap();
    assert!(loser.2.contains("already exists"), "the loser says why:\n{}", loser.2);
    assert_eq!(cluster_containers(&names[0]).len(), 1, "the winner's node survives the loser's cleanup");
    let contexts = String::from_utf8_lossy(&kubectl(&kc, &["config", "get-contexts", "-o", "name"]).stdout).into_owned();
    for n in &names {
        assert!(contexts.lines().any(|c| c == format!("berth-{n}")), "context for {n} in {contexts}");
        // create waited for Ready (its default --wait): the node is Ready now, not eventually.
        let ready = kubectl_ok(
            &kc,
            &[
                "--context",
                &format!("berth-{n}"),
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        assert_eq!(ready, "True", "{n}'s node is Ready");
    }
}

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_cluster_that_never_gets_ready_fails_with_the_kubelets_words() {
    let Some(t) = test_cluster("a_cluster_that_never_gets_ready_fails_with_the_kubelets_words", "notready") else { return };
    let (name, kc, dir) = (&t.name, t.kubeconfig.clone(), &t.dir);
    let cfg = dir.path().join("no-cni.yaml");
    std::fs::write(&cfg, "kind: Cluster\napiVersion: berth.dev/v1alpha1\nnetworking:\n  disableDefaultCNI: true\n").unwrap();
    let out = berth(&kc)
        .args(["create", "cluster", "--name", name, "--config", cfg.to_str().unwrap(), "--image", &test_image(), "--wait", "20s"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not ready within --wait"), "{stderr}");
    assert!(stderr.contains(&format!("kubelet on {name}-control-plane")), "{stderr}");
    assert!(stderr.to_lowercase().contains("cni") || stderr.contains("NetworkPluginNotReady"), "the kubelet's reason: {stderr}");
    // And the pods that cannot run yet, by name: CoreDNS waits for a pod network.
    assert!(stderr.contains("pods not running:") && stderr.contains("kube-system/coredns-"), "{stderr}");
    assert!(cluster_containers(name).is_empty(), "left {:?}", cluster_containers(name));
}

/// Containers named like the privileged probe of berth process `pid`.
fn probe_containers_of(pid: u32) -> Vec<String> {
    let out = run_ok(Command::new("docker").args(["ps", "-a", "--format", "{{.Names}}", "--filter", "label=dev.berth.probe"]));
    let prefix = format!("berth-probe-{pid}-");
    out.lines().filter(|n| n.starts_with(&prefix)).map(str::to_string).collect()
}

/// A `.lock` a killed kubectl or berth left beside the kubeconfig is found before anything is
/// made, and named, rather than after the whole cluster is built.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_stale_kubeconfig_lock_is_named_before_anything_is_created() {
    let Some(t) = test_cluster("a_stale_kubeconfig_lock_is_named_before_anything_is_created", "locked") else { return };
    let lock = t.dir.path().join("kubeconfig.lock");
    std::fs::write(&lock, "").unwrap();
    let out = berth(&t.kubeconfig).args(["create", "cluster", "--name", &t.name, "--image", &test_image()]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(&lock.display().to_string()) && stderr.contains("remove the lock file"), "{stderr}");
    assert!(!stderr.contains("Creating nodes"), "refused before the first step, not rolled back after it: {stderr}");
    assert!(cluster_containers(&t.name).is_empty(), "nothing was created");
    assert!(!t.kubeconfig.exists(), "the kubeconfig was not written");
}

/// Creates that find no network race to make it: each asks under berth's network lease (a
/// Docker container every client of the daemon sees) and looks again once it holds it, so one
/// network is made, every create gets its subnet and no lease is left behind. The network goes
/// with the last container on it, and not before: a stopped container keeps it. (A network of
/// its own name, so the clusters of other tests running now are not disturbed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
async fn racing_creates_make_one_network_and_the_last_user_removes_it() {
    if !require_e2e("racing_creates_make_one_network_and_the_last_user_removes_it") {
        return;
    }
    let name = format!("berth-race-{}", std::process::id());
    use berth::runtime::{Lease, Runtime as _};
    let daemon = berth::runtime::Docker::connect().await.unwrap();
    let image = test_image();
    let racer = || async {
        let lease = Lease::network(&daemon, &image).await.unwrap();
        let subnet = daemon.ensure_network(&name, &lease).await;
        lease.release().await.unwrap();
        subnet
    };
    let subnets = futures_util::future::join_all((0..4).map(|_| racer())).await;
    let network_ids = || run_ok(Command::new("docker").args(["network", "ls", "-q", "--filter", &format!("name=^{name}$")]));
    let ids = network_ids();
    let subnets: Vec<_> = subnets.into_iter().map(|s| s.unwrap().expect("a subnet of berth's")).collect();
    let leases = run_ok(Command::new("docker").args(["ps", "-aq", "--filter", "name=^berth-lease-network$"]));

    let user = format!("{name}-user");
    run_ok(Command::new("docker").args(["create", "--name", &user, "--network", &name, TOOLBOX, "true"]));
    let lease = Lease::network(&daemon, &image).await.unwrap();
    let kept = daemon.remove_network_if_unused(&name, &lease).await;
    let _ = docker(&["rm", "-f", &user]);
    let removed = daemon.remove_network_if_unused(&name, &lease).await;
    lease.release().await.unwrap();
    let left = network_ids();
    let _ = docker(&["network", "rm", &name]);

    assert!(subnets.iter().all(|s| *s == subnets[0]), "every racer got the same subnet: {subnets:?}");
    assert_eq!(ids.lines().count(), 1, "one network named {name}: {ids}");
    assert!(leases.trim().is_empty(), "the network lease was released: {leases}");
    assert!(!kept.unwrap(), "a network with a stopped container on it was removed");
    assert!(removed.unwrap(), "the unused network was not removed");
    assert!(left.trim().is_empty(), "network {name} is still there: {left}");
}

/// Another Unix user on the same host (one in Docker's group, not root) creates and deletes a
/// cluster beside everyone else's: berth's shared state (the network and its lease, made by
/// whoever came first) serves every user, and that user's kubeconfig is theirs, 0600.
#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn a_second_unix_user_creates_a_cluster() {
    let Some(t) = test_cluster("a_second_unix_user_creates_a_cluster", "user2") else { return };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(effective_uid(), 0, "the suite runs as root, so it can act as another user");
    let docker_gid = std::fs::metadata("/var/run/docker.sock").unwrap().gid();
    let home = t.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(t.dir.path(), Some(65534), Some(docker_gid)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(docker_gid)).unwrap();
    let as_user = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", &format!("--regid={docker_gid}"), "--clear-groups", "env", "-u", "KUBECONFIG", "BERTH_PLAIN=1"])
            .arg(format!("HOME={}", home.display()))
            .arg(berth_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_user(&["create", "cluster", "--name", &t.name, "--image", &test_image()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let kc = home.join(".kube/config");
    let meta = std::fs::metadata(&kc).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (65534, 0o600), "the user's own kubeconfig");
    assert!(std::fs::read_to_string(&kc).unwrap().contains(&format!("berth-{}", t.name)));
    let out = as_user(&["delete", "cluster", "--name", &t.name]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(cluster_containers(&t.name).is_empty());
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
