//! `berth delete cluster` and `berth delete clusters`.

use clap::Subcommand;

use super::{KubeconfigArg, NameArg};
use crate::cluster;
use crate::runtime::Docker;
use crate::{kubeconfig, ui};

#[derive(Debug, Subcommand)]
pub enum DeleteWhat {
    /// Delete a cluster: its node containers, their volumes, and its kubeconfig context
    Cluster {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        kubeconfig: KubeconfigArg,
    },
    /// Delete the local registry container and its data (clusters keep running)
    Registry,
    /// Remove a node from a running cluster: cordoned, drained (PodDisruptionBudgets honoured),
    /// out of etcd if a control plane, its container and volume gone
    Node {
        /// The node's name (berth get nodes --name CLUSTER)
        node: String,
        #[command(flatten)]
        name: NameArg,
        /// Delete the node's pods instead of evicting them (PodDisruptionBudgets are not asked)
        #[arg(long)]
        force: bool,
        /// How long the drain may take
        #[arg(long, default_value = "2m", value_parser = super::create::parse_wait)]
        timeout: std::time::Duration,
    },
    /// Delete several clusters by name, or all of them
    Clusters {
        /// Delete every berth cluster
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// The clusters to delete
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        #[command(flatten)]
        kubeconfig: KubeconfigArg,
    },
}

pub async fn run(what: DeleteWhat, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let (names, kubeconfig_arg) = match what {
        DeleteWhat::Registry => {
            let Some(image) = crate::registry::delete_local_registry(&docker).await? else {
                status.info("There was no local registry");
                return Ok(());
            };
            // The registry may have been the last thing on berth's network.
            cluster::remove_network_if_unused(&docker, &image).await;
            status.info("Deleted the local registry and its data");
            return Ok(());
        }
        DeleteWhat::Node { node, name, force, timeout } => {
            crate::config::validate_cluster_name(&name.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let opts = cluster::members::RemoveOptions { cluster: name.name, node, force, timeout };
            cluster::members::remove(&docker, &opts, status).await?;
            status.info(format!("Node {} was removed from cluster {:?}", opts.node, opts.cluster));
            return Ok(());
        }
        DeleteWhat::Cluster { name, kubeconfig } => (vec![name.name], kubeconfig),
        DeleteWhat::Clusters { all: true, kubeconfig, .. } => {
            (cluster::list(&docker).await?.into_iter().map(|c| c.name).collect(), kubeconfig)
        }
        DeleteWhat::Clusters { names, kubeconfig, .. } => (names, kubeconfig),
    };
    // Entries are removed wherever kubectl would find them: every file of the list.
    let paths = kubeconfig::paths(kubeconfig_arg.kubeconfig.as_deref())?;
    for name in names {
        crate::config::validate_cluster_name(&name).map_err(|e| anyhow::anyhow!("cluster name: {e}"))?;
        let step = status.step(format!("Deleting cluster {name:?}"));
        let removed = cluster::delete(&docker, &name, &paths).await?;
        step.done();
        if removed == 0 {
            status.info(format!("(there was no cluster named {name:?}; nothing to remove)"));
        }
    }
    Ok(())
}
