//! `berth create cluster`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::KubeconfigArg;
use crate::cluster::{self, CreateOptions, DEFAULT_CLUSTER_NAME, DEFAULT_NODE_IMAGE};
use crate::config::{self, Cluster};
use crate::runtime::{Docker, ModeRequest};
use crate::{kubeconfig, ui};

#[derive(Debug, Subcommand)]
pub enum CreateWhat {
    /// Create a cluster: node containers, kubeadm, pod network, and a kubeconfig context
    Cluster(CreateClusterArgs),
    /// Add a node to a running cluster (kubeadm join with a token made for it alone)
    Node(CreateNodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateNodeArgs {
    /// The node's container name (default: the cluster's pattern, e.g. NAME-worker3)
    #[arg(value_name = "NODE-NAME")]
    pub node: Option<String>,
    #[command(flatten)]
    pub name: super::NameArg,
    /// worker, or control-plane (needs a cluster with several control planes: a load balancer in front)
    #[arg(long, default_value = "worker", value_parser = parse_role)]
    pub role: crate::config::Role,
    /// The node image (default: the image of the cluster's control plane); its Kubernetes version must be one kubeadm can join
    #[arg(long)]
    pub image: Option<String>,
    /// Node labels, KEY=VALUE,... (the kubelet's --node-labels)
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_labels)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// How long to wait for the node to be Ready, e.g. 90s; 0 returns once it joined
    #[arg(long, default_value = "5m", value_parser = parse_wait)]
    pub wait: Duration,
}

fn parse_role(s: &str) -> Result<crate::config::Role, String> {
    match s {
        "worker" => Ok(crate::config::Role::Worker),
        "control-plane" => Ok(crate::config::Role::ControlPlane),
        other => Err(format!("{other:?} is not a role; use worker or control-plane")),
    }
}

fn parse_labels(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{kv:?} is not KEY=VALUE")))
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct CreateClusterArgs {
    /// The cluster's name (default: the config's name, else "berth")
    #[arg(short, long, env = "BERTH_CLUSTER_NAME")]
    pub name: Option<String>,
    /// A cluster config file (kind's v1alpha4 format works), or - for standard input; see
    /// configs/ for examples
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the config, plan the nodes and print each node's kubeadm config (patches applied)
    /// and the containerd patches; create and pull nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The node image for every node (default: the config's, else $BERTH_NODE_IMAGE, else berth's pinned image)
    #[arg(long)]
    pub image: Option<String>,
    /// How node containers get their privileges: auto (privileged where the daemon allows it),
    /// privileged, or capabilities
    #[arg(long, value_name = "MODE", env = "BERTH_NODE_MODE", default_value = "auto", value_parser = parse_mode)]
    pub node_mode: ModeRequest,
    /// An OCI runtime other than Docker's default for node containers (e.g. sysbox-runc)
    #[arg(long, value_name = "RUNTIME", env = "BERTH_RUNTIME")]
    pub runtime: Option<String>,
    /// The haproxy image that fronts several control planes
    #[arg(long, value_name = "IMAGE", env = "BERTH_LB_IMAGE", default_value = cluster::DEFAULT_LB_IMAGE)]
    pub lb_image: String,
    /// The image of the local registry, when the config names none
    #[arg(long, value_name = "IMAGE", env = "BERTH_REGISTRY_IMAGE")]
    pub registry_image: Option<String>,
    /// How long to wait for Ready nodes, e.g. 90s or 5m; 0 returns once the control plane is up
    #[arg(long, default_value = "5m", value_parser = parse_wait)]
    pub wait: Duration,
    /// Keep the nodes if create fails, to look into what went wrong
    #[arg(long)]
    pub retain: bool,
    /// When to pull node images: missing (default), always, never
    #[arg(long, value_enum, default_value_t)]
    pub pull: cluster::PullPolicy,
    /// Start (or reuse) a local registry on 127.0.0.1:PORT that pods reach as localhost:PORT
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "5001")]
    pub registry: Option<u16>,
    /// Install an add-on (repeatable): dashboard, metrics-server
    #[arg(long = "addon", value_name = "NAME", value_parser = ["dashboard", "metrics-server"])]
    pub addons: Vec<String>,
    /// Restore the cluster saved as this snapshot (berth snapshot save) instead of creating one:
    /// its nodes, names, addresses and API port, with their state (etcd's data, images)
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["config", "dry_run", "image", "registry", "addons", "retain", "node_mode", "runtime"])]
    pub from_snapshot: Option<String>,
    #[command(flatten)]
    pub kubeconfig: KubeconfigArg,
}

fn parse_mode(s: &str) -> Result<ModeRequest, String> {
    ModeRequest::parse(Some(s)).map_err(|e| e.to_string())
}

