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
