//! `berth load docker-image` and `berth load image-archive`.

use std::path::PathBuf;

use clap::Subcommand;

use super::NameArg;
use crate::cluster::load;
use crate::runtime::Docker;
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum LoadWhat {
    /// Copy images from the host's Docker into every node (skipping nodes that have them)
    DockerImage {
        /// The images, e.g. my-app:dev
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        name: NameArg,
        /// Only these nodes, comma-separated
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Load an image archive (`docker save` tar) into every node
    ImageArchive {
        file: PathBuf,
        #[command(flatten)]
        name: NameArg,
        /// Only these nodes, comma-separated
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

pub async fn run(what: LoadWhat, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    match what {
        LoadWhat::DockerImage { images, name, nodes } => {
            for (node, loaded) in load::load_docker_images(&docker, &name.name, &images, &nodes, status).await? {
                status.info(format!("{node}: {}", if loaded { "loaded" } else { "already present, skipped" }));
            }
        }
        LoadWhat::ImageArchive { file, name, nodes } => {
            let loaded = load::load_archive(&docker, &name.name, &file, &nodes, status).await?;
            status.info(format!("loaded {} into {}", file.display(), loaded.join(", ")));
        }
    }
    Ok(())
}
