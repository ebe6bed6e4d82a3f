//! Shared helpers for berth's integration and end-to-end tests.
//!
//! Tests that need Docker and the test node image are compiled `#[ignore]`d unless
//! `BERTH_E2E=1` (build.rs turns it into the `berth_e2e` cfg), so plain `cargo test` reports
//! them as ignored, never as passed. With `BERTH_E2E=1` (as `scripts/test` sets it) they run
//! and *fail* if Docker or the test image is missing, so CI can never pass by skipping them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The test workload image scripts/build-test-node-image makes (busybox httpd, curl, ping).
pub const TOOLBOX: &str = "berth-test/toolbox:1";

/// This run's name for a test cluster, `e2e-BASE-PID`: unique to the test process, so
/// clusters a crashed run left behind never collide with the next run's.
pub fn cluster_name(base: &str) -> String {
    format!("e2e-{base}-{}", std::process::id())
}

/// The test node image: `BERTH_TEST_IMAGE`, else the one scripts/build-test-node-image made.
pub fn test_image() -> String {
    std::env::var("BERTH_TEST_IMAGE").unwrap_or_else(|_| {
        test_inputs().remove("NODE_IMAGE").expect("test-inputs.env names NODE_IMAGE; run scripts/build-test-node-image")
    })
}

/// The Kubernetes version of the test image (`vX.Y.Z`), from its label.
pub fn test_image_version() -> String {
    let out = docker(&["image", "inspect", "-f", "{{index .Config.Labels \"dev.berth.kubernetes-version\"}}", &test_image()]);
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(version.starts_with('v'), "{} carries no dev.berth.kubernetes-version label", test_image());
    version
}

/// Whether this run must exercise real containers. Any value but `1` is a mistake (`true`,
/// `yes`), and a mistake must not turn the suite into a silent pass.
pub fn e2e_enabled() -> bool {
    match std::env::var("BERTH_E2E") {
        Ok(v) if v == "1" => true,
        Ok(v) if !v.is_empty() => panic!("BERTH_E2E={v:?}: set it to 1 to run the real tests, or unset it"),
        _ => false,
    }
}

/// Checks what an end-to-end test needs, failing the test when something is missing: Docker and
/// the node image. (Without BERTH_E2E these tests are ignored; run by name with `--ignored`
/// anyway, they fail here rather than pass.) Returns true, for the tests' `if !...` openings.
pub fn require_e2e(test: &str) -> bool {
    assert!(e2e_enabled(), "{test} is an end-to-end test: run it with BERTH_E2E=1 (with Docker and the test image)");
    let info = Command::new("docker").arg("info").output().expect("running docker info");
    assert!(info.status.success(), "BERTH_E2E=1 but Docker does not answer: {}", String::from_utf8_lossy(&info.stderr));
    let image = Command::new("docker").args(["image", "inspect", &test_image()]).output().unwrap();
    assert!(image.status.success(), "BERTH_E2E=1 but {} is missing; run scripts/build-test-node-image", test_image());
    true
}

pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// A berth command with plain output and the given kubeconfig.
pub fn berth(kubeconfig: &Path) -> Command {
    let mut c = Command::new(berth_bin());
    c.env("KUBECONFIG", kubeconfig).env("BERTH_PLAIN", "1").env_remove("BERTH_NODE_IMAGE");
    c
}

pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs a command, failing the test with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("running docker")
}

