//! `berth stop cluster` and `berth start cluster`.

use std::time::Duration;

use clap::Subcommand;

use super::NameArg;
use crate::cluster::lifecycle;
use crate::runtime::Docker;
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum StopWhat {
    /// Stop a cluster's nodes (workers first); its state and kubeconfig context stay
    Cluster {
        #[command(flatten)]
        name: NameArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum StartWhat {
    /// Start a stopped cluster's nodes again and wait until they are Ready
    Cluster {
        #[command(flatten)]
        name: NameArg,
        /// How long to wait for Ready nodes; 0 returns at once
        #[arg(long, default_value = "5m", value_parser = super::create::parse_wait)]
        wait: Duration,
    },
}

pub async fn stop(what: StopWhat, status: &ui::Status) -> anyhow::Result<()> {
    let StopWhat::Cluster { name } = what;
    let docker = Docker::connect().await?;
    lifecycle::stop(&docker, &name.name, status).await?;
    status.info(format!("Stopped cluster {:?}; `berth start cluster --name {}` brings it back", name.name, name.name));
    Ok(())
}

pub async fn start(what: StartWhat, status: &ui::Status) -> anyhow::Result<()> {
    let StartWhat::Cluster { name, wait } = what;
    let docker = Docker::connect().await?;
    lifecycle::start(&docker, &name.name, wait, status).await?;
    status.info(format!("Started cluster {:?}", name.name));
    Ok(())
}
