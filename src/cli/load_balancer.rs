//! `berth load-balancer`: serve a cluster's LoadBalancer Services until Ctrl-C.

use crate::runtime::Docker;
use crate::{cluster, ui};

use super::NameArg;

#[derive(Debug, clap::Args)]
pub struct LoadBalancerArgs {
    #[command(flatten)]
    pub name: NameArg,
}

pub async fn run(args: LoadBalancerArgs, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let name = &args.name.name;
    status.info(format!(
        "Serving the LoadBalancer Services of cluster {name:?} at addresses on berth's Docker network (reachable from this host); Ctrl-C stops and removes them"
    ));
    // Installed now, before the first pass: a Ctrl-C during it still removes what it made.
    let stop = crate::interrupt::interrupted();
    cluster::service_lb::serve(&docker, name, status, async {
        stop.await;
    })
    .await?;
    Ok(())
}
