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
    let stop = async {
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("a SIGINT handler");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    cluster::service_lb::serve(&docker, name, status, stop).await?;
    Ok(())
}
