//! Step 5: merge the cluster's context into the user's kubeconfig, so kubectl works at once.

use super::super::Result;
use super::{Ctx, Initialized};
use crate::kubeconfig;

pub async fn run(ctx: &mut Ctx<'_>, cluster: &Initialized) -> Result<()> {
    let entries = cluster.kubeconfig.clone();
    let path = ctx.opts.kubeconfig_path.clone();
    // Marked before writing: if the write is interrupted halfway, roll-back still removes
    // whatever landed (removing absent entries is harmless).
    ctx.kubeconfig_merged = Some(kubeconfig::current_context(&path)?);
    tokio::task::spawn_blocking(move || kubeconfig::merge_into_file(&path, &entries))
        .await
        .map_err(|e| super::super::ClusterError::Io { context: "writing the kubeconfig".into(), source: std::io::Error::other(e) })??;
    Ok(())
}
