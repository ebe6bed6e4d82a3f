//! Step 1b (only with `containerdConfigPatches*`): each node's containerd config patched and
//! containerd restarted, before kubeadm or anything else uses it — as kind does.

use std::time::Duration;

use futures_util::future::try_join_all;

use super::Ctx;
use crate::cluster::{BootstrapError, ClusterError, Result};
use crate::runtime::Runtime;
use crate::wait::Ended;

pub const CONTAINERD_CONFIG_PATH: &str = "/etc/containerd/config.toml";

/// containerd answers within a second of its restart; allow for a loaded machine.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(ctx: &Ctx<'_>) -> Result<()> {
    try_join_all(ctx.plan.nodes.iter().map(|n| patch_node(ctx, &n.name))).await?;
    Ok(())
}

async fn patch_node(ctx: &Ctx<'_>, node: &str) -> Result<()> {
    let cfg = &ctx.opts.config;
    let current = ctx.docker.exec_ok(node, &["cat", CONTAINERD_CONFIG_PATH]).await?;
    let patched = crate::containerd::patch(&current, &cfg.containerd_config_patches, &cfg.containerd_config_patches_json6902)
        .map_err(|source| BootstrapError::ContainerdConfig { node: node.to_string(), source })?;
    ctx.docker.write_files(node, &[(CONTAINERD_CONFIG_PATH, patched.as_bytes(), 0o644)]).await?;
    ctx.docker.exec_ok(node, &["systemctl", "restart", "containerd"]).await?;
    wait_for_containerd(ctx.docker, node).await
}

async fn wait_for_containerd(docker: &dyn Runtime, node: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + RESTART_TIMEOUT;
    let what = format!("containerd answered on {node} after its config was patched");
    match crate::containerd::wait_until_answers(docker, node, &what, deadline).await {
        Ok(()) => Ok(()),
        Err(Ended::Failed(e)) => Err(e.into()),
        Err(Ended::Timeout(t)) => Err(ClusterError::from(BootstrapError::NotReady { what: t.to_string(), details: String::new() })),
    }
}
