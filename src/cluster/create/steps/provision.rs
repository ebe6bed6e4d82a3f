//! Step 1: the node containers. Decides the node mode, makes sure the network exists, creates
//! and starts every node at once, and waits for systemd in each.

use std::time::Duration;

use futures_util::future::try_join_all;

use super::{Ctx, PlannedNode, Provisioned};
use crate::cluster::{BootstrapError, ClusterError, HostError, Result};
use crate::config::Role;
use crate::runtime::{decide_mode, network, node_container_body, Lease, NodeMode, NodeSpec, Runtime, NETWORK_NAME};
use crate::wait::{self, Check, Ended};

/// systemd in a fresh node reaches `running` in 1–5 s; allow for a loaded machine.
const SYSTEMD_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Provisioned> {
    let first_image = ctx.plan.nodes[0].image.clone();
    let image = first_image.to_string();
    // From making sure the network is there until the containers holding their addresses run,
    // no other berth may choose addresses or remove the network.
    let (mode, (lease, subnet)) = tokio::try_join!(choose_mode(ctx, &first_image), async {
        let lease = Lease::network(ctx.docker, &image).await?;
        let subnet = ctx.docker.ensure_network(NETWORK_NAME, &lease).await?;
        Ok::<_, ClusterError>((lease, subnet))
    })?;
    tracing::info!("node mode: {mode}");
    let mut addresses = allocate_addresses(ctx, subnet).await?.into_iter();
    let mut names: Vec<String> = ctx.plan.nodes.iter().map(|n| n.name.clone()).collect();
    if ctx.is_ha() {
        names.push(super::loadbalancer::lb_name(&ctx.opts.name));
    }
    let network = subnet.map(|s| s.to_string());
    let proxies = crate::cluster::plan::proxy_env(&ctx.opts.config, |k| std::env::var(k).ok(), network.as_deref(), &names);
    let mut specs: Vec<NodeSpec> = ctx.plan.nodes.iter().map(|n| spec_for(ctx, n, mode, &proxies)).collect();
    for spec in &mut specs {
        spec.ip = addresses.next();
    }
    let lb_ip = addresses.next();
    let nodes = async {
        try_join_all(specs.iter().map(|s| ctx.docker.create_container(&s.name, node_container_body(s)))).await?;
        try_join_all(specs.iter().map(|s| ctx.docker.start_container(&s.name))).await?;
        Ok::<_, ClusterError>(())
    };
    let balancer = async {
        if ctx.is_ha() {
            super::loadbalancer::provision(ctx, mode, lb_ip.clone()).await?;
        }
        Ok::<_, ClusterError>(())
    };
    tokio::try_join!(nodes, balancer)?;
    lease.release().await?;
    try_join_all(ctx.plan.nodes.iter().map(|n| wait_for_systemd(ctx.docker, &n.name))).await?;

    let cp = ctx.control_plane().name.clone();
    let version = ctx.docker.exec_ok(&cp, &["cat", "/kind/version"]).await?;
    let mut node_ips = std::collections::BTreeMap::new();
    for n in &ctx.plan.nodes {
        node_ips.insert(n.name.clone(), ctx.docker.container_ip(&n.name, NETWORK_NAME).await?);
    }
    Ok(Provisioned {
        mode,
        version: crate::kubeadm::KubeVersion::parse(&version)?,
        cgroup: cgroup_version(ctx.docker, &cp).await?,
        node_ips,
        default_storage: super::storage::read_manifest(ctx.docker, &cp).await?,
        rootless: ctx.docker.rootless().await?,
    })
}

/// Fixed addresses for the nodes (and the load balancer), or none on a network without a
/// subnet of berth's (made by an older berth): then Docker assigns them, and berth warns.
async fn allocate_addresses(ctx: &mut Ctx<'_>, subnet: Option<crate::config::Cidr>) -> Result<Vec<String>> {
    let Some(subnet) = subnet else {
        ctx.warn(format!(
            "Docker network {NETWORK_NAME:?} has no subnet of berth's, so nodes get no fixed addresses and may not survive a restart; remove the network (docker network rm {NETWORK_NAME}) when no cluster uses it"
        ));
        return Ok(Vec::new());
    };
    let used = ctx.docker.used_addresses(NETWORK_NAME).await?;
    let count = ctx.plan.nodes.len() + usize::from(ctx.is_ha());
    let picked = network::allocate(subnet, &used, count).ok_or_else(|| HostError::NoAddresses { subnet: subnet.to_string(), count })?;
    Ok(picked.into_iter().map(|ip| ip.to_string()).collect())
}

