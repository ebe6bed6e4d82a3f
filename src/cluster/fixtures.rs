//! Fake-backed fixtures for the cluster operations' unit tests: a running cluster as berth's
//! create leaves it, what snapshot objects exist, and an interrupt that lands after a given
//! number of runtime calls (so a test can stop an operation at each of its steps in turn).

use std::collections::BTreeSet;

use crate::runtime::fake::FakeRuntime;
use crate::runtime::{LABEL_CLUSTER, LABEL_MEMBERS, LABEL_ROLE};

pub const NODE_IMAGE: &str = "berth-test/node:v1.37.2";

/// Cluster "dev": a control plane and a worker, running, made from [`NODE_IMAGE`].
pub fn two_node_cluster() -> FakeRuntime {
    let fake = FakeRuntime::healthy(&[NODE_IMAGE]);
    for (node, role, ip) in [("dev-control-plane", "control-plane", "172.30.0.2"), ("dev-worker", "worker", "172.30.0.3")] {
        let labels = [(LABEL_CLUSTER, "dev"), (LABEL_ROLE, role), (LABEL_MEMBERS, "dev-control-plane,dev-worker")];
        fake.add_node(node, &labels, NODE_IMAGE, ip);
    }
    fake.add_file("dev-control-plane", "/kind/version", b"v1.37.2\n");
    fake
}

/// The API server of cluster "dev" as a start or restore finds it: both nodes registered and
/// Ready, the scheduler's leader lease left by the stopped control plane, the kubelets reporting
/// afresh if `fresh`.
pub fn api_after_a_stop(fresh: bool) -> crate::kube::fake::FakeApi {
    crate::kube::fake::FakeApi::new(move || crate::kube::fake::Seen {
        nodes: vec!["dev-control-plane".into(), "dev-worker".into()],
        fresh,
        leases: vec![("kube-scheduler".into(), "2026-01-01T00:00:00.000000Z".into(), "7".into())],
        lease_holder: Some("dev-control-plane".into()),
        ..Default::default()
    })
}

/// The requests of a start's (or restore's) whole wait, in order: `/readyz`, the stale lease
/// released, the nodes, the controllers' probe.
pub const STARTUP_REQUESTS: &[&str] = &[
    "GET /readyz",
    "DELETE /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
    "GET /api/v1/nodes",
    "POST /apis/apps/v1/namespaces/kube-system/replicasets",
];

/// Everything in the fake that carries snapshot `name`'s label: images, volumes, containers.
pub fn snapshot_objects(fake: &FakeRuntime, name: &str) -> BTreeSet<String> {
    let label = super::snapshot::LABEL_SNAPSHOT;
    let has = |labels: &std::collections::HashMap<String, String>| labels.get(label).is_some_and(|v| v == name);
    let mut all = BTreeSet::new();
    all.extend(fake.image_labels_all().into_iter().filter(|(_, l)| has(l)).map(|(i, _)| format!("image {i}")));
    all.extend(fake.volumes().into_iter().filter(|(_, l)| has(l)).map(|(v, _)| format!("volume {v}")));
    all.extend(fake.containers().into_iter().filter(|(_, c)| has(&c.labels)).map(|(c, _)| format!("container {c}")));
    all
}

/// Fires ("SIGINT") once the fake has recorded `n` calls, at the next point the operation
/// polls for an interrupt.
pub async fn interrupt_after(fake: FakeRuntime, n: usize) -> &'static str {
    loop {
        if fake.calls().len() >= n {
            return "SIGINT";
        }
        tokio::task::yield_now().await;
    }
}
