//! `berth snapshot save|list|delete`.

use clap::Subcommand;

use super::{NameArg, Output};
use crate::cluster::snapshot::{self, Snapshot};
use crate::runtime::Docker;
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum SnapshotWhat {
    /// Stop a cluster and save every node (its files and /var: etcd, kubelet, images) as a
    /// snapshot that `berth create cluster --from-snapshot NAME` restores
    Save {
        /// The snapshot's name
        snapshot: String,
        #[command(flatten)]
        name: NameArg,
    },
    /// List snapshots
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a snapshot's images and volumes
    Delete {
        /// The snapshot's name
        snapshot: String,
    },
}

pub async fn run(what: SnapshotWhat, status: &ui::Status) -> anyhow::Result<()> {
    // Bad input is named before Docker is asked anything.
    if let SnapshotWhat::Save { snapshot, .. } | SnapshotWhat::Delete { snapshot } = &what {
        snapshot::check_name(snapshot)?;
    }
    let docker = Docker::connect().await?;
    match what {
        SnapshotWhat::Save { snapshot, name } => {
            let started = std::time::Instant::now();
            let saved = snapshot::save(&docker, &snapshot, &name.name, status).await?;
            status.info(format!(
                "Saved cluster {:?} as snapshot {:?} ({} node(s), {}) in {:.1} s; the cluster is stopped (berth start cluster --name {} resumes it).\nRestore it with: berth create cluster --from-snapshot {}\nThe snapshot holds the cluster's CA and service-account keys and cluster-admin credentials: whoever can read its images (docker save, a push to a registry) administers every cluster restored from it.",
                name.name,
                saved.name,
                saved.nodes.len(),
                human_bytes(saved.bytes()),
                started.elapsed().as_secs_f64(),
                name.name,
                saved.name
            ));
        }
        SnapshotWhat::List { output } => {
            let all = snapshot::list(&docker).await?;
            super::write_stdout(render(&all, output)?.as_bytes())?;
        }
        SnapshotWhat::Delete { snapshot } => {
            let removed = snapshot::delete(&docker, &snapshot).await?;
            if removed == 0 {
                status.info(format!("No snapshot named {snapshot:?}; nothing to delete"));
            } else {
                status.info(format!("Deleted snapshot {snapshot:?} ({removed} images and volumes)"));
            }
        }
    }
    Ok(())
}

fn render(all: &[Snapshot], output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(all)? + "\n",
        Output::Text => all.iter().map(|s| format!("{}\n", s.name)).collect(),
        Output::Wide => {
            let mut out = format!(
                "{:<20} {:<20} {:>5} {:<12} {:>9} {:<20} {}\n",
                "NAME", "CLUSTER", "NODES", "KUBERNETES", "SIZE", "CREATED", "STATE"
            );
            for s in all {
                let created =
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created.max(0) as u64));
                let state = if s.complete { "complete".to_string() } else { format!("incomplete (missing: {})", s.missing.join(", ")) };
                out.push_str(&format!(
                    "{:<20} {:<20} {:>5} {:<12} {:>9} {created:<20} {state}\n",
                    s.name,
                    s.cluster,
                    s.nodes.len(),
                    s.kubernetes_version,
                    human_bytes(s.bytes())
                ));
            }
            out
        }
    })
}

fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}