/// Names of containers (any state) carrying `label`.
pub fn containers_with_label(label: &str) -> Vec<String> {
    let out = docker(&["ps", "-a", "--filter", &format!("label={label}"), "--format", "{{.Names}}"]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

pub fn cluster_containers(cluster: &str) -> Vec<String> {
    containers_with_label(&format!("dev.berth.cluster={cluster}"))
}

/// The anonymous volumes of a container (its /var).
pub fn container_volumes(name: &str) -> Vec<String> {
    let out = docker(&["inspect", "-f", "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}", name]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

pub fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// The host's kubectl (or `BERTH_TEST_KUBECTL`) against a kubeconfig file.
pub fn kubectl_cmd(kubeconfig: &Path) -> Command {
    let bin = std::env::var("BERTH_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let mut c = Command::new(bin);
    c.arg("--kubeconfig").arg(kubeconfig);
    c
}

/// kubectl, failing the test with its output unless it succeeds; its stdout.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    run_ok(kubectl_cmd(kubeconfig).args(args))
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    kubectl_cmd(kubeconfig).args(args).output().expect("running kubectl")
}

/// Retries `check` until it returns Some or `timeout` passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > timeout => panic!("{what}: not within {timeout:?}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Waits until `curl http://HOST/` run inside `pod` answers with a body containing `expect`.
pub fn curl_from_pod(kubeconfig: &Path, what: &str, pod: &str, host: &str, expect: &str, timeout: Duration) {
    let url = format!("http://{host}/");
    eventually(what, timeout, || {
        let o = kubectl(kubeconfig, &["exec", pod, "--", "curl", "-s", "--max-time", "5", &url]);
        let body = String::from_utf8_lossy(&o.stdout).into_owned();
        if body.contains(expect) {
            Ok(())
        } else {
            Err(format!("{body}{}", String::from_utf8_lossy(&o.stderr)))
        }
    });
}

/// All `expected` nodes Ready by a status their kubelets posted at or after `since` (RFC 3339,
/// UTC, whole seconds: the API's own format, so the strings compare as times).
pub fn all_ready_since(kc: &Path, expected: usize, since: &str) -> Result<(), String> {
    let out = kubectl(kc, &["get", "nodes", "--request-timeout=5s", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}{\"\\n\"}{end}"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fresh = text.lines().filter(|l| l.split_once(' ').is_some_and(|(status, at)| status == "True" && at >= since)).count();
    if out.status.success() && fresh == expected {
        Ok(())
    } else {
        Err(format!("{fresh}/{expected} freshly Ready: {text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Now, as the API writes times.
pub fn now_rfc3339() -> String {
    run_ok(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).trim().to_string()
}

/// Prints a node container's log and journal: what a failing e2e test leaves for the reader.
pub fn dump_node(name: &str) {
    let logs = docker(&["logs", "--tail", "40", name]);
    eprintln!("==== docker logs {name}\n{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    let journal = docker(&["exec", name, "journalctl", "-n", "60", "--no-pager", "-u", "kubelet", "-u", "containerd"]);
    eprintln!("==== journal {name}\n{}", String::from_utf8_lossy(&journal.stdout));
    // The last words of every pod container that exited (a crash loop says why here).
    let exited = docker(&[
        "exec",
        name,
        "sh",
        "-c",
        "for c in $(crictl ps -a --state exited -q 2>/dev/null | head -n 8); do crictl inspect -o go-template --template '{{.status.metadata.name}}' $c; echo; crictl logs --tail 15 $c 2>&1; done",
    ]);
    eprintln!("==== exited pod containers on {name}\n{}", String::from_utf8_lossy(&exited.stdout));
}

/// A kubeconfig file in a fresh temp dir; the dir lives as long as the returned guard.
pub fn temp_kubeconfig() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    (dir, path)
}

/// What an e2e test about one cluster starts with: the run's name for the cluster, a
/// kubeconfig path in a fresh temp dir, and a guard that deletes the cluster when the test
/// ends, however it ends.
pub struct TestCluster {
    // Declared (so dropped) first: the guard deletes the cluster through the kubeconfig in `dir`.
    _guard: ClusterGuard,
    pub name: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The opening of an e2e test about one cluster, in one call: `None` (the test is skipped,
/// and says so) unless BERTH_E2E=1.
pub fn test_cluster(test: &str, base: &str) -> Option<TestCluster> {
    if !require_e2e(test) {
        return None;
    }
    let name = cluster_name(base);
    let (dir, kubeconfig) = temp_kubeconfig();
    let _guard = ClusterGuard { name: name.clone(), kubeconfig: kubeconfig.clone() };
    Some(TestCluster { _guard, name, kubeconfig, dir })
}

/// Deletes a cluster when dropped, so a failing test leaves nothing running.
pub struct ClusterGuard {
    pub name: String,
    pub kubeconfig: PathBuf,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in cluster_containers(&self.name) {
                dump_node(&c);
            }
        }
        let _ = berth(&self.kubeconfig).args(["delete", "cluster", "--name", &self.name]).output();
    }
}

/// The inputs scripts/build-test-node-image recorded (BASE_IMAGE, KUBE_BIN, IMAGES_DIR).
pub fn test_inputs() -> std::collections::HashMap<String, String> {
    let cache = std::env::var("BERTH_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/berth-test"));
    let path = cache.join("test-inputs.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-test-node-image", path.display()));
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `GET /` from the host at `ip:port`: the response if it was a 200, else what came back.
pub fn http_get(ip: &str, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let address = format!("{ip}:{port}").parse().map_err(|e| format!("{ip}:{port}: {e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let ok = response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200");
    ok.then(|| response.clone()).ok_or(response)
}

/// Creates Deployment `name` (one pod, no pinning, no tolerations) and returns how long its pod
/// took to be scheduled.
pub fn time_to_schedule(kc: &Path, name: &str) -> Duration {
    kubectl_ok(kc, &["create", "deployment", name, "--image", TOOLBOX, "--", "sleep", "infinity"]);
    let created = Instant::now();
    let selector = format!("app={name}");
    eventually(&format!("Deployment {name}'s pod is scheduled"), Duration::from_secs(60), || {
        let node = kubectl_ok(kc, &["get", "pods", "-l", &selector, "-o", "jsonpath={.items[*].spec.nodeName}"]);
        if node.is_empty() {
            Err("not scheduled".to_string())
        } else {
            Ok(())
        }
    });
    created.elapsed()
}

/// Right after a start or restore of several control planes returns: no singleton (scheduler,
/// controller-manager) is left to wait out a leader lease of a process that is gone. Each
/// leader lease is absent (released) or renewed since `since` by a live process; a lease older
/// than that would hold every new leader back for up to its duration (15 s). Asked at once,
/// before the candidates could have waited it out. (One control plane elects no leader.)
pub fn assert_no_stale_leader_lease(kc: &Path, since: &str, after: &str) {
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let out = kubectl(kc, &["-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.renewTime}"]);
        let (renewed, stderr) = text(&out);
        if !out.status.success() {
            assert!(stderr.contains("NotFound"), "{lease}: {stderr}");
            continue;
        }
        // Both RFC 3339 in UTC: to the second, the text orders as the time does.
        let renewed_s = renewed.trim().get(..19).unwrap_or_default();
        assert!(renewed_s >= since.get(..19).unwrap_or_default(), "{lease}'s leader lease was last renewed at {renewed} (before {since}) when {after} returned: its holder is gone and the new candidates wait it out");
    }
}

/// Deletes the cluster restored from a snapshot, then the snapshot (which Docker will not remove
/// while a node runs on its image), when dropped.
pub struct SnapshotGuard {
    pub snapshot: String,
    pub cluster: String,
    pub kubeconfig: PathBuf,
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let _ = berth(&self.kubeconfig).args(["delete", "cluster", "--name", &self.cluster]).output();
        let _ = berth(&self.kubeconfig).args(["snapshot", "delete", &self.snapshot]).output();
    }
}

/// Names of the volumes carrying `label` (or `label=value`).
pub fn volumes_labelled(label: &str) -> Vec<String> {
    let out = docker(&["volume", "ls", "-q", "--filter", &format!("label={label}")]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}
