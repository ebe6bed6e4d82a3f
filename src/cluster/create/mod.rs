//! `create cluster`: checks everything that can be checked before touching Docker, then runs
//! the steps in order. If a step fails, or SIGINT/SIGTERM/SIGHUP arrives, everything this run created
//! is removed (unless `--retain`): its containers are found by a label unique to this run, so a
//! concurrent create of the same name never loses its nodes to our cleanup.
//!
//! This room holds all of create: the options (`options.rs`), the plan of nodes and addresses
//! (`plan.rs`), the rendered kubeadm documents and `--dry-run` (`render.rs`) and the named steps
//! (`steps/`), which `create node` and restore reuse.

pub mod options;
pub mod plan;
pub mod render;
pub(crate) mod steps;

use std::path::PathBuf;

use super::{ClusterError, HostError, ImageError, Operation, Result};
use crate::config;
use crate::image_ref::ImageRef;
use crate::kubeconfig;
use crate::runtime::endpoint::Provider;
use crate::runtime::{NodeMode, Runtime, LABEL_CLUSTER};
use crate::ui::Status;
use options::CreateOptions;
use steps::{ensure_image, Ctx, Plan, LABEL_CREATE_ID};

#[derive(Debug, Clone)]
pub struct CreateReport {
    pub context: String,
    pub kubeconfig_path: PathBuf,
    pub mode: NodeMode,
    pub warnings: Vec<String>,
}

/// Everything checkable before anything is created (pulls included: a failed pull leaves
/// nothing behind). Returns the plan, and warnings about what the rendering found.
async fn preflight(docker: &dyn Runtime, opts: &CreateOptions, status: &Status) -> Result<(Plan, Vec<String>)> {
    config::validate_cluster_name(&opts.name)
        .map_err(|problem| ClusterError::InvalidInput { field: "--name".into(), problem: problem.to_string() })?;
    check_kubeconfig_and_daemon(docker, &opts.kubeconfig_path).await?;
    if opts.config.control_planes().count() > 1 && !docker.image_exists(&opts.lb_image).await? {
        return Err(ClusterError::from(ImageError::LoadBalancerMissing(opts.lb_image.clone())));
    }
    let problems = crate::host_ports::check(&opts.config);
    if !problems.is_empty() {
        return Err(ClusterError::InvalidInput { field: "extraPortMappings".into(), problem: problems.join("; ") });
    }
    if !docker.list_containers(&format!("{LABEL_CLUSTER}={}", opts.name)).await?.is_empty() {
        return Err(ClusterError::Exists(opts.name.clone()));
    }
    if let Some(registry) = &opts.config.registry {
        crate::registry::check_local_registry(docker, registry.port.unwrap_or(crate::registry::DEFAULT_REGISTRY_PORT)).await?;
    }
    let plan = plan::make(opts)?;
    let mut images: Vec<&ImageRef> = Vec::new();
    for node in &plan.nodes {
        if !images.contains(&&node.image) {
            images.push(&node.image);
        }
    }
    for image in images {
        ensure_image(docker, image, opts.pull, status).await?;
    }
    // Every node's kubeadm config, patches applied, before any container exists: a patch that
    // cannot apply is refused now, not after the control plane is up.
    let mut warnings = Vec::new();
    if let Some(version) = render::version_of(Some(docker), &plan).await {
        warnings = render::render(opts, &plan, version)?.warnings;
    }
    warnings.extend(podman_beside_docker_warning(docker.provider(), crate::runtime::endpoint::default_socket().exists()));
    Ok((plan, warnings))
}

/// What every create and restore checks first: the kubeconfig is not locked by another writer,
/// and the daemon runs on this machine.
pub(super) async fn check_kubeconfig_and_daemon(docker: &dyn Runtime, kubeconfig_path: &std::path::Path) -> Result<()> {
    // It may wait a moment for a writer's lock: off the async workers, so a signal still lands.
    let path = kubeconfig_path.to_path_buf();
    tokio::task::spawn_blocking(move || kubeconfig::check_unlocked(&path))
        .await
        .map_err(|e| ClusterError::Io { context: "checking the kubeconfig lock".into(), source: std::io::Error::other(e) })??;
    if docker.is_remote() {
        return Err(ClusterError::from(HostError::RemoteDaemon(
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the current docker context".into()),
        )));
    }
    if docker.rootless().await? {
        let problems = crate::rootless::unmet(&crate::rootless::Host::current());
        if !problems.is_empty() {
            return Err(ClusterError::from(HostError::RootlessHost { engine: docker.provider().display_name(), problems }));
        }
    }
    Ok(())
}

