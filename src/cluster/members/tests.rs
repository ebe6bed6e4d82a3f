//! `create node` and `delete node` against the in-memory runtime and API server.

use std::sync::Arc;

use super::*;
use crate::kube::fake::{FakeApi, Seen};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{LABEL_ROLE, LOAD_BALANCER_ROLE};

/// A running cluster "demo": a control plane, and a load balancer with `ha` (then two control
/// planes).
fn cluster(ha: bool) -> Arc<FakeRuntime> {
    let fake = Arc::new(FakeRuntime::healthy(&["berth-test/node:v1.20.2"]));
    let mut members = vec!["demo-control-plane"];
    if ha {
        members.extend(["demo-control-plane2", "demo-external-load-balancer"]);
    }
    let members = members.join(",");
    let node = |name: &str, role: &str| fake.add_container(name, &[(LABEL_CLUSTER, "demo"), (LABEL_ROLE, role), (LABEL_MEMBERS, &members)]);
    node("demo-control-plane", "control-plane");
    if ha {
        node("demo-control-plane2", "control-plane");
        node("demo-external-load-balancer", LOAD_BALANCER_ROLE);
    }
    fake
}

/// An API in which every container with a kubeadm config (and the first control plane) is a
/// registered, Ready node.
fn api_for(fake: &Arc<FakeRuntime>) -> FakeApi {
    let fake = Arc::clone(fake);
    FakeApi::new(move || {
        let mut nodes: Vec<String> =
            fake.containers().into_iter().filter(|(_, c)| c.files.contains_key(KUBEADM_CONFIG_PATH)).map(|(n, _)| n).collect();
        nodes.push("demo-control-plane".into());
        Seen { nodes, ..Default::default() }
    })
}

fn add_options(role: Role) -> AddOptions {
    AddOptions { cluster: "demo".into(), node: None, role, image: None, labels: BTreeMap::new(), wait: Duration::from_secs(60) }
}

