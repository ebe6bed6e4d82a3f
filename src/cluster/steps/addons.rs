//! Step 7: the add-ons the config or `--addon` asked for. Images an add-on needs and the nodes
//! lack are named in a warning: the objects exist, the pods wait for their images.

use super::super::create::Ctx;
use super::super::{ClusterError, Result};
use crate::addons;

pub async fn run(ctx: &mut Ctx<'_>) -> Result<()> {
    if ctx.opts.config.addons.iter().any(|a| a == addons::DASHBOARD) {
        let node = ctx.control_plane().name.clone();
        let missing = addons::install_dashboard(ctx.client(), ctx.docker, &node)
            .await
            .map_err(|e| ClusterError::Invalid(format!("installing the dashboard: {e}")))?;
        if !missing.is_empty() {
            ctx.warn(format!(
                "Dashboard: its objects are installed, but the node image lacks {}; its pods start once the image is loaded (berth load docker-image)",
                missing.join(" and ")
            ));
        }
    }
    Ok(())
}
