//! `create cluster`: checks everything that can be checked before touching Docker, then runs
//! the steps in order. If a step fails, or SIGINT/SIGTERM arrives, everything this run created
//! is removed (unless `--retain`): its containers are found by a label unique to this run, so a
//! concurrent create of the same name never loses its nodes to our cleanup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};

use super::options::CreateOptions;
use super::steps::{self, ensure_image, Ctx, PlannedNode, LABEL_CREATE_ID};
use super::{ClusterError, Result};
use crate::config;
use crate::image_ref::ImageRef;
use crate::kubeconfig;
use crate::runtime::{Docker, NodeMode, LABEL_CLUSTER};
use crate::ui::Status;

#[derive(Debug, Clone)]
pub struct CreateReport {
    pub context: String,
    pub kubeconfig_path: PathBuf,
    pub mode: NodeMode,
    pub warnings: Vec<String>,
}

fn plan_nodes(opts: &CreateOptions) -> Result<Vec<PlannedNode>> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    opts.config
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let n = counts.entry(node.role.as_str()).or_insert(0);
            let name = super::node_name(&opts.name, node.role, *n);
            *n += 1;
            let image = ImageRef::parse(node.image.as_deref().unwrap_or(&opts.image))?;
            Ok(PlannedNode { name, role: node.role, image, index })
        })
        .collect()
}

/// Everything checkable before anything is created (pulls included: a failed pull leaves
/// nothing behind).
async fn preflight(docker: &Docker, opts: &CreateOptions, status: &Status) -> Result<()> {
    config::validate_cluster_name(&opts.name).map_err(|e| ClusterError::Invalid(format!("--name: {e}")))?;
    if opts.config.control_planes().count() > 1 && !docker.image_exists(&opts.lb_image).await? {
        return Err(ClusterError::Invalid(format!(
            "several control planes need the load balancer image {}, which is not present locally; build or pull it, or name another with BERTH_LB_IMAGE",
            opts.lb_image
        )));
    }
    let problems = config::check_host_ports(&opts.config);
    if !problems.is_empty() {
        return Err(ClusterError::Invalid(problems.join("; ")));
    }
    if !docker.list_containers(&format!("{LABEL_CLUSTER}={}", opts.name)).await?.is_empty() {
        return Err(ClusterError::Exists(opts.name.clone()));
    }
    let mut images: Vec<ImageRef> = Vec::new();
    for node in plan_nodes(opts)? {
        if !images.contains(&node.image) {
            images.push(node.image);
        }
    }
    for image in &images {
        ensure_image(docker, image, opts.pull, status).await?;
    }
    Ok(())
}

/// The API server is published on loopback unless the config says otherwise; then say so.
fn exposure_warning(address: &str) -> Option<String> {
    let loopback = address.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
    (!loopback).then(|| {
        format!("networking.apiServerAddress is {address}: the API server will be reachable from other machines, not only this one")
    })
}

/// Host ports that `extraPortMappings` publish on every interface (no `listenAddress`: kind's
/// default, kept for compatibility), named once so nobody is surprised.
fn port_mapping_warning(config: &config::Cluster) -> Option<String> {
    let open: Vec<String> = config
        .nodes
        .iter()
        .flat_map(|n| &n.extra_port_mappings)
        .filter(|m| m.listen_address.as_deref().is_none_or(|a| a == "0.0.0.0" || a == "::"))
        .map(|m| if m.host_port == 0 { format!("(a free port)->{}", m.container_port) } else { m.host_port.to_string() })
        .collect();
    (!open.is_empty()).then(|| {
        format!(
            "extraPortMappings publish host port(s) {} on all interfaces, reachable from other machines; set listenAddress: 127.0.0.1 to keep them local",
            open.join(", ")
        )
    })
}

