//! `berth build node-image`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::node_image::{self, BuildOptions, DEFAULT_KUBE_BASE_URL};
use crate::runtime::Docker;
use crate::ui;

#[derive(Debug, Subcommand)]
pub enum BuildWhat {
    /// Build a node image from a base image, Kubernetes (compiled from Go modules, local
    /// binaries, or a release download) and image archives
    NodeImage(NodeImageArgs),
}

#[derive(Debug, clap::Args)]
pub struct NodeImageArgs {
    /// A Debian-like image with systemd, containerd, runc, iptables and the CNI plugins
    #[arg(long, value_name = "IMAGE")]
    pub base_image: String,
    /// Compile this Kubernetes release from its Go modules with the local Go (`go` on PATH, or
    /// BERTH_GO), with the component images its kubeadm names (etcd, CoreDNS and pause
    /// included), e.g. v1.37.2; builds are cached by version under ~/.cache/berth
    #[arg(long, value_name = "VERSION", conflicts_with_all = ["kube_bin", "kube_version"])]
    pub kubernetes_version: Option<String>,
    /// A directory holding kubeadm, kubelet and kubectl
    #[arg(long, value_name = "DIR", conflicts_with = "kube_version")]
    pub kube_bin: Option<PathBuf>,
    /// Download this Kubernetes release's binaries and component images instead, e.g. v1.31.0
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
    /// Where releases are downloaded from ({URL}/{VERSION}/bin/linux/{ARCH}/...)
    #[arg(long, value_name = "URL", default_value = DEFAULT_KUBE_BASE_URL)]
    pub kube_base_url: String,
    /// The architecture to download for
    #[arg(long, default_value = "amd64")]
    pub arch: String,
    /// Directories of image archives (`docker save` tars) to preload into containerd
    #[arg(long = "images", value_name = "DIR")]
    pub image_dirs: Vec<PathBuf>,
    /// The tag of the image to build
    #[arg(short, long, default_value = "berth/node:latest")]
    pub tag: String,
    /// Extra image labels, KEY=VALUE
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub label: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

pub async fn run(what: BuildWhat, status: &ui::Status) -> anyhow::Result<()> {
    let BuildWhat::NodeImage(args) = what;
    let opts = BuildOptions {
        base_image: args.base_image,
        kubernetes_version: args.kubernetes_version,
        kube_bin: args.kube_bin,
        kube_version: args.kube_version,
        kube_base_url: args.kube_base_url,
        arch: args.arch,
        image_dirs: args.image_dirs,
        tag: args.tag,
        labels: args.label,
    };
    // Flags first: a wrong one is reported even where Docker does not answer.
    node_image::check_inputs(&opts)?;
    let docker = Docker::connect().await?;
    node_image::build(&docker, &opts, status).await?;
    Ok(())
}
