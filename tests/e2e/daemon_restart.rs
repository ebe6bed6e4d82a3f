//! A cluster survives a restart of the Docker daemon itself: the nodes come back (restart
//! policy), with the same addresses and API port, Ready through the same kubeconfig.
//! Ignored by default: it restarts dockerd, so `scripts/test` runs it alone, after the rest,
//! and only where it started that dockerd itself (BERTH_TEST_RESTART_DOCKERD names the script).

use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
#[ignore = "restarts dockerd; run alone by scripts/test"]
fn a_cluster_survives_a_docker_daemon_restart() {
    let Some(t) = test_cluster("a_cluster_survives_a_docker_daemon_restart", "daemon") else { return };
    let (name, kc) = (&t.name, t.kubeconfig.clone());
    let restart = std::env::var("BERTH_TEST_RESTART_DOCKERD").expect("BERTH_TEST_RESTART_DOCKERD: a command that restarts dockerd");
    run_ok(berth(&kc).args(["create", "cluster", "--name", name, "--image", &test_image()]));
    let node = &format!("{name}-control-plane");
    let ip_before =
        run_ok(Command::new("docker").args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node]));
    let restarted_at = now_rfc3339();
    run_ok(&mut Command::new(&restart));
    // Fresh readiness: a Ready condition from before the restart says nothing about now.
    eventually("Ready after dockerd restarted, through the same kubeconfig", Duration::from_secs(240), || {
        all_ready_since(&kc, 1, &restarted_at)
    });
    let ip_after = run_ok(Command::new("docker").args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node]));
    assert_eq!(ip_before, ip_after, "the node keeps its address");
}
