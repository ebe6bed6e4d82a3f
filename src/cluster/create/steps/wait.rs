//! Step 6: wait, up to `--wait`, for every node Ready, kube-proxy running on each, and cluster
//! DNS answering (CoreDNS Available) — what kind's users expect a Ready cluster to have. A node
//! image without CoreDNS's image gets a warning naming it at once rather than a wait for a
//! Deployment that can never become Available.

use k8s_openapi::api::apps::v1::Deployment;

use super::{Ctx, Initialized};
use crate::cluster::{BootstrapError, ClusterError, Result};
use crate::kube;

pub async fn run(ctx: &mut Ctx<'_>, cluster: &Initialized) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ctx.opts.wait;
    let client = &cluster.client;
    if let Err(e) = kube::wait_for_nodes_ready(client, ctx.plan.nodes.len(), None, deadline).await {
        return Err(not_ready(ctx, client, e.to_string()).await);
    }
    if ctx.opts.config.kube_proxy_mode() != crate::config::ProxyMode::None {
        if let Err(e) = kube::wait_for_daemonset(client, "kube-system", "kube-proxy", deadline).await {
            return Err(not_ready(ctx, client, e.to_string()).await);
        }
    }
    report_coredns(ctx, client, deadline).await
}

/// CoreDNS, honestly: if its image is not in the node, a warning names it at once (nothing can
/// pull it); if it is, wait (within --wait) until the Deployment is Available, and fail with
/// its pods' reasons if it is not.
async fn report_coredns(ctx: &mut Ctx<'_>, client: &::kube::Client, deadline: tokio::time::Instant) -> Result<()> {
    let deployments: ::kube::Api<Deployment> = ::kube::Api::namespaced(client.clone(), "kube-system");
    let Some(deployment) = deployments.get_opt("coredns").await.map_err(crate::kube::KubeError::from)? else {
        ctx.warn("CoreDNS: kubeadm created no coredns Deployment; cluster DNS will not work".into());
        return Ok(());
    };
    let images: Vec<String> = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    let node = ctx.control_plane().name.clone();
    let mut missing = Vec::new();
    for image in &images {
        if !crate::cluster::load::node_has_image(ctx.docker, &node, image).await? {
            missing.push(image.clone());
        }
    }
    if !missing.is_empty() {
        ctx.warn(format!(
            "CoreDNS is not available: its image {} is not in the node image and cannot be pulled; cluster DNS will not work until it is (berth load docker-image, or a node image that carries it)",
            missing.join(", ")
        ));
        return Ok(());
    }
    match kube::wait_for_deployment_available(client, "kube-system", "coredns", deadline).await {
        Ok(()) => Ok(()),
        Err(kube::KubeError::Timeout(t)) => Err(not_ready(ctx, client, format!("cluster DNS (CoreDNS): {}", t.detail)).await),
        Err(e) => Err(e.into()),
    }
}

/// A wait that ran out: the kubelet's last log lines from each node and the pods that are not
/// running, so the user sees why.
async fn not_ready(ctx: &Ctx<'_>, client: &::kube::Client, what: String) -> ClusterError {
    let mut details = String::new();
    for node in &ctx.plan.nodes {
        let journal = ctx
            .docker
            .exec(&node.name, &["journalctl", "-u", "kubelet", "-n", "8", "--no-pager", "-o", "cat"])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        details.push_str(&format!("kubelet on {}:\n{}\n", node.name, journal.trim_end()));
    }
    if let Ok(pods) = kube::failing_pods(client).await {
        if !pods.is_empty() {
            details.push_str(&format!("pods not running:\n  {}\n", pods.join("\n  ")));
        }
    }
    ClusterError::from(BootstrapError::NotReady {
        what: format!("the cluster was not ready within --wait {:?}: {what}", ctx.opts.wait),
        details,
    })
}