/// Where dockerd runs beside Podman, Docker's FORWARD policy (DROP, with bridged traffic passed
/// through iptables) drops pod traffic between Podman's nodes, which Podman's own rules do not
/// accept: say so, with the rule that lets it pass. (berth cannot see the host's iptables.)
fn podman_beside_docker_warning(provider: Provider, docker_socket_exists: bool) -> Option<String> {
    (provider == Provider::Podman && docker_socket_exists).then(|| {
        "Docker runs on this host too: its iptables FORWARD policy (DROP) may drop pod traffic between nodes on Podman's bridge; if pods on different nodes cannot reach each other, allow it: sudo iptables -I DOCKER-USER -i 'podman+' -o 'podman+' -j ACCEPT".to_string()
    })
}

/// inotify instances a node's kubelet, containerd, systemd and control plane hold (measured on
/// a control plane: about 30; a worker needs fewer).
const INOTIFY_PER_NODE: usize = 30;

/// A warning when this machine's inotify instance limit (one for all of root's processes, every
/// node's included) is likely spent once this cluster runs: then components fail with "too many
/// open files" (kube-proxy first). Reads the host's limit, so it only speaks for a local daemon.
fn inotify_warning(limit: Option<usize>, nodes_running: usize, nodes_new: usize) -> Option<String> {
    let limit = limit?;
    let needed = (nodes_running + nodes_new) * INOTIFY_PER_NODE;
    (needed > limit * 9 / 10).then(|| {
        format!(
            "fs.inotify.max_user_instances is {limit}, and {} berth nodes will need about {needed}: components may fail with \"too many open files\"; raise it with: sudo sysctl fs.inotify.max_user_instances=512",
            nodes_running + nodes_new
        )
    })
}

fn inotify_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").ok()?.trim().parse().ok()
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
        .map(|m| m.host_port.map_or_else(|| format!("(a free port)->{}", m.container_port), |p| p.to_string()))
        .collect();
    (!open.is_empty()).then(|| {
        format!(
            "extraPortMappings publish host port(s) {} on all interfaces, reachable from other machines; set listenAddress: 127.0.0.1 to keep them local",
            open.join(", ")
        )
    })
}

fn create_id() -> String {
    crate::ids::unique("create")
}

/// Creates the cluster described by `opts`; SIGINT or SIGTERM stops it and removes what it made.
pub async fn create(docker: &dyn Runtime, opts: &CreateOptions, status: &Status) -> Result<CreateReport> {
    create_until(docker, &crate::kube::Dial, opts, status, crate::interrupt::interrupted()).await
}

