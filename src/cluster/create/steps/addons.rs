//! Step 7: the add-ons the config or `--addon` asked for. Images an add-on needs and the nodes
//! lack are named in a warning: the objects exist, the pods wait for their images.

use super::{Ctx, Initialized};
use crate::addons;
use crate::cluster::{BootstrapError, ClusterError, Result};

pub async fn run(ctx: &mut Ctx<'_>, cluster: &Initialized) -> Result<()> {
    let node = ctx.control_plane().name.clone();
    for name in ctx.opts.config.addons.clone() {
        let addon = addons::find(&name).ok_or_else(|| ClusterError::InvalidInput {
            field: "addons".into(),
            problem: format!("unknown add-on {name:?}; berth knows: {}", addons::names().join(", ")),
        })?;
        addons::install(&cluster.client, addon).await.map_err(|source| BootstrapError::Addon { name: name.clone(), source })?;
        let mut missing = Vec::new();
        for image in addon.images {
            if !crate::cluster::load::node_has_image(ctx.docker, &node, image).await? {
                missing.push(*image);
            }
        }
        if !missing.is_empty() {
            ctx.warn(format!(
                "{name}: its objects are installed, but the node image lacks {}, so its pods cannot start and {} will not work until the image is loaded (berth load docker-image)",
                missing.join(" and "),
                addon.purpose
            ));
        }
    }
    Ok(())
}