pub(super) fn parse_wait(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e}; use a duration like 90s or 5m"))
}

pub async fn run(what: CreateWhat, status: &ui::Status) -> anyhow::Result<()> {
    let args = match what {
        CreateWhat::Cluster(args) => args,
        CreateWhat::Node(args) => return create_node(args, status).await,
    };
    if let Some(snapshot) = args.from_snapshot.clone() {
        return restore(args, snapshot, status).await;
    }
    let dry_run = args.dry_run;
    let opts = options(args)?;
    if dry_run {
        // Docker only answers what the local image says about itself; without it, the tag does.
        let docker = Docker::connect().await.ok();
        let rendered = cluster::render::dry_run(docker.as_ref().map(|d| d as &dyn crate::runtime::Runtime), &opts).await?;
        for warning in &rendered.warnings {
            status.warn(warning);
        }
        print!("{}", rendered.to_text(&opts));
        return Ok(());
    }
    let docker = Docker::connect().await?;
    status.info(format!("Creating cluster {:?} ...", opts.name));
    let report = cluster::create(&docker, &opts, status).await?;
    status.info(format!(
        "Set kubectl context to {ctx:?} (in {path}). Nodes run in {mode} mode.\nYou can now use your cluster with:\n\n  kubectl cluster-info --context {ctx}\n",
        ctx = report.context,
        path = report.kubeconfig_path.display(),
        mode = report.mode,
    ));
    Ok(())
}

async fn create_node(args: CreateNodeArgs, status: &ui::Status) -> anyhow::Result<()> {
    let opts = cluster::members::AddOptions {
        cluster: args.name.name,
        node: args.node,
        role: args.role,
        image: args.image,
        labels: args.labels.unwrap_or_default(),
        wait: args.wait,
    };
    config::validate_cluster_name(&opts.cluster).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let docker = Docker::connect().await?;
    status.info(format!("Adding a {} to cluster {:?} ...", opts.role.as_str(), opts.cluster));
    let node = cluster::members::add(&docker, &opts, status).await?;
    status.info(format!("Node {node} joined cluster {:?}", opts.cluster));
    Ok(())
}

async fn restore(args: CreateClusterArgs, snapshot: String, status: &ui::Status) -> anyhow::Result<()> {
    let opts = cluster::restore::RestoreOptions {
        snapshot,
        name: args.name,
        wait: args.wait,
        kubeconfig_path: kubeconfig::default_path(args.kubeconfig.kubeconfig.as_deref()).context("choosing the kubeconfig file")?,
    };
    let docker = Docker::connect().await?;
    status.info(format!("Restoring snapshot {:?} ...", opts.snapshot));
    let report = cluster::restore::restore(&docker, &opts, status).await?;
    status.info(format!(
        "Set kubectl context to {ctx:?} (in {path}).\nYou can now use your cluster with:\n\n  kubectl cluster-info --context {ctx}\n",
        ctx = report.context,
        path = report.kubeconfig_path.display(),
    ));
    Ok(())
}

/// Flags, config file and environment, in that order of precedence, into create options.
fn options(args: CreateClusterArgs) -> anyhow::Result<CreateOptions> {
    let mut cfg = match &args.config {
        Some(path) if path.as_os_str() == "-" => config::read_stdin()?,
        Some(path) => config::load(path)?,
        None => Cluster::default_config(),
    };
    let name = args.name.clone().or_else(|| cfg.name.clone()).unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_string());
    config::validate_cluster_name(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    cfg.name = Some(name.clone());
    if let Some(port) = args.registry {
        let spec = cfg.registry.get_or_insert_with(Default::default);
        spec.port = Some(port);
    }
    if let Some(spec) = cfg.registry.as_mut() {
        spec.image = spec.image.take().or(args.registry_image.filter(|s| !s.is_empty()));
    }
    for addon in &args.addons {
        if !cfg.addons.contains(addon) {
            cfg.addons.push(addon.clone());
        }
    }
    let env_image = std::env::var("BERTH_NODE_IMAGE").ok().filter(|s| !s.is_empty());
    let image = args.image.clone().or(env_image).unwrap_or_else(|| DEFAULT_NODE_IMAGE.to_string());
    if args.image.is_some() {
        // --image is the user's last word: it replaces images named in the config too.
        for node in &mut cfg.nodes {
            node.image = None;
        }
    }
    Ok(CreateOptions {
        name,
        config: cfg,
        image,
        wait: args.wait,
        retain: args.retain,
        kubeconfig_path: kubeconfig::default_path(args.kubeconfig.kubeconfig.as_deref()).context("choosing the kubeconfig file")?,
        mode_request: args.node_mode,
        runtime: args.runtime.filter(|s| !s.is_empty()),
        pull: args.pull,
        lb_image: args.lb_image,
    })
}
