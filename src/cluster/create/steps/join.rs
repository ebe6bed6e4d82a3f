//! Step 3: every other node joins with `kubeadm join`, all workers at once.

use futures_util::future::try_join_all;

use super::kubeadm_init::{render_for, run_kubeadm, KUBEADM_CONFIG_PATH};
use super::{Ctx, Initialized, PlannedNode, Provisioned};
use crate::cluster::Result;
use crate::config::Role;

/// kube-controller-manager signs cluster-info once its controllers run: seconds after
/// `kubeadm init` returns (about 15 s on Kubernetes 1.20, whose IPAM start-up waits 10 s).
const SIGNED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

pub async fn run(ctx: &Ctx<'_>, nodes: &Provisioned, cluster: &Initialized) -> Result<()> {
    let first_cp = ctx.control_plane().name.clone();
    let joining: Vec<PlannedNode> = ctx.plan.nodes.iter().filter(|n| n.name != first_cp).cloned().collect();
    let token_id = ctx.plan.token.split('.').next().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + SIGNED_TIMEOUT;
    crate::kube::wait_for_cluster_info_signed(&cluster.client, token_id, deadline).await?;
    let hash = cluster.ca_cert_hash.as_deref();
    // Control planes one at a time: each adds an etcd member, and etcd takes one change at a
    // time. Workers then all at once.
    for node in joining.iter().filter(|n| n.role == Role::ControlPlane) {
        join_one(ctx, nodes, hash, node).await?;
    }
    try_join_all(joining.iter().filter(|n| n.role == Role::Worker).map(|node| join_one(ctx, nodes, hash, node))).await?;
    Ok(())
}

async fn join_one(ctx: &Ctx<'_>, nodes: &Provisioned, ca_cert_hash: Option<&str>, node: &PlannedNode) -> Result<()> {
    let rendered = render_for(ctx.opts, &ctx.plan, nodes, ca_cert_hash, node)?;
    ctx.docker.write_files(&node.name, &[(KUBEADM_CONFIG_PATH, rendered.as_bytes(), 0o600)]).await?;
    let config_flag = format!("--config={KUBEADM_CONFIG_PATH}");
    run_kubeadm(ctx, &node.name, "join", &["kubeadm", "join", "--skip-phases=preflight", &config_flag]).await?;
    Ok(())
}
