//! Step 5: merge the cluster's context into the user's kubeconfig, so kubectl works at once.

use super::{Ctx, Initialized};
use crate::cluster::{ClusterError, Result};

pub async fn run(ctx: &mut Ctx<'_>, cluster: &Initialized) -> Result<()> {
    let entries = cluster.kubeconfig.clone();
    let path = ctx.opts.kubeconfig_path.clone();
    // The record is the context's before the write starts: an interrupt that stops waiting for
    // it still takes back whatever lands, or keeps it from landing.
    let record = ctx.kubeconfig_merge.clone();
    tokio::task::spawn_blocking(move || record.merge(&path, &entries))
        .await
        .map_err(|e| ClusterError::Io { context: "writing the kubeconfig".into(), source: std::io::Error::other(e) })??;
    Ok(())
}
