//! `berth get clusters|nodes|kubeconfig` and `berth export kubeconfig`.

use clap::Subcommand;

use super::{KubeconfigArg, NameArg, Output};
use crate::cluster;
use crate::runtime::Docker;
use crate::{kubeconfig, ui};

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// List clusters: names, one per line; `-o wide` adds state (running, stopped, degraded) and nodes
    Clusters {
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// List a cluster's node containers: names, one per line; `-o wide` adds role and state
    Nodes {
        #[command(flatten)]
        name: NameArg,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print a cluster's kubeconfig
    Kubeconfig {
        #[command(flatten)]
        name: NameArg,
        /// Address the API server by container name, for use from other containers on berth's network
        #[arg(long)]
        internal: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportWhat {
    /// Write every node's journals, container log, pod logs and inspect output to a directory
    Logs {
        /// Where to write (default: a new directory under the system's temp dir)
        dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        name: NameArg,
    },
    /// Merge a cluster's context into your kubeconfig and make it current
    Kubeconfig {
        #[command(flatten)]
        name: NameArg,
        /// Address the API server by container name, for use from other containers on berth's network
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        kubeconfig: KubeconfigArg,
    },
}

pub async fn run(what: GetWhat) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    match what {
        GetWhat::Clusters { output } => {
            let clusters = cluster::list(&docker).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&clusters)?),
                _ if clusters.is_empty() => eprintln!("No berth clusters found."),
                Output::Text => clusters.iter().for_each(|c| println!("{}", c.name)),
                Output::Wide => {
                    println!("{:<30} {:<10} NODES", "NAME", "STATE");
                    for c in clusters {
                        let missing = if c.missing.is_empty() { String::new() } else { format!(" (missing: {})", c.missing.join(", ")) };
                        // Service forwarders are not nodes (`get nodes` lists them, by role).
                        let nodes = c.nodes.iter().filter(|n| n.role != crate::cluster::NodeRole::ServiceLb).count();
                        println!("{:<30} {:<10} {nodes}{missing}", c.name, c.state);
                    }
                }
            }
        }
        GetWhat::Nodes { name, output } => {
            let nodes = cluster::nodes(&docker, &name.name).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
                Output::Text => nodes.iter().for_each(|n| println!("{}", n.name)),
                Output::Wide => {
                    println!("{:<40} {:<24} STATE", "NAME", "ROLE");
                    for n in nodes {
                        println!("{:<40} {:<24} {}", n.name, n.role, n.state);
                    }
                }
            }
        }
        GetWhat::Kubeconfig { name, internal, output } => {
            let doc = cluster::kubeconfig_for(&docker, &name.name, internal).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
                Output::Text | Output::Wide => print!("{}", serde_yaml::to_string(&doc)?),
            }
        }
    }
    Ok(())
}

pub async fn export(what: ExportWhat, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let (name, arg, internal) = match what {
        ExportWhat::Kubeconfig { name, kubeconfig, internal } => (name, kubeconfig, internal),
        ExportWhat::Logs { dir, name } => {
            let dir = match dir {
                Some(d) => d,
                None => tempfile::Builder::new().prefix("berth-logs-").tempdir()?.keep(),
            };
            let files = cluster::logs::export(&docker, &name.name, &dir).await?;
            status.info(format!("Exported {} log files of cluster {:?} to {}", files.len(), name.name, dir.display()));
            println!("{}", dir.display());
            return Ok(());
        }
    };
    let doc = cluster::kubeconfig_for(&docker, &name.name, internal).await?;
    let path = kubeconfig::default_path(arg.kubeconfig.as_deref())?;
    kubeconfig::merge_into_file(&path, &doc)?;
    status.info(format!("Set kubectl context to {:?} in {}", kubeconfig::context_name(&name.name), path.display()));
    Ok(())
}