/// The configured API server port, or a port free right now on its address.
fn api_server_port(opts: &CreateOptions) -> Result<u16> {
    match opts.config.networking.api_server_port.filter(|p| *p != 0) {
        Some(port) => Ok(port),
        None => {
            let listener = std::net::TcpListener::bind((opts.config.api_server_address(), 0))
                .map_err(|e| ClusterError::Invalid(format!("finding a free port on {}: {e}", opts.config.api_server_address())))?;
            Ok(listener.local_addr().map_err(|e| ClusterError::Invalid(e.to_string()))?.port())
        }
    }
}

fn create_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Creates the cluster described by `opts`.
pub async fn create(docker: &Docker, opts: &CreateOptions, status: &Status) -> Result<CreateReport> {
    preflight(docker, opts, status).await?;
    let mut ctx = Ctx {
        docker,
        opts,
        status,
        create_id: create_id(),
        nodes: plan_nodes(opts)?,
        token: steps::kubeadm_init::new_bootstrap_token(),
        certificate_key: (opts.config.control_planes().count() > 1).then(steps::kubeadm_init::new_certificate_key),
        api_server_port: api_server_port(opts)?,
        warnings: Vec::new(),
        kubeconfig_merged: None,
    };
    for warning in [exposure_warning(opts.config.api_server_address()), port_mapping_warning(&opts.config)].into_iter().flatten() {
        ctx.warn(warning);
    }
    let outcome = tokio::select! {
        r = run_steps(&mut ctx) => r,
        which = interrupted() => Err(ClusterError::Interrupted(which, String::new())),
    };
    match outcome {
        Ok(mode) => Ok(CreateReport {
            context: kubeconfig::context_name(&opts.name),
            kubeconfig_path: opts.kubeconfig_path.clone(),
            mode,
            warnings: ctx.warnings,
        }),
        Err(err) if opts.retain => {
            status.warn(format!(
                "--retain: leaving the nodes of {:?} for inspection; `berth delete cluster --name {}` removes them",
                opts.name, opts.name
            ));
            Err(err)
        }
        Err(err) => {
            let cleanup = roll_back(&ctx).await;
            Err(match (err, cleanup) {
                (ClusterError::Interrupted(which, _), Ok(())) => {
                    ClusterError::Interrupted(which, "everything it had created was removed".into())
                }
                (ClusterError::Interrupted(which, _), Err(e)) => ClusterError::Interrupted(which, format!("cleaning up failed too: {e}")),
                (err, Ok(())) => err,
                (err, Err(e)) => ClusterError::Invalid(format!("{err}\n(cleaning up afterwards failed too: {e})")),
            })
        }
    }
}

/// The steps, in order; each gets what the ones before it made. Returns the nodes' mode.
async fn run_steps(ctx: &mut Ctx<'_>) -> Result<NodeMode> {
    let step = ctx.status.step("Creating nodes");
    let nodes = steps::provision::run(ctx).await?;
    step.done();

    let step = ctx.status.step("Starting control plane");
    let first = ctx.control_plane().name.clone();
    let joining: Vec<String> = ctx.nodes.iter().map(|n| n.name.clone()).filter(|n| *n != first).collect();
    let (init, ()) = tokio::join!(steps::kubeadm_init::run(ctx, &nodes), steps::warm::unpack_common_images(ctx.docker, &joining));
    let cluster = init?;
    step.done();

    if !ctx.opts.config.networking.disable_default_cni {
        let step = ctx.status.step("Installing pod network");
        steps::cni::run(ctx, &cluster).await?;
        step.done();
    }

    let step = ctx.status.step("Installing default storage");
    steps::storage::run(ctx, &nodes, &cluster).await?;
    step.done();

    if ctx.nodes.len() > 1 {
        let step = ctx.status.step("Joining nodes");
        steps::join::run(ctx, &nodes, &cluster).await?;
        step.done();
    }

    if let Some(spec) = ctx.opts.config.registry.clone() {
        let step = ctx.status.step("Connecting the local registry");
        steps::registry::run(ctx, &cluster, &spec).await?;
        step.done();
    }

    let step = ctx.status.step("Writing kubeconfig");
    steps::export_kubeconfig::run(ctx, &cluster).await?;
    step.done();

    if !ctx.opts.wait.is_zero() {
        let step = ctx.status.step("Waiting for Ready");
        steps::wait::run(ctx, &cluster).await?;
        step.done();
    }

    if !ctx.opts.config.addons.is_empty() {
        let step = ctx.status.step(format!("Installing add-ons: {}", ctx.opts.config.addons.join(", ")));
        steps::addons::run(ctx, &cluster).await?;
        step.done();
    }
    Ok(nodes.mode)
}

