//! Step 6: wait, up to `--wait`, for every node Ready and kube-proxy running on each; then say
//! plainly how CoreDNS is doing instead of waiting for a Deployment that may never be Available
//! (its image may be missing from the node image).

use std::time::Duration;

use super::super::create::Ctx;
use super::super::{ClusterError, Result};
use crate::kube;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ctx.opts.wait;
    let client = ctx.client().clone();
    if let Err(e) = kube::wait_for_nodes_ready(&client, ctx.nodes.len(), deadline).await {
        return Err(not_ready(ctx, e.to_string()).await);
    }
    if ctx.opts.config.networking.kube_proxy_mode.as_deref() != Some("none") {
        if let Err(e) = kube::wait_for_daemonset(&client, "kube-system", "kube-proxy", deadline).await {
            return Err(not_ready(ctx, e.to_string()).await);
        }
    }
    report_coredns(ctx).await
}

/// CoreDNS gets a few seconds to become Available; if it does not, a warning names the image
/// its pods cannot get.
async fn report_coredns(ctx: &mut Ctx<'_>) -> Result<()> {
    let client = ctx.client().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = kube::deployment_health(&client, "kube-system", "coredns", "k8s-app=kube-dns").await?;
        if !health.exists {
            ctx.warn("CoreDNS: kubeadm created no coredns Deployment; cluster DNS will not work".into());
            return Ok(());
        }
        if health.available >= health.desired && health.desired > 0 {
            return Ok(());
        }
        if !health.missing_images.is_empty() {
            ctx.warn(format!(
                "CoreDNS is not available: its image {} is not in the node image and cannot be pulled; cluster DNS will not work until it is (berth load docker-image, or a node image that carries it)",
                health.missing_images.join(", ")
            ));
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            ctx.warn(format!("CoreDNS is not available yet ({} of {} replicas)", health.available, health.desired));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A wait that ran out: the kubelet's last log lines from each node and the pods that are not
/// running, so the user sees why.
async fn not_ready(ctx: &Ctx<'_>, what: String) -> ClusterError {
    let mut details = String::new();
    for node in &ctx.nodes {
        let journal = ctx
            .docker
            .exec(&node.name, &["journalctl", "-u", "kubelet", "-n", "8", "--no-pager", "-o", "cat"])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        details.push_str(&format!("kubelet on {}:\n{}\n", node.name, journal.trim_end()));
    }
    if let Ok(pods) = kube::failing_pods(ctx.client()).await {
        if !pods.is_empty() {
            details.push_str(&format!("pods not running:\n  {}\n", pods.join("\n  ")));
        }
    }
    ClusterError::NotReady { what: format!("the cluster was not ready within --wait {:?}: {what}", ctx.opts.wait), details }
}