async fn choose_mode(ctx: &Ctx<'_>, image: &crate::image_ref::ImageRef) -> Result<NodeMode> {
    let request = ctx.opts.mode_request;
    // Probes of creates that were killed outright (SIGKILL) are swept here: nothing else would.
    if let Err(e) = crate::runtime::sweep_orphaned_probes(ctx.docker).await {
        tracing::warn!("sweeping orphaned probe containers: {e}");
    }
    let probe = if request.needs_probe() {
        // Labelled with this create's id: roll-back removes it if an interrupt lands mid-probe.
        Some(ctx.docker.probe_privileged(&crate::registry::local_name(image), ctx.opts.runtime.as_deref(), &ctx.labels()).await?)
    } else {
        None
    };
    Ok(decide_mode(request, probe.as_ref())?)
}

fn spec_for(ctx: &Ctx<'_>, node: &PlannedNode, mode: NodeMode, proxies: &[String]) -> NodeSpec {
    let cfg = &ctx.opts.config;
    let is_first_cp = node.name == ctx.control_plane().name;
    NodeSpec {
        name: node.name.clone(),
        cluster: ctx.opts.name.clone(),
        role: node.role,
        image: crate::registry::local_name(&node.image),
        mode,
        network: NETWORK_NAME.to_string(),
        runtime: ctx.opts.runtime.clone(),
        // With several control planes the load balancer publishes the API server instead.
        api_server: (is_first_cp && node.role == Role::ControlPlane && !ctx.is_ha())
            .then(|| (cfg.api_server_address().to_string(), ctx.plan.api_server_port)),
        port_mappings: node.port_mappings.clone(),
        mounts: node.mounts.clone(),
        host_has_lib_modules: std::path::Path::new("/lib/modules").is_dir(),
        labels: ctx.labels(),
        ip: None,
        runtime_cni: !cfg.networking.disable_default_cni,
        dns_search: cfg.networking.dns_search.clone(),
        extra_env: proxies.to_vec(),
        service_subnet: (cfg.kube_proxy_mode() != crate::config::ProxyMode::None).then(|| cfg.service_subnet().to_string()),
    }
}

pub(crate) async fn wait_for_systemd(docker: &dyn Runtime, node: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SYSTEMD_TIMEOUT;
    let what = format!("{node}: systemd finished booting");
    let booted = wait::until(&what, deadline, Duration::from_millis(250), wait::poll_only(), || async {
        let state = match docker.exec(node, &["systemctl", "is-system-running"]).await {
            Ok(out) => out.stdout.trim().to_string(),
            Err(e) => return Check::Failed(e),
        };
        let containerd = docker.exec(node, &["test", "-S", "/run/containerd/containerd.sock"]).await.is_ok_and(|o| o.code == 0);
        if matches!(state.as_str(), "running" | "degraded") && containerd {
            Check::Done(state)
        } else {
            Check::NotYet(format!("state {state:?}"))
        }
    })
    .await;
    match booted {
        Ok(state) if state == "degraded" => {
            let failed = docker.exec(node, &["systemctl", "--failed", "--no-legend", "--plain"]).await?.stdout;
            tracing::warn!("{node}: systemd is degraded; failed units: {}", failed.trim());
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(Ended::Failed(e)) => Err(e.into()),
        Err(Ended::Timeout(t)) => {
            let logs = docker.logs_tail(node, 30).await.unwrap_or_default();
            Err(ClusterError::from(BootstrapError::NotReady { what: t.to_string(), details: format!("container log:\n{logs}") }))
        }
    }
}

/// The node's cgroup hierarchy, as its entrypoint saw it when it chose containerd's driver.
async fn cgroup_version(docker: &dyn Runtime, node: &str) -> Result<crate::kubeadm::CgroupVersion> {
    let fs = docker.exec_ok(node, &["stat", "-fc", "%T", "/sys/fs/cgroup"]).await?;
    Ok(crate::kubeadm::CgroupVersion::from_fs_type(&fs))
}
