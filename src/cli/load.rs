//! `berth load docker-image` and `berth load image-archive`.

use std::path::PathBuf;

use clap::Subcommand;

use super::NameArg;
use crate::cluster::{load, Operation};
use crate::runtime::{Docker, Runtime};
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
    // Installed first: a signal then drops the load, whose temporary archive (gigabytes, for a
    // large image) is removed as it drops; the process dying outright would leave it.
    let stop = crate::interrupt::interrupted();
    let docker = Docker::connect().await?;
    tokio::select! {
        biased;
        which = stop => Err(Operation::Load.interrupted(which, INTERRUPTED).into()),
        done = load(what, &docker, status) => done,
    }
}

const INTERRUPTED: &str = "the temporary archive was removed; run the load again to finish it";

async fn load(what: LoadWhat, docker: &dyn Runtime, status: &ui::Status) -> anyhow::Result<()> {
    match what {
        LoadWhat::DockerImage { images, name, nodes } => {
            for (node, loaded) in load::load_docker_images(docker, &name.name, &images, &nodes, status).await? {
                status.info(format!("{node}: {}", if loaded { "loaded" } else { "already present, skipped" }));
            }
        }
        LoadWhat::ImageArchive { file, name, nodes } => {
            let loaded = load::load_archive(docker, &name.name, &file, &nodes, status).await?;
            status.info(format!("loaded {} into {}", file.display(), loaded.join(", ")));
        }
    }
    Ok(())
}