/// [`create`] with its seams open: the cluster's API is reached through `api`, and whatever
/// `interrupt` resolves to (the signal's name) stops it — so unit tests can run a create on a
/// fake API and interrupt it at a moment of their choosing.
async fn create_until(
    docker: &dyn Runtime,
    api: &dyn crate::kube::Connect,
    opts: &CreateOptions,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<CreateReport> {
    tokio::pin!(interrupt);
    // Preflight makes nothing (a pull lands whole or not at all), so an interrupt here just stops.
    let (plan, render_warnings) = Operation::Create.unless_interrupted(&mut interrupt, preflight(docker, opts, status)).await?;
    let mut ctx =
        Ctx { docker, api, opts, status, create_id: create_id(), plan, warnings: Vec::new(), kubeconfig_merge: Default::default() };
    let running = docker.list_containers(crate::runtime::LABEL_ROLE).await.map(|c| c.iter().filter(|c| c.running()).count()).unwrap_or(0);
    let inotify = inotify_warning(inotify_limit(), running, ctx.plan.nodes.len());
    let general = [exposure_warning(opts.config.api_server_address()), port_mapping_warning(&opts.config), inotify];
    for warning in general.into_iter().flatten().chain(render_warnings) {
        ctx.warn(warning);
    }
    let outcome = Operation::Create.unless_interrupted(&mut interrupt, run_steps(&mut ctx)).await;
    let outcome = match outcome {
        Err(err) if opts.retain => {
            status.warn(format!(
                "--retain: leaving the nodes of {:?} for inspection; `berth delete cluster --name {}` removes them",
                opts.name, opts.name
            ));
            return Err(err);
        }
        outcome => outcome,
    };
    let image = ctx.plan.nodes[0].image.to_string();
    let undo = || undo(docker, status, &image, &ctx.create_id, &opts.kubeconfig_path, &opts.name, &ctx.kubeconfig_merge);
    let mode = Operation::Create.finish(outcome, undo, EVERYTHING_REMOVED).await?;
    Ok(CreateReport {
        context: kubeconfig::context_name(&opts.name),
        kubeconfig_path: opts.kubeconfig_path.clone(),
        mode,
        warnings: ctx.warnings,
    })
}

/// What a create's or restore's undo leaves.
pub(super) const EVERYTHING_REMOVED: &str = "everything it had created was removed";

/// The steps, in order; each gets what the ones before it made. Returns the nodes' mode.
async fn run_steps(ctx: &mut Ctx<'_>) -> Result<NodeMode> {
    let step = ctx.status.step("Creating nodes");
    let nodes = steps::provision::run(ctx).await?;
    step.done();
    if nodes.cgroup == crate::kubeadm::CgroupVersion::V1 {
        if let Some(warning) = crate::kubeadm::cgroup_v1_warning(nodes.version) {
            ctx.warn(warning);
        }
    }

    let cfg = &ctx.opts.config;
    if !cfg.containerd_config_patches.is_empty() || !cfg.containerd_config_patches_json6902.is_empty() {
        let step = ctx.status.step("Configuring containerd");
        steps::containerd::run(ctx).await?;
        step.done();
    }

    let step = ctx.status.step("Starting control plane");
    let first = ctx.control_plane().name.clone();
    let joining: Vec<String> = ctx.plan.nodes.iter().map(|n| n.name.clone()).filter(|n| *n != first).collect();
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

    if ctx.plan.nodes.len() > 1 {
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

/// Removes this run's containers and volumes, and berth's network if nothing else is on it,
/// and takes back its kubeconfig merge (the file as it was, or, if someone wrote it since,
/// without this cluster's entries). `image` is a local image for the network lease.
pub(super) async fn undo(
    docker: &dyn Runtime,
    status: &Status,
    image: &str,
    create_id: &str,
    kubeconfig_path: &std::path::Path,
    cluster: &str,
    kubeconfig_merge: &kubeconfig::MergeRecord,
) -> Result<()> {
    let step = status.step("Removing what this create made");
    let label = format!("{LABEL_CREATE_ID}={create_id}");
    let removed = sweep_settled(docker, &label).await;
    // Volumes go after the containers that use them.
    let volumes = docker.remove_volumes(&label).await.map(|_| ()).map_err(ClusterError::from);
    let kube = kubeconfig_merge.take_back(kubeconfig_path, cluster).map_err(ClusterError::from);
    if removed.is_ok() {
        super::remove_network_if_unused(docker, image).await;
    }
    removed?;
    volumes?;
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
pub(super) async fn sweep_settled(docker: &dyn Runtime, label: &str) -> Result<()> {
    for _ in 0..4 {
        super::remove_containers(docker, label).await?;
        tokio::time::sleep(IN_FLIGHT_SETTLE).await;
        if docker.list_containers(label).await?.is_empty() {
            return Ok(());
        }
    }
    Err(ClusterError::KeepsAppearing(label.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{exposure_warning, podman_beside_docker_warning, port_mapping_warning, Provider};

    #[test]
    fn podman_beside_dockerd_gets_the_rule_that_lets_pod_traffic_pass() {
        let warning = podman_beside_docker_warning(Provider::Podman, true).unwrap();
        assert!(warning.contains("iptables -I DOCKER-USER -i 'podman+' -o 'podman+' -j ACCEPT"), "{warning}");
        assert_eq!(podman_beside_docker_warning(Provider::Podman, false), None, "Podman alone");
        assert_eq!(podman_beside_docker_warning(Provider::Docker, true), None, "Docker's own bridges are Docker's business");
    }

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
    fn warns_when_the_inotify_limit_will_not_stretch() {
        assert_eq!(super::inotify_warning(Some(512), 4, 1), None);
        let w = super::inotify_warning(Some(128), 3, 2).unwrap();
        assert!(w.contains("max_user_instances is 128") && w.contains("sysctl fs.inotify.max_user_instances=512"), "{w}");
        assert_eq!(super::inotify_warning(Some(128), 0, 1), None, "one node fits");
        assert_eq!(super::inotify_warning(None, 10, 10), None, "unknown: no guess");
    }

    #[test]
    fn warns_only_when_the_api_server_leaves_loopback() {
        assert_eq!(exposure_warning("127.0.0.1"), None);
        assert_eq!(exposure_warning("::1"), None);
        assert!(exposure_warning("0.0.0.0").unwrap().contains("reachable from other machines"));
        assert!(exposure_warning("192.168.1.10").is_some());
    }

    mod with_a_fake_runtime {
        //! create's planning, provisioning and roll-back against the in-memory runtime: its
        //! kubeadm fails, so every create here stops after `kubeadm init` and rolls back.

        use super::super::*;
        use crate::cluster::PullPolicy;
        use crate::runtime::fake::FakeRuntime;
        use crate::runtime::ModeRequest;

        const IMAGE: &str = "berth-test/node:v1.20.2";

        fn options(config: config::Cluster, kubeconfig: &std::path::Path) -> CreateOptions {
            CreateOptions {
                name: "fake".into(),
                config,
                image: IMAGE.into(),
                wait: std::time::Duration::from_secs(60),
                retain: false,
                kubeconfig_path: kubeconfig.to_path_buf(),
                mode_request: ModeRequest::Auto,
                runtime: None,
                lb_image: "berth-test/haproxy:1".into(),
                pull: PullPolicy::Never,
            }
        }

        fn ha_config() -> config::Cluster {
            let text =
                "kind: Cluster\napiVersion: berth.dev/v1alpha1\nnodes:\n- role: control-plane\n- role: control-plane\n- role: worker\n";
            config::parse(text, "test").unwrap()
        }

        #[tokio::test(start_paused = true)]
        async fn a_failed_init_removes_every_container_and_leaves_the_kubeconfig_alone() {
            let dir = tempfile::tempdir().unwrap();
            let kc = dir.path().join("config");
            let fake = FakeRuntime::with_images(&[IMAGE]);
            let err = create(&fake, &options(config::Cluster::default_config(), &kc), &Status::quiet()).await.unwrap_err();
            assert!(matches!(err, ClusterError::Bootstrap(crate::cluster::BootstrapError::KubeadmFailed { phase: "init", .. })), "{err}");
            assert!(err.to_string().contains("fails on purpose"), "kubeadm's words are in the error: {err}");
            let calls = fake.calls();
            assert!(calls.contains(&"create fake-control-plane".to_string()), "{calls:#?}");
            assert!(fake.containers().is_empty(), "left behind: {:?}", fake.containers().keys());
            assert!(!kc.exists(), "the kubeconfig was never touched");
        }

        #[tokio::test(start_paused = true)]
        async fn an_interrupt_during_init_removes_every_container() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE, "berth-test/haproxy:1"]);
            fake.kubeadm_takes(std::time::Duration::from_secs(600));
            let interrupt = async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "SIGINT"
            };
            let err =
                create_until(&fake, &crate::kube::Dial, &options(ha_config(), &dir.path().join("config")), &Status::quiet(), interrupt)
                    .await
                    .unwrap_err();
            assert!(
                matches!(&err, ClusterError::Interrupted { operation: crate::cluster::Operation::Create, signal: "SIGINT", outcome: detail } if detail.contains("removed")),
                "{err}"
            );
            assert!(fake.calls().iter().any(|c| c.contains("kubeadm init")), "interrupted while init ran: {:#?}", fake.calls());
            assert!(fake.containers().is_empty(), "left behind: {:?}", fake.containers().keys());
        }

        #[tokio::test(start_paused = true)]
        async fn an_interrupt_that_came_before_the_first_step_makes_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE]);
            let opts = options(config::Cluster::default_config(), &dir.path().join("config"));
            let err = create_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), async { "SIGTERM" }).await.unwrap_err();
            assert!(
                matches!(&err, ClusterError::Interrupted { operation: crate::cluster::Operation::Create, signal: "SIGTERM", outcome: detail } if detail.contains("nothing had been made")),
                "{err}"
            );
            assert!(fake.calls().is_empty(), "{:#?}", fake.calls());
        }

        #[tokio::test(start_paused = true)]
        async fn retain_keeps_the_nodes_of_a_failed_create() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE]);
            let opts = CreateOptions { retain: true, ..options(config::Cluster::default_config(), &dir.path().join("config")) };
            create(&fake, &opts, &Status::quiet()).await.unwrap_err();
            assert_eq!(fake.containers().keys().collect::<Vec<_>>(), ["fake-control-plane"]);
            // Only the network lease is given back.
            assert!(!fake.calls().iter().any(|c| c.starts_with("remove") && !c.contains("berth-lease-")), "{:#?}", fake.calls());
        }

        #[tokio::test(start_paused = true)]
        async fn roll_back_also_removes_a_container_whose_create_landed_late() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE]);
            fake.land_a_ghost_after_the_first_removal();
            create(&fake, &options(config::Cluster::default_config(), &dir.path().join("config")), &Status::quiet()).await.unwrap_err();
            assert!(fake.calls().contains(&"remove ghost-from-an-in-flight-create".to_string()), "{:#?}", fake.calls());
            assert!(fake.containers().is_empty(), "left behind: {:?}", fake.containers().keys());
            assert!(fake.networks().is_empty(), "the network this create made is left");
        }

        #[tokio::test(start_paused = true)]
        async fn a_taken_name_is_refused_before_anything_is_made() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE]);
            fake.add_container("fake-control-plane", &[(LABEL_CLUSTER, "fake")]);
            let err =
                create(&fake, &options(config::Cluster::default_config(), &dir.path().join("config")), &Status::quiet()).await.unwrap_err();
            assert!(matches!(&err, ClusterError::Exists(name) if name == "fake"), "{err}");
            assert!(fake.calls().is_empty(), "nothing made or run: {:#?}", fake.calls());
            assert_eq!(fake.containers().len(), 1, "the other cluster's node is untouched");
        }

        #[tokio::test(start_paused = true)]
        async fn a_missing_image_under_pull_never_makes_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[]);
            let err =
                create(&fake, &options(config::Cluster::default_config(), &dir.path().join("config")), &Status::quiet()).await.unwrap_err();
            assert!(matches!(&err, ClusterError::Image(ImageError::Missing(image)) if image == IMAGE), "{err}");
            assert!(fake.calls().is_empty(), "{:#?}", fake.calls());
        }

        #[tokio::test(start_paused = true)]
        async fn ha_plans_a_balancer_pinned_addresses_and_inits_on_the_first_control_plane_only() {
            let dir = tempfile::tempdir().unwrap();
            let fake = FakeRuntime::with_images(&[IMAGE, "berth-test/haproxy:1"]);
            let mut made = std::collections::BTreeMap::new();
            // Look at what provision made before roll-back removes it: retain keeps it.
            let opts = CreateOptions { retain: true, ..options(ha_config(), &dir.path().join("config")) };
            create(&fake, &opts, &Status::quiet()).await.unwrap_err();
            for (name, c) in fake.containers() {
                made.insert(name, c);
            }
            let names: Vec<&String> = made.keys().collect();
            assert_eq!(names, ["fake-control-plane", "fake-control-plane2", "fake-external-load-balancer", "fake-worker"]);
            let ips: std::collections::BTreeSet<&str> = made.values().filter_map(|c| c.ip.as_deref()).collect();
            assert_eq!(ips.len(), 4, "every container has an address of its own: {ips:?}");
            assert!(
                ips.iter().all(|ip| ip.starts_with("172.30.") && ip.split('.').nth(2).unwrap().parse::<u8>().unwrap() >= 128),
                "upper half: {ips:?}"
            );
            let haproxy =
                String::from_utf8(made["fake-external-load-balancer"].files[steps::loadbalancer::LB_CONFIG_PATH].clone()).unwrap();
            assert!(
                haproxy.contains("server fake-control-plane fake-control-plane:6443") && haproxy.contains("server fake-control-plane2 ")
            );
            let inits: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("exec ") && c.contains("kubeadm init")).collect();
            assert_eq!(inits.len(), 1, "{inits:?}");
            assert!(inits[0].starts_with("exec fake-control-plane: kubeadm init") && inits[0].contains("--upload-certs"), "{inits:?}");
            let config = String::from_utf8(made["fake-control-plane"].files[steps::kubeadm_init::KUBEADM_CONFIG_PATH].clone()).unwrap();
            assert!(config.contains("controlPlaneEndpoint: fake-external-load-balancer:6443"), "{config}");
            assert!(!config.contains("taints: []"), "with a worker the control planes keep kubeadm's taint");
        }
    }

    mod with_a_fake_api {
        //! Whole creates, on the in-memory runtime (whose kubeadm succeeds) and the in-memory API
        //! server: which steps run, which are skipped, and the order nodes join in.

        use std::sync::Arc;

        use super::super::*;
        use crate::cluster::steps::kubeadm_init::KUBEADM_CONFIG_PATH;
        use crate::cluster::PullPolicy;
        use crate::kube::fake::{FakeApi, Seen};
        use crate::runtime::fake::FakeRuntime;
        use crate::runtime::ModeRequest;

        const IMAGE: &str = "berth-test/node:v1.20.2";
        const LB_IMAGE: &str = "berth-test/haproxy:1";

        fn options(config_text: &str, kubeconfig: &std::path::Path, wait_secs: u64) -> CreateOptions {
            CreateOptions {
                name: "fake".into(),
                config: config::parse(config_text, "test").unwrap(),
                image: IMAGE.into(),
                wait: std::time::Duration::from_secs(wait_secs),
                retain: false,
                kubeconfig_path: kubeconfig.to_path_buf(),
                mode_request: ModeRequest::Auto,
                runtime: None,
                lb_image: LB_IMAGE.into(),
                pull: PullPolicy::Never,
            }
        }

        /// Nodes with the given roles; the fake image carries no CNI manifest, so the pod network
        /// is off unless a test is about it.
        fn config_of(roles: &[&str], extra: &str) -> String {
            let nodes: String = roles.iter().map(|r| format!("- role: {r}\n")).collect();
            format!("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n{extra}nodes:\n{nodes}")
        }

        /// An API that has signed cluster-info for the token init was given, and in which every
        /// node kubeadm was configured on is registered and Ready.
        fn api_for(fake: &Arc<FakeRuntime>) -> FakeApi {
            let fake = Arc::clone(fake);
            FakeApi::new(move || {
                let rendered: Vec<(String, String)> = fake
                    .containers()
                    .into_iter()
                    .filter_map(|(name, c)| Some((name, String::from_utf8(c.files.get(KUBEADM_CONFIG_PATH)?.clone()).ok()?)))
                    .collect();
                let signed_token_id = rendered.iter().find_map(|(_, conf)| {
                    conf.lines().find_map(|l| Some(l.trim().strip_prefix("token: ")?.split('.').next()?.to_string()))
                });
                Seen {
                    signed_token_id,
                    nodes: rendered.into_iter().map(|(name, _)| name).collect(),
                    not_ready: false,
                    leases: Vec::new(),
                    fresh: false,
                    lease_holder: None,
                }
            })
        }

        /// The position of the first call starting with `prefix`.
        fn at(calls: &[String], prefix: &str) -> usize {
            calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
        }

        async fn run(fake: &Arc<FakeRuntime>, api: &FakeApi, opts: &CreateOptions) -> Result<CreateReport> {
            create_until(fake.as_ref(), api, opts, &Status::quiet(), std::future::pending()).await
        }

        #[tokio::test(start_paused = true)]
        async fn one_node_with_wait_zero_skips_joins_cni_and_waits_and_writes_the_kubeconfig() {
            let dir = tempfile::tempdir().unwrap();
            let kc = dir.path().join("config");
            let fake = Arc::new(FakeRuntime::healthy(&[IMAGE]));
            let api = api_for(&fake);
            let report = run(&fake, &api, &options(&config_of(&["control-plane"], ""), &kc, 0)).await.unwrap();
            assert_eq!(report.context, "berth-fake");
            let calls = fake.calls();
            assert!(!calls.iter().any(|c| c.contains("kubeadm join")), "{calls:#?}");
            assert!(!calls.iter().any(|c| c.contains("/kind/manifests/default-cni")), "disableDefaultCNI: {calls:#?}");
            let requests = api.requests();
            assert!(!requests.iter().any(|r| r.contains("cluster-info")), "no joins, no wait for cluster-info: {requests:#?}");
            assert!(!requests.iter().any(|r| r.starts_with("GET /api/v1/nodes")), "--wait 0 waits for no node: {requests:#?}");
            assert!(
                requests.iter().any(|r| r.starts_with("PATCH /api/v1/nodes/fake-control-plane")),
                "the lone control plane loses the exclude-from-external-load-balancers label: {requests:#?}"
            );
            assert!(report.warnings.iter().any(|w| w.contains("carries no default StorageClass")), "{:?}", report.warnings);
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777, 0o600);
            let written: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
            assert_eq!(written["current-context"].as_str(), Some("berth-fake"));
            assert_eq!(written["clusters"][0]["cluster"]["server"].as_str(), Some("https://127.0.0.1:40000"));
        }

        #[tokio::test(start_paused = true)]
        async fn wait_checks_every_node_and_kube_proxy_unless_kube_proxy_is_off() {
            let dir = tempfile::tempdir().unwrap();
            let fake = Arc::new(FakeRuntime::healthy(&[IMAGE]));
            let api = api_for(&fake);
            run(&fake, &api, &options(&config_of(&["control-plane", "worker"], ""), &dir.path().join("a"), 60)).await.unwrap();
            let requests = api.requests();
            assert!(requests.iter().any(|r| r.starts_with("GET /api/v1/nodes?")), "{requests:#?}");
            assert!(requests.iter().any(|r| r.contains("daemonsets/kube-proxy")), "{requests:#?}");
            assert!(!requests.iter().any(|r| r.starts_with("PATCH /api/v1/nodes/")), "with a worker, no label is removed");

            let fake = Arc::new(FakeRuntime::healthy(&[IMAGE]));
            let api = api_for(&fake);
            let opts = options(&config_of(&["control-plane"], "  kubeProxyMode: none\n"), &dir.path().join("b"), 60);
            run(&fake, &api, &opts).await.unwrap();
            assert!(!api.requests().iter().any(|r| r.contains("kube-proxy")), "{:#?}", api.requests());
        }

        /// The user's kubeconfig before create: their context, current.
        const USERS: &str = "apiVersion: v1\nkind: Config\nclusters: [{name: keep, cluster: {server: 'https://keep.example:6443'}}]\nusers: [{name: keep, user: {token: t}}]\ncontexts: [{name: keep, context: {cluster: keep, user: keep}}]\ncurrent-context: keep\n";

        /// SIGINT at every step of a create with a worker and a containerd patch — each step
        /// found by what it does — removes every container and leaves the user's kubeconfig as
        /// it was (the e2e test does the same on real clusters for the steps of a default create).
        #[tokio::test(start_paused = true)]
        async fn an_interrupt_at_every_step_leaves_nothing() {
            type Hit = Box<dyn Fn(&FakeRuntime, &FakeApi, &std::path::Path) -> bool + Send + Sync>;
            let calls_have = |marker: &'static str| -> Hit { Box::new(move |f, _, _| f.calls().iter().any(|c| c.starts_with(marker))) };
            let steps: Vec<(&str, Hit)> = vec![
                ("Creating nodes", calls_have("create fake-control-plane")),
                ("Configuring containerd", calls_have("exec fake-worker: systemctl restart containerd")),
                ("Starting control plane", calls_have("exec fake-control-plane: kubeadm init")),
                ("Joining nodes", calls_have("exec fake-worker: kubeadm join")),
                ("Writing kubeconfig", Box::new(|_, _, kc| std::fs::read_to_string(kc).is_ok_and(|t| t.contains("berth-fake")))),
                ("Waiting for Ready", Box::new(|_, api, _| api.requests().iter().any(|r| r.starts_with("GET /api/v1/nodes")))),
            ];
            let extra = "containerdConfigPatches: ['[plugins.x]']\n";
            for (step, hit) in steps {
                let dir = tempfile::tempdir().unwrap();
                let kc = dir.path().join("config");
                std::fs::write(&kc, USERS).unwrap();
                let fake = Arc::new(FakeRuntime::healthy(&[IMAGE]));
                fake.kubeadm_takes(std::time::Duration::from_secs(5));
                let api = api_for(&fake);
                let stuck = api.clone();
                let api = FakeApi::new(move || Seen { not_ready: true, ..stuck.seen() });
                let interrupt = {
                    let (fake, api, kc) = (Arc::clone(&fake), api.clone(), kc.clone());
                    async move {
                        while !hit(&fake, &api, &kc) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        "SIGINT"
                    }
                };
                let opts = options(&config_of(&["control-plane", "worker"], extra), &kc, 60);
                let err = create_until(fake.as_ref(), &api, &opts, &Status::quiet(), interrupt).await.unwrap_err();
                assert!(
                    matches!(&err, ClusterError::Interrupted { operation: crate::cluster::Operation::Create, signal: "SIGINT", .. }),
                    "{step}: {err}"
                );
                assert!(fake.containers().is_empty(), "{step}: left {:?}", fake.containers().keys());
                assert!(fake.networks().is_empty(), "{step}: the network this create made is left");
                let now: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
                assert_eq!(now, serde_yaml::from_str::<serde_yaml::Value>(USERS).unwrap(), "{step}: the kubeconfig is not as it was");
            }
        }

        #[tokio::test(start_paused = true)]
        async fn ha_joins_control_planes_one_at_a_time_after_cluster_info_then_workers_together() {
            let dir = tempfile::tempdir().unwrap();
            let fake = Arc::new(FakeRuntime::healthy(&[IMAGE, LB_IMAGE]));
            fake.kubeadm_takes(std::time::Duration::from_secs(10));
            let api = api_for(&fake);
            let roles = ["control-plane", "control-plane", "control-plane", "worker", "worker"];
            run(&fake, &api, &options(&config_of(&roles, ""), &dir.path().join("config"), 0)).await.unwrap();
            let calls = fake.calls();
            let init_done = at(&calls, "exited fake-control-plane: kubeadm init");
            let [cp2, cp2_done, cp3, cp3_done, w1, w2, w1_done, w2_done] = [
                "exec fake-control-plane2: kubeadm join",
                "exited fake-control-plane2: kubeadm join",
                "exec fake-control-plane3: kubeadm join",
                "exited fake-control-plane3: kubeadm join",
                "exec fake-worker: kubeadm join",
                "exec fake-worker2: kubeadm join",
                "exited fake-worker: kubeadm join",
                "exited fake-worker2: kubeadm join",
            ]
            .map(|p| at(&calls, p));
            assert!(init_done < cp2 && cp2_done < cp3 && cp3_done < w1, "control planes join one after another: {calls:#?}");
            assert!(w1.max(w2) < w1_done.min(w2_done), "workers join at the same time: {calls:#?}");
            let requests = api.requests();
            assert!(requests.iter().any(|r| r.contains("configmaps/cluster-info")), "joins wait for cluster-info: {requests:#?}");
            let joins = calls.iter().filter(|c| c.contains("kubeadm join")).count();
            assert_eq!(joins, 8, "four joins, each started and exited once: {calls:#?}");
            // Joins pin the key of the CA init wrote, hashed from ca.crt (not read off kubeadm's
            // output, whose fake here names another hash).
            let ca = include_bytes!("../../../tests/testdata/snapshot/apiserver.crt");
            let hash = crate::kubeadm::ca_cert_hash(ca).unwrap();
            let config =
                String::from_utf8(fake.containers()["fake-worker"].files[crate::cluster::steps::kubeadm_init::KUBEADM_CONFIG_PATH].clone())
                    .unwrap();
            assert!(config.contains(&hash) && !config.contains("0a1b2c3d"), "{config}");
        }
    }
}
