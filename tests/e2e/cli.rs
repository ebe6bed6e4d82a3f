//! The command line without a cluster: usage errors, bad configs, an unreachable Docker.
//! These need no Docker and run in every `cargo test`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{berth_bin, text};

fn berth() -> Command {
    let mut c = Command::new(berth_bin());
    c.env("BERTH_PLAIN", "1");
    c
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = berth().args(["create", "cluster", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = berth().args(["create", "cluster", "--wait", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("duration"), "{}", text(&out).1);
    let out = berth().args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("create"));
}

#[test]
fn version_and_completion() {
    let out = berth().arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out).0.starts_with(&format!("berth {}", env!("CARGO_PKG_VERSION"))));
    let out = berth().args(["completion", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(text(&out).0.contains("_berth"), "a bash completion function");
    // A reader that stops early (`| head -1`) is no error: berth neither panics nor fails.
    // The pipe is closed before berth has started writing (the script fits a pipe's buffer,
    // so a reader that closes after reading some would not exercise it).
    let mut child = berth().args(["completion", "bash"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "completion into a closed pipe: {status}");
}

#[test]
fn build_flags_are_checked_before_docker_is_asked() {
    let out = berth()
        .args(["build", "node-image", "--base-image", "b", "--tag", "t:1"])
        .env("DOCKER_HOST", "unix:///tmp/berth-no-docker.sock")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--kube-bin") && !stderr.contains("DOCKER_HOST"), "the flag, not Docker: {stderr}");
}

/// Each bad config, and what its one-line error must say. The config is read before Docker is
/// contacted, so these run anywhere.
const BAD_CONFIGS: &[(&str, &str)] = &[
    ("invalid-unknown-field.yaml", "unknown field `rol`"),
    ("invalid-no-control-plane.yaml", "no node has role control-plane"),
    ("invalid-overlapping-subnets.yaml", "overlaps serviceSubnet"),
    ("invalid-duplicate-host-port.yaml", "host port 18081 is also used"),
    ("invalid-bad-name.yaml", "not a valid cluster name"),
    ("invalid-bad-role.yaml", "unknown variant `master`"),
    ("invalid-api-version.yaml", "not supported"),
    ("invalid-wrong-type.yaml", "apiServerPort"),
    ("invalid-not-yaml.yaml", "invalid-not-yaml.yaml"),
    ("invalid-proxy-mode.yaml", "kubeProxyMode"),
];

#[test]
fn create_with_a_bad_config_gives_a_one_line_error() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/config");
    for (file, fragment) in BAD_CONFIGS {
        let out = berth().args(["create", "cluster", "--config", &format!("{dir}/{file}")]).output().unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{file}: expected one line, got:\n{stderr}");
        assert!(stderr.starts_with("ERROR: "), "{file}: {stderr}");
        assert!(stderr.contains(fragment), "{file}: {stderr:?} lacks {fragment:?}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let out = berth().args(["create", "cluster", "--config", "/nonexistent/berth.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("/nonexistent/berth.yaml"));
}

#[test]
fn bad_names_are_refused_before_anything_happens() {
    for name in ["Bad_Name", "../etc", "a/b", "-x"] {
        let out =
            berth().args(["create", "cluster", &format!("--name={name}")]).env("DOCKER_HOST", "unix:///nonexistent.sock").output().unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("not a valid cluster name"), "{name}: {stderr}");
    }
}

#[test]
fn unreachable_docker_is_one_line_naming_the_socket_within_two_seconds() {
    for args in [&["get", "clusters"][..], &["create", "cluster"][..], &["delete", "cluster"][..]] {
        let start = Instant::now();
        let out = berth().args(args).env("DOCKER_HOST", "unix:///tmp/berth-no-docker.sock").output().unwrap();
        let took = start.elapsed();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("unix:///tmp/berth-no-docker.sock"), "{args:?}: {stderr}");
        assert!(stderr.contains("DOCKER_HOST"), "{args:?}: {stderr}");
    }
}

/// `create --dry-run` with no Docker at all: the version comes from the image's tag.
fn dry_run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = berth();
    cmd.args(["create", "cluster", "--dry-run"]).args(args).env("DOCKER_HOST", "unix:///nonexistent.sock").env_remove("BERTH_CLUSTER_NAME");
    let out = match stdin {
        None => cmd.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
    };
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The YAML documents of a dry run, by node: (the node's header line, its documents).
fn documents(stdout: &str) -> Vec<(String, Vec<serde_yaml::Value>)> {
    let mut nodes: Vec<(String, String)> = Vec::new();
    let mut in_node = false;
    for line in stdout.lines() {
        if line.starts_with("# node ") {
            nodes.push((line.to_string(), String::new()));
            in_node = true;
        } else if line.starts_with("# containerd config patches") {
            in_node = false;
        } else if in_node {
            nodes.last_mut().unwrap().1.push_str(&format!("{line}\n"));
        }
    }
    nodes
        .into_iter()
        .map(|(header, body)| {
            let docs = body.split("---\n").filter(|d| !d.trim().is_empty()).map(|d| serde_yaml::from_str(d).unwrap()).collect();
            (header, docs)
        })
        .collect()
}

/// kind's example config on the images users name: the documents a newer kubeadm reads, the
/// patches applied in its shape, containerd's patch shown, and no Docker needed.
#[test]
fn dry_run_renders_every_node_for_versions_that_cannot_run_here() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/kind-compatible.yaml");
    for (image, api, list_shaped) in
        [("kindest/node:v1.32.2", "v1beta3", false), ("kindest/node:v1.36.0", "v1beta4", true), ("kindest/node:v1.37.0", "v1beta4", true)]
    {
        let (code, stdout, stderr) = dry_run(&["--config", config, "--image", image], None);
        assert_eq!(code, 0, "{image}: {stderr}");
        assert!(stdout.contains(&format!("kubeadm config API kubeadm.k8s.io/{api}")), "{stdout}");
        assert!(stdout.contains("from the tag of kindest/node"), "{stdout}");
        assert!(stdout.contains("#   [plugins.\"io.containerd.grpc.v1.cri\"]"), "containerd's patch is shown: {stdout}");
        let nodes = documents(&stdout);
        assert_eq!(nodes.len(), 2, "{stdout}");
        assert!(nodes[0].0.contains("from-kind-control-plane (control-plane, kubeadm init"), "{}", nodes[0].0);
        assert!(nodes[1].0.contains("from-kind-worker (worker, kubeadm join"), "{}", nodes[1].0);
        let cluster = nodes[0].1.iter().find(|d| d["kind"] == "ClusterConfiguration").unwrap();
        assert_eq!(cluster["apiVersion"].as_str(), Some(format!("kubeadm.k8s.io/{api}").as_str()));
        let args = &cluster["apiServer"]["extraArgs"];
        let range = if list_shaped {
            args.as_sequence().unwrap().iter().find(|a| a["name"] == "service-node-port-range").map(|a| a["value"].clone())
        } else {
            args.get("service-node-port-range").cloned()
        };
        assert_eq!(range.and_then(|v| v.as_str().map(str::to_string)).as_deref(), Some("30000-30100"), "{image}: {cluster:?}");
        let init = &nodes[0].1[0]["nodeRegistration"]["kubeletExtraArgs"];
        let flat = serde_yaml::to_string(init).unwrap();
        assert!(flat.contains("ingress-ready=true") && flat.contains("node-ip"), "the patch's label and berth's node-ip: {flat}");
        let join = &nodes[1].1[0];
        assert_eq!(join["kind"], "JoinConfiguration");
        assert!(serde_yaml::to_string(join).unwrap().contains("tier=apps"), "{join:?}");
        assert!(!stdout.contains(".0123") && stdout.contains("token: <token>"), "the token is a placeholder");
    }
}

#[test]
fn dry_run_reads_the_config_from_stdin_and_the_name_from_the_environment() {
    let config = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- {}\n- role: worker\n";
    let mut cmd = berth();
    cmd.args(["create", "cluster", "--dry-run", "--config", "-", "--image", "kindest/node:v1.31.0"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env("BERTH_CLUSTER_NAME", "from-env");
    use std::io::Write;
    let mut child =
        cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(config.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("# node from-env-control-plane (control-plane, kubeadm init"), "a node without a role: {stdout}");
    assert!(stdout.contains("# node from-env-worker (worker"), "{stdout}");
}

/// A worker's own KubeletConfiguration patch reaches nothing (`kubeadm join` never reads one):
/// kind drops it without a word, berth names it; the node's JoinConfiguration patch is applied.
#[test]
fn a_nodes_patch_that_reaches_nothing_is_named() {
    let config = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n  \
                  kubeadmConfigPatchesJSON6902:\n  - {group: kubelet.config.k8s.io, version: v1beta1, kind: KubeletConfiguration, patch: '[{op: add, path: /maxPods, value: 50}]'}\n  \
                  kubeadmConfigPatches:\n  - |\n    kind: JoinConfiguration\n    nodeRegistration:\n      kubeletExtraArgs:\n        v: \"4\"\n";
    let (code, stdout, stderr) = dry_run(&["--config", "-", "--image", "kindest/node:v1.37.0"], Some(config));
    assert_eq!(code, 0, "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("WARNING:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("nodes[1].kubeadmConfigPatchesJSON6902[0] patches KubeletConfiguration")
            && warnings[0].contains("kubeadm join` does not read it"),
        "{stderr}"
    );
    assert!(!stdout.contains("maxPods"), "{stdout}");
    assert!(
        stdout.contains("name: v") && stdout.contains("value: '4'") || stdout.contains("value: \"4\""),
        "the join patch applies: {stdout}"
    );
}

#[test]
fn dry_run_refuses_what_cannot_work_naming_the_field() {
    let base = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n";
    let cases: &[(&str, &str, &str)] = &[
        ("networking:\n  kubeProxyMode: nftables\n", "kindest/node:v1.20.7", "networking.kubeProxyMode: nftables needs Kubernetes 1.31"),
        (
            "kubeadmConfigPatchesJSON6902:\n- {group: kubeadm.k8s.io, version: v1beta3, kind: ClusterConfiguration, patch: '[{op: remove, path: /nothing}]'}\n",
            "kindest/node:v1.32.2",
            "kubeadmConfigPatchesJSON6902[0] does not apply to ClusterConfiguration",
        ),
        ("kubeadmConfigPatches:\n- |\n  kind: InitConfig\n", "kindest/node:v1.32.2", "kubeadmConfigPatches[0]: kind \"InitConfig\" is not a kubeadm document"),
        (
            "nodes:\n- role: worker\n  kubeadmConfigPatches: ['not: [a mapping']\n- role: control-plane\n",
            "kindest/node:v1.32.2",
            "nodes[0].kubeadmConfigPatches[0]: is not YAML",
        ),
        ("containerdConfigPatches: ['[unclosed']\n", "kindest/node:v1.32.2", "containerdConfigPatches[0]: is not TOML"),
        ("networking:\n  ipFamily: ipv6\n", "kindest/node:v1.32.2", "networking.ipFamily: ipv6 is not supported"),
        ("", "example.com/node:latest", "--image: cannot tell the Kubernetes version"),
    ];
    for (extra, image, expect) in cases {
        let (code, stdout, stderr) = dry_run(&["--config", "-", "--image", image], Some(&format!("{base}{extra}")));
        assert_eq!(code, 1, "{extra}: {stdout}{stderr}");
        assert!(stderr.contains(expect), "{extra}: {stderr:?} lacks {expect:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn snapshot_input_is_checked_before_docker_is_asked() {
    // An unreachable daemon: the answer must come from the check, not from a connection.
    let out = berth().env("DOCKER_HOST", "unix:///nonexistent/docker.sock").args(["snapshot", "save", "Not_Valid"]).output().unwrap();
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("snapshot NAME") && stderr.contains("lower-case"), "{stderr}");
    // --from-snapshot restores a saved cluster: the flags that shape a new one conflict with it.
    let out = berth().args(["create", "cluster", "--from-snapshot", "warm", "--config", "x.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("cannot be used with"), "{}", text(&out).1);
}