#[tokio::test(start_paused = true)]
async fn a_worker_joins_with_a_token_of_its_own_which_is_deleted_after() {
    let fake = cluster(false);
    let api = api_for(&fake);
    let mut opts = add_options(Role::Worker);
    opts.labels.insert("tier".into(), "apps".into());
    let name = add_until(fake.as_ref(), &api, &opts, &Status::quiet(), std::future::pending()).await.unwrap();
    assert_eq!(name, "demo-worker", "the cluster's naming pattern");
    let calls = fake.calls();
    let created = calls.iter().position(|c| c.starts_with("exec demo-control-plane: kubeadm token create")).expect("a token made");
    let joined =
        calls.iter().position(|c| c == "exec demo-worker: kubeadm join --skip-phases=preflight --config=/kind/kubeadm.conf").unwrap();
    let deleted = calls.iter().position(|c| c.starts_with("exec demo-control-plane: kubeadm token delete")).expect("the token deleted");
    assert!(created < joined && joined < deleted, "{calls:#?}");
    let token = calls[created].split_whitespace().nth(5).unwrap().to_string();
    let config = String::from_utf8(fake.containers()["demo-worker"].files[KUBEADM_CONFIG_PATH].clone()).unwrap();
    assert!(config.contains(&token) && config.contains("kind: JoinConfiguration") && config.contains("tier=apps"), "{config}");
    assert!(config.contains("sha256:608a3bf814689cefa87ca1739e1e0b2114f8a7663b23c044a659a05113f32e30"), "the CA pinned: {config}");
    let labels = &fake.containers()["demo-worker"].labels;
    assert_eq!(labels[LABEL_ROLE], "worker");
    assert_eq!(labels[LABEL_MEMBERS], "demo-control-plane,demo-worker");
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_the_join_leaves_the_cluster_as_it_was() {
    let fake = cluster(true);
    let before: Vec<String> = fake.containers().into_keys().collect();
    fake.kubeadm_takes(Duration::from_secs(30));
    let api = api_for(&fake);
    let interrupt = {
        let fake = Arc::clone(&fake);
        async move {
            while !fake.calls().iter().any(|c| c.starts_with("exec demo-control-plane3: kubeadm join")) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            "SIGINT"
        }
    };
    let err = add_until(fake.as_ref(), &api, &add_options(Role::ControlPlane), &Status::quiet(), interrupt).await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::Interrupted { operation: crate::cluster::Operation::AddNode, signal: "SIGINT", outcome: detail } if detail.contains("as it was")),
        "{err}"
    );
    let after: Vec<String> = fake.containers().into_keys().collect();
    assert_eq!(after, before, "the new node is gone, the others stay");
    let calls = fake.calls();
    assert!(calls.iter().any(|c| c.starts_with("exec demo-control-plane: kubeadm token delete")), "{calls:#?}");
    assert!(calls.iter().any(|c| c.starts_with("exec demo-control-plane: kubeadm init phase upload-certs")), "{calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("signal demo-external-load-balancer")), "the balancer was never changed: {calls:#?}");
    assert!(fake.volumes().is_empty(), "{:?}", fake.volumes());
}

#[tokio::test(start_paused = true)]
async fn a_control_plane_joins_behind_the_balancer_which_is_reloaded_with_it() {
    let fake = cluster(true);
    let api = api_for(&fake);
    let name = add_until(fake.as_ref(), &api, &add_options(Role::ControlPlane), &Status::quiet(), std::future::pending()).await.unwrap();
    assert_eq!(name, "demo-control-plane3");
    let config = String::from_utf8(fake.containers()["demo-control-plane3"].files[KUBEADM_CONFIG_PATH].clone()).unwrap();
    assert!(config.contains("demo-external-load-balancer:6443") && config.contains("certificateKey"), "{config}");
    let lb = String::from_utf8(fake.containers()["demo-external-load-balancer"].files[LB_CONFIG_PATH].clone()).unwrap();
    for cp in ["demo-control-plane", "demo-control-plane2", "demo-control-plane3"] {
        assert!(lb.contains(&format!("server {cp} {cp}:6443")), "{lb}");
    }
    assert!(fake.calls().contains(&"signal demo-external-load-balancer: SIGUSR2".to_string()), "{:#?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn a_second_control_plane_without_a_balancer_is_refused_before_anything_is_made() {
    let fake = cluster(false);
    let api = api_for(&fake);
    let err = add_until(fake.as_ref(), &api, &add_options(Role::ControlPlane), &Status::quiet(), std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&err, ClusterError::InvalidInput { field, problem } if field == "--role" && problem.contains("no load balancer")),
        "{err}"
    );
    assert!(!fake.calls().iter().any(|c| c.starts_with("create")), "{:#?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn the_only_control_plane_is_never_removed() {
    let fake = cluster(false);
    let api = api_for(&fake);
    let opts = RemoveOptions { cluster: "demo".into(), node: "demo-control-plane".into(), force: false, timeout: Duration::from_secs(60) };
    let err = remove_with(fake.as_ref(), &api, &opts, &Status::quiet()).await.unwrap_err();
    assert!(err.to_string().contains("only control plane"), "{err}");
    assert!(fake.containers().contains_key("demo-control-plane"));
}

#[tokio::test(start_paused = true)]
async fn a_removed_control_plane_leaves_etcd_and_the_balancer_and_is_not_missing() {
    let fake = cluster(true);
    let api = FakeApi::new(|| Seen { nodes: vec!["demo-control-plane".into(), "demo-control-plane2".into()], ..Default::default() });
    let opts = RemoveOptions { cluster: "demo".into(), node: "demo-control-plane2".into(), force: false, timeout: Duration::from_secs(60) };
    remove_with(fake.as_ref(), &api, &opts, &Status::quiet()).await.unwrap();
    assert!(!fake.containers().contains_key("demo-control-plane2"));
    let calls = fake.calls();
    let etcd =
        calls.iter().position(|c| c.starts_with("exec demo-control-plane2: kubeadm reset phase remove-etcd-member")).expect("left etcd");
    let removed = calls.iter().position(|c| c == "remove demo-control-plane2").unwrap();
    assert!(etcd < removed, "out of etcd before its container goes: {calls:#?}");
    let lb = String::from_utf8(fake.containers()["demo-external-load-balancer"].files[LB_CONFIG_PATH].clone()).unwrap();
    assert!(lb.contains("server demo-control-plane ") && !lb.contains("demo-control-plane2"), "{lb}");
    assert!(fake.volumes().contains_key(&removal_marker("demo", "demo-control-plane2")));
    let requests = api.requests();
    assert!(requests.iter().any(|r| r.starts_with("PATCH /api/v1/nodes/demo-control-plane2")), "cordoned: {requests:#?}");
    assert!(requests.iter().any(|r| r.starts_with("DELETE /api/v1/nodes/demo-control-plane2")), "the Node object: {requests:#?}");
    // The others' member lists still name it, and yet the cluster is not broken.
    let listed = crate::cluster::list(fake.as_ref()).await.unwrap();
    assert_eq!((listed[0].state, listed[0].missing.len()), (crate::cluster::ClusterState::Running, 0), "{:?}", listed[0]);
    // Added again under the same name, it is no longer recorded as removed.
    let api = api_for(&fake);
    add_until(fake.as_ref(), &api, &add_options(Role::ControlPlane), &Status::quiet(), std::future::pending()).await.unwrap();
    assert!(fake.containers().contains_key("demo-control-plane2"));
    assert!(!fake.volumes().contains_key(&removal_marker("demo", "demo-control-plane2")));
}

#[tokio::test(start_paused = true)]
async fn a_control_plane_whose_peers_are_down_is_not_removed() {
    let fake = cluster(true);
    // Only the leaving one reports Ready: the member left would not be a healthy majority.
    let api = FakeApi::new(|| Seen { nodes: vec!["demo-control-plane2".into()], ..Default::default() });
    let opts = RemoveOptions { cluster: "demo".into(), node: "demo-control-plane2".into(), force: false, timeout: Duration::from_secs(60) };
    let err = remove_with(fake.as_ref(), &api, &opts, &Status::quiet()).await.unwrap_err();
    assert!(err.to_string().contains("lose quorum"), "{err}");
    assert!(fake.containers().contains_key("demo-control-plane2"));
    assert!(!fake.calls().iter().any(|c| c.contains("remove-etcd-member")), "{:#?}", fake.calls());
}

#[test]
fn kubeadms_version_skew_rules() {
    let v = |s: &str| KubeVersion::parse(s).unwrap();
    assert!(joinable(v("v1.37.2"), v("v1.37.0"), Role::ControlPlane));
    assert!(!joinable(v("v1.36.3"), v("v1.37.2"), Role::ControlPlane), "a control plane runs the cluster's minor");
    assert!(joinable(v("v1.34.4"), v("v1.37.2"), Role::Worker), "a kubelet three minors older");
    assert!(!joinable(v("v1.33.6"), v("v1.37.2"), Role::Worker), "four is too many");
    assert!(!joinable(v("v1.38.0"), v("v1.37.2"), Role::Worker), "never newer");
}