async fn interrupted() -> &'static str {
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Removes this run's containers and, if it had merged them, its kubeconfig entries. A second
/// signal during cleanup is ignored: stopping halfway would leave exactly the mess this prevents.
async fn roll_back(ctx: &Ctx<'_>) -> Result<()> {
    let step = ctx.status.step("Removing what this create made");
    let guard = tokio::spawn(async {
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        loop {
            tokio::select! {
                _ = async { if let Some(s) = int.as_mut() { s.recv().await } else { std::future::pending().await } } => {}
                _ = async { if let Some(s) = term.as_mut() { s.recv().await } else { std::future::pending().await } } => {}
            }
        }
    });
    let removed = sweep_settled(ctx.docker, &format!("{LABEL_CREATE_ID}={}", ctx.create_id)).await;
    let kube = match &ctx.kubeconfig_merged {
        Some(previous) => kubeconfig::unmerge_from_file(&ctx.opts.kubeconfig_path, &ctx.opts.name, previous.as_deref())
            .map(|_| ())
            .map_err(ClusterError::from),
        None => Ok(()),
    };
    guard.abort();
    removed?;
    kube?;
    step.done();
    Ok(())
}

/// How long a container create that was in flight when the signal came may take to land.
/// Dropping the request does not cancel it inside dockerd, so a sweep that only looks once can
/// run before the container exists (seen with the privileged probe).
const IN_FLIGHT_SETTLE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Removes every container carrying `label`, then looks again after [`IN_FLIGHT_SETTLE`] and
/// repeats until a look finds nothing.
async fn sweep_settled(docker: &Docker, label: &str) -> Result<()> {
    for _ in 0..4 {
        super::remove_containers(docker, label).await?;
        tokio::time::sleep(IN_FLIGHT_SETTLE).await;
        if docker.list_containers(label).await?.is_empty() {
            return Ok(());
        }
    }
    Err(ClusterError::Invalid(format!("containers labelled {label} keep appearing; remove them with `docker rm -f`")))
}

#[cfg(test)]
mod tests {
    use super::{exposure_warning, port_mapping_warning};

    #[test]
    fn warns_once_for_port_mappings_on_all_interfaces() {
        let config = |mappings: &str| -> crate::config::Cluster {
            crate::config::parse(
                &format!(
                    "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraPortMappings: {mappings}\n"
                ),
                "test",
            )
            .unwrap()
        };
        let open = port_mapping_warning(&config(
            "[{containerPort: 80, hostPort: 8080}, {containerPort: 443, hostPort: 8443, listenAddress: 127.0.0.1}]",
        ));
        let open = open.unwrap();
        assert!(open.contains("8080") && !open.contains("8443") && open.contains("listenAddress: 127.0.0.1"), "{open}");
        assert_eq!(port_mapping_warning(&config("[{containerPort: 80, hostPort: 8080, listenAddress: 127.0.0.1}]")), None);
        assert_eq!(port_mapping_warning(&config("[]")), None);
    }

    #[test]
    fn warns_only_when_the_api_server_leaves_loopback() {
        assert_eq!(exposure_warning("127.0.0.1"), None);
        assert_eq!(exposure_warning("::1"), None);
        assert!(exposure_warning("0.0.0.0").unwrap().contains("reachable from other machines"));
        assert!(exposure_warning("192.168.1.10").is_some());
    }
}
