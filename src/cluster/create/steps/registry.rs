//! Connecting the local registry: start (or reuse) `berth-registry`, tell every node's
//! containerd that `localhost:PORT` is that container, and publish KEP-1755's ConfigMap.

use futures_util::future::try_join_all;

use super::{ensure_image, Ctx, Initialized};
use crate::cluster::Result;
use crate::config::RegistrySpec;
use crate::registry;

pub async fn run(ctx: &Ctx<'_>, cluster: &Initialized, spec: &RegistrySpec) -> Result<()> {
    let port = spec.port.unwrap_or(registry::DEFAULT_REGISTRY_PORT);
    let image = spec.image.clone().unwrap_or_else(|| registry::DEFAULT_REGISTRY_IMAGE.to_string());
    let image = crate::image_ref::ImageRef::parse(&image)?;
    ensure_image(ctx.docker, &image, crate::cluster::PullPolicy::Missing, ctx.status).await?;
    registry::ensure_local_registry(ctx.docker, port, &registry::local_name(&image)).await?;
    let (path, body) = registry::containerd_hosts_toml(port);
    let file = [(path.as_str(), body.as_bytes(), 0o644)];
    try_join_all(ctx.plan.nodes.iter().map(|n| ctx.docker.write_files(&n.name, &file))).await?;
    crate::kube::apply_manifest(&cluster.client, &registry::local_registry_hosting(port)).await?;
    Ok(())
}
