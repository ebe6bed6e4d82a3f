//! `create cluster --from-snapshot`: a cluster from a snapshot (`snapshot.rs`), as named steps.
//!
//! ```text
//! check (nothing made) ──▶ node_volumes (spares claimed, else empty volumes) ──▶
//!   start_nodes(control planes) ──▶ start_nodes(workers) ──▶ kubeconfig merged ──▶
//!   waits: /readyz ──▶ stale leader leases released ──▶ nodes freshly Ready ──▶
//!   controllers running, meanwhile the next spares made
//! (start_nodes: copy_volumes where no spare was claimed ──▶ containers created and started)
//! ```
//!
//! The control planes come back at once, then the workers at once, under their saved names,
//! addresses and host config (so the API server keeps its port, and certificates, etcd's
//! membership and kubeadm's config stay valid), each on a fresh copy of its saved `/var`: two
//! restores of one snapshot share no file that either may write — only containerd's image
//! layers, which nothing writes, are hard-linked from the snapshot instead of copied (most of a
//! node's /var; see `volume_copy.rs`). The copy is normally made before the restore asks
//! for it: a spare (`spare.rs`). Conflicts are found before anything is made; a failure or
//! SIGINT/SIGTERM afterwards removes what this restore made, volumes and claimed spares
//! included, and leaves the kubeconfig as it was — the same undo as create.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures_util::future::try_join_all;

use super::spare;
use super::volume_copy::VolumeCopy;
use super::{SavedNode, Snapshot, SnapshotError, LABEL_RESTORED_FROM};
use crate::cluster::create::{undo, CreateReport, EVERYTHING_REMOVED};
use crate::cluster::steps::LABEL_CREATE_ID;
use crate::cluster::{ClusterError, NodeRole, Operation, Result};
use crate::kubeconfig;
use crate::runtime::{
    restored_node_body, ContainerBody, Lease, NodeMode, RestoredNodeSpec, Runtime, LABEL_CLUSTER, LABEL_MEMBERS, LABEL_ROLE, NETWORK_NAME,
};
use crate::ui::Status;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub snapshot: String,
    /// The cluster name asked for; it must be the snapshot's (None: the snapshot's).
    pub name: Option<String>,
    pub wait: Duration,
    pub kubeconfig_path: PathBuf,
}

/// Restores `opts.snapshot`; SIGINT or SIGTERM stops it and removes what it made.
pub async fn restore(docker: &dyn Runtime, opts: &RestoreOptions, status: &Status) -> Result<CreateReport> {
    super::on_docker_only(docker)?;
    restore_until(docker, &crate::kube::Dial, opts, status, crate::interrupt::interrupted()).await
}

/// What a restore has made so far, for the undo.
struct Made {
    create_id: String,
    /// Spares taken as nodes' /var: they carry the snapshot's labels, not this restore's.
    claimed: Vec<String>,
    kubeconfig_merge: kubeconfig::MergeRecord,
    warnings: Vec<String>,
}

async fn restore_until(
    docker: &dyn Runtime,
    api: &dyn crate::kube::Connect,
    opts: &RestoreOptions,
    status: &Status,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<CreateReport> {
    tokio::pin!(interrupt);
    let (snapshot, helper_image) = Operation::Restore.unless_interrupted(&mut interrupt, check(docker, opts)).await?;
    let mut made =
        Made { create_id: crate::ids::unique("restore"), claimed: Vec::new(), kubeconfig_merge: Default::default(), warnings: Vec::new() };
    for warning in expiry_warning(&snapshot, SystemTime::now()).into_iter().chain(exposure_warnings(&snapshot)) {
        status.warn(&warning);
        made.warnings.push(warning);
    }
    let outcome = Operation::Restore
        .unless_interrupted(&mut interrupt, run_steps(docker, api, opts, &snapshot, &helper_image, &mut made, status))
        .await;
    let undo = || async {
        let mut cleanup =
            undo(docker, status, &helper_image, &made.create_id, &opts.kubeconfig_path, &snapshot.cluster, &made.kubeconfig_merge).await;
        for volume in &made.claimed {
            cleanup = cleanup.and(docker.remove_volume(volume).await.map_err(ClusterError::from));
        }
        cleanup
    };
    Operation::Restore.finish(outcome, undo, EVERYTHING_REMOVED).await?;
    Ok(CreateReport {
        context: kubeconfig::context_name(&snapshot.cluster),
        kubeconfig_path: opts.kubeconfig_path.clone(),
        mode: if snapshot.nodes.iter().any(|n| n.host_config.privileged()) { NodeMode::Privileged } else { NodeMode::Capabilities },
        warnings: made.warnings,
    })
}

async fn run_steps(
    docker: &dyn Runtime,
    api: &dyn crate::kube::Connect,
    opts: &RestoreOptions,
    snapshot: &Snapshot,
    helper_image: &str,
    made: &mut Made,
    status: &Status,
) -> Result<()> {
    let began = SystemTime::now();
    let clock = tokio::time::Instant::now();
    let vars = node_volumes(docker, snapshot, made).await?;
    // Control planes (and their load balancer) first: the API server's start is what everything
    // waits for, and the workers' copy then overlaps the control planes' kubelet start-up (on
    // 1.20 five idle seconds, see README). Workers' kubelets are ready long before the API server.
    let (first, workers): (Vec<&SavedNode>, Vec<&SavedNode>) = snapshot.nodes.iter().partition(|n| n.role != NodeRole::Worker);
    for (group, what) in [(first, "control-plane node(s)"), (workers, "worker(s)")] {
        if group.is_empty() {
            continue;
        }
        let step = status.step(format!("Starting {} {what} from snapshot {:?}", group.len(), snapshot.name));
        start_nodes(docker, snapshot, &group, &vars, helper_image, &made.create_id).await?;
        step.done();
    }

    let step = status.step("Writing kubeconfig");
    let entries = merge_kubeconfig(docker, opts, snapshot, made).await?;
    step.done();

    if opts.wait.is_zero() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + opts.wait;
    let client = api.connect(&entries).await?;
    let step = status.step("Waiting for Ready");
    let nodes: std::collections::BTreeSet<String> =
        snapshot.nodes.iter().filter(|n| n.role.is_kubernetes_node()).map(|n| n.name.clone()).collect();
    let restarted = crate::kube::Restarted { since: began, nodes };
    let reached = crate::cluster::startup::wait_fresh_ready(&client, &restarted, restarted.nodes.len(), clock, deadline).await?;
    step.done();
    let step = status.step("Waiting for the controllers");
    // The next restore's spares are made meanwhile: the controllers take seconds to start, and
    // no one waits on the copy.
    let labels = [(LABEL_CREATE_ID.to_string(), made.create_id.clone())];
    let (controllers, spares) = tokio::join!(crate::kube::wait_for_controllers(&client, deadline), spare::make(docker, snapshot, &labels));
    controllers?;
    step.done();
    if let Err(e) = spares {
        let warning = format!("no spare copy was made for the next restore of {:?} (it will copy first): {e}", snapshot.name);
        status.warn(&warning);
        made.warnings.push(warning);
    }
    crate::cluster::timeline::log_nodes(
        docker,
        "restore",
        snapshot.nodes.iter().filter(|n| n.role.is_kubernetes_node()).map(|n| n.name.as_str()),
        began,
    )
    .await;
    tracing::info!(
        "restore: API server ready (/readyz) at {:.1} s, every node freshly Ready at {:.1} s, controllers running at {:.1} s",
        reached.readyz,
        reached.ready,
        clock.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Merges the cluster's context into the user's kubeconfig once the control plane's admin.conf
/// can be read; `made` records the merge, for the undo. Returns the entries.
async fn merge_kubeconfig(docker: &dyn Runtime, opts: &RestoreOptions, snapshot: &Snapshot, made: &mut Made) -> Result<serde_yaml::Value> {
    let deadline = tokio::time::Instant::now() + opts.wait.max(Duration::from_secs(60));
    let entries = crate::cluster::startup::admin_kubeconfig(docker, &snapshot.cluster, deadline).await?;
    // Recorded in `made` before the write starts: an interrupt that stops waiting for it still
    // takes back whatever lands, or keeps it from landing.
    let (path, merged, record) = (opts.kubeconfig_path.clone(), entries.clone(), made.kubeconfig_merge.clone());
    tokio::task::spawn_blocking(move || record.merge(&path, &merged))
        .await
        .map_err(|e| ClusterError::Io { context: "writing the kubeconfig".into(), source: std::io::Error::other(e) })??;
    Ok(entries)
}

/// Everything that would stand in a restore's way, found before anything is made: the name,
/// the cluster, the node containers' names, their addresses, their published host ports.
/// Returns the snapshot and the image its helpers (leases, copies) are made from: one whose
/// labels name no cluster (a snapshot image's name this one), so a helper left behind is no
/// node of it.
async fn check(docker: &dyn Runtime, opts: &RestoreOptions) -> Result<(Snapshot, String)> {
    let snapshot = super::find(docker, &opts.snapshot).await?;
    if !snapshot.complete {
        return Err(SnapshotError::Incomplete { name: snapshot.name.clone(), missing: snapshot.missing.clone() }.into());
    }
    if let Some(name) = opts.name.as_deref().filter(|n| *n != snapshot.cluster) {
        return Err(ClusterError::InvalidInput {
            field: "--name".into(),
            problem: format!(
                "snapshot {:?} is of cluster {:?}; restoring under another name ({name:?}) is not supported: node names, certificates and etcd's membership are the snapshot's. Restore it as {:?} (omit --name), or delete that cluster first",
                snapshot.name, snapshot.cluster, snapshot.cluster
            ),
        });
    }
    // Docker would make a missing volume afresh, empty, and the node would boot without its /var.
    let mut missing = Vec::new();
    for volume in snapshot.nodes.iter().filter_map(|n| n.volume.as_deref()) {
        if !docker.volume_exists(volume).await? {
            missing.push(volume.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(SnapshotError::Broken { name: snapshot.name.clone(), missing }.into());
    }
    crate::cluster::create::check_kubeconfig_and_daemon(docker, &opts.kubeconfig_path).await?;
    if !docker.list_containers(&format!("{LABEL_CLUSTER}={}", snapshot.cluster)).await?.is_empty() {
        return Err(ClusterError::Exists(snapshot.cluster.clone()));
    }
    let mut conflicts = Vec::new();
    for node in &snapshot.nodes {
        if docker.inspect(&node.name).await.is_ok() {
            conflicts.push(format!("a container named {} exists (docker rm -f {} if it is not needed)", node.name, node.name));
        }
    }
    let image = super::unlabelled_image(docker, snapshot.nodes.first().map(|n| n.image.as_str()).unwrap_or_default()).await?;
    let lease = Lease::network(docker, &image).await?;
    let subnet = docker.ensure_network(NETWORK_NAME, &lease).await?;
    lease.release().await?;
    let holders = docker.address_holders(NETWORK_NAME).await?;
    for node in &snapshot.nodes {
        let Some(address) = &node.address else { continue };
        let Ok(ip) = address.parse::<std::net::Ipv4Addr>() else { continue };
        if let Some(holder) = holders.get(&ip) {
            conflicts.push(format!("address {ip} of {} is taken on network {NETWORK_NAME} by container {holder}", node.name));
        } else if subnet.is_some_and(|s| !s.contains(ip)) {
            conflicts.push(format!(
                "address {ip} of {} is outside network {NETWORK_NAME}'s subnet {} (the network was made again since the save); restoring at other addresses is not supported",
                node.name,
                subnet.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
    }
    conflicts.extend(taken_ports(&snapshot));
    if conflicts.is_empty() {
        Ok((snapshot, image))
    } else {
        Err(SnapshotError::RestoreConflict(conflicts).into())
    }
}

/// Host ports the saved nodes publish that something holds now, each with its holder.
fn taken_ports(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .nodes
        .iter()
        .flat_map(|n| crate::cluster::lifecycle::taken_host_ports(&n.name, &n.host_config))
        .map(|taken| format!("host port taken: {taken}"))
        .collect()
}

/// What of this host the snapshot's saved container configs open or read, said as create says
/// it of a config: ports published on every interface, and host paths mounted into nodes. A
/// snapshot may come from someone else; its labels decide these, not a config the user wrote.
fn exposure_warnings(snapshot: &Snapshot) -> Vec<String> {
    let mut open = Vec::new();
    let mut paths = Vec::new();
    for node in &snapshot.nodes {
        for port in node.host_config.published_ports().into_iter().filter(|p| p.on_every_interface()) {
            open.push(format!("{} {}->{}", node.name, port.host_port, port.container_port));
        }
        for (source, target) in node.host_config.bind_mounts().into_iter().filter(|(_, target)| target != "/lib/modules") {
            paths.push(format!("{}: {source} at {target}", node.name));
        }
    }
    let mut warnings = Vec::new();
    if !open.is_empty() {
        warnings.push(format!(
            "snapshot {:?} publishes host port(s) on all interfaces, reachable from other machines: {}",
            snapshot.name,
            open.join(", ")
        ));
    }
    if !paths.is_empty() {
        warnings.push(format!("snapshot {:?} mounts host paths into its nodes: {}", snapshot.name, paths.join("; ")));
    }
    warnings
}

/// A warning when the snapshot's certificates have expired or expire within 30 days.
fn expiry_warning(snapshot: &Snapshot, now: SystemTime) -> Option<String> {
    let expires = snapshot.certificates_expire()?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let left = expires - now;
    if left > super::EXPIRY_WARNING.as_secs() as i64 {
        return None;
    }
    let when = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(expires.max(0) as u64));
    Some(if left <= 0 {
        format!(
            "snapshot {:?}'s certificates expired at {when}: the API server will refuse clients; save a fresh snapshot from a new cluster",
            snapshot.name
        )
    } else {
        format!(
            "snapshot {:?}'s certificates expire at {when} (in {} days); save a fresh snapshot from a new cluster before then",
            snapshot.name,
            left / 86_400
        )
    })
}

/// Each saved node's /var volume, and which of them still need the saved /var copied in.
struct NodeVolumes {
    by_node: HashMap<String, String>,
    to_copy: Vec<String>,
}

/// A volume per saved /var: a ready spare claimed (recorded in `made`), or else an empty one
/// labelled as the restore's, to copy into.
async fn node_volumes(docker: &dyn Runtime, snapshot: &Snapshot, made: &mut Made) -> Result<NodeVolumes> {
    let spares = spare::ready(docker, snapshot).await?;
    let mut vars = NodeVolumes { by_node: HashMap::new(), to_copy: Vec::new() };
    for node in snapshot.nodes.iter().filter(|node| node.volume.is_some()) {
        if let Some(volume) = spare::claim(docker, &spares, &node.name).await? {
            made.claimed.push(volume.clone());
            vars.by_node.insert(node.name.clone(), volume);
        }
    }
    let create_id = &made.create_id;
    let labels = vec![
        (LABEL_CLUSTER.to_string(), snapshot.cluster.clone()),
        (LABEL_CREATE_ID.to_string(), create_id.clone()),
        (LABEL_RESTORED_FROM.to_string(), snapshot.name.clone()),
    ];
    let fresh = snapshot.nodes.iter().filter(|node| node.volume.is_some() && !vars.by_node.contains_key(&node.name)).map(|node| {
        let labels = &labels;
        async move {
            let volume = format!("{}-var-{}", node.name, &create_id[create_id.len().saturating_sub(8)..]);
            docker.create_volume(&volume, labels).await?;
            Ok::<_, ClusterError>((node.name.clone(), volume))
        }
    });
    for (node, volume) in try_join_all(fresh).await? {
        vars.to_copy.push(node.clone());
        vars.by_node.insert(node, volume);
    }
    Ok(vars)
}

/// Copies `nodes`' saved /var into their volumes (but where a spare was claimed), then creates
/// and starts their containers.
async fn start_nodes(
    docker: &dyn Runtime,
    snapshot: &Snapshot,
    nodes: &[&SavedNode],
    vars: &NodeVolumes,
    helper_image: &str,
    create_id: &str,
) -> Result<()> {
    let to_copy: Vec<&SavedNode> = nodes.iter().copied().filter(|n| vars.to_copy.contains(&n.name)).collect();
    copy_volumes(docker, &to_copy, &vars.by_node, helper_image, create_id).await?;
    // Under berth's network lease from the containers' creation to their start: the addresses
    // are taken the moment the containers exist.
    let lease = Lease::network(docker, helper_image).await?;
    let members: Vec<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
    let created = nodes.iter().map(|n| {
        let body = node_body(snapshot, n, vars.by_node.get(&n.name).map(String::as_str), create_id, &members);
        docker.create_container(&n.name, body)
    });
    try_join_all(created).await?;
    try_join_all(nodes.iter().map(|n| docker.start_container(&n.name))).await?;
    lease.release().await?;
    Ok(())
}

/// Copies `nodes`' saved /var into their volumes, all at once in one helper: full copies, so a
/// restored node shares no file with the snapshot (see `volume_copy.rs`).
async fn copy_volumes(
    docker: &dyn Runtime,
    nodes: &[&SavedNode],
    volumes: &HashMap<String, String>,
    image: &str,
    create_id: &str,
) -> Result<()> {
    let copies: Vec<VolumeCopy> =
        nodes.iter().filter_map(|node| Some(VolumeCopy { from: node.volume.as_deref()?, to: volumes.get(&node.name)? })).collect();
    if copies.is_empty() {
        return Ok(());
    }
    super::volume_copy::copy_volumes(docker, image, &copies, &[(LABEL_CREATE_ID.to_string(), create_id.to_string())]).await?;
    Ok(())
}

/// A restored node's container: the saved image and host config, its /var on `volume`, its
/// saved address.
fn node_body(snapshot: &Snapshot, node: &SavedNode, volume: Option<&str>, create_id: &str, members: &[String]) -> ContainerBody {
    let mut labels = HashMap::from([
        (LABEL_CLUSTER.to_string(), snapshot.cluster.clone()),
        (LABEL_ROLE.to_string(), node.role.as_str().to_string()),
        (LABEL_MEMBERS.to_string(), members.join(",")),
        (LABEL_CREATE_ID.to_string(), create_id.to_string()),
        (LABEL_RESTORED_FROM.to_string(), snapshot.name.clone()),
    ]);
    if let Some(volume) = volume {
        // Deleting the cluster removes it: a claimed spare carries no cluster label.
        labels.insert(spare::LABEL_VAR_VOLUME.to_string(), volume.to_string());
    }
    restored_node_body(&RestoredNodeSpec {
        name: &node.name,
        image: &node.image,
        labels,
        host: &node.host_config,
        var_volume: volume,
        network: NETWORK_NAME,
        address: node.address.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::{interrupt_after, two_node_cluster};
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::HostConfig;

    const THEIRS: &str = "apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: 'https://other.example:6443'}
users:
- name: other
  user: {token: t}
contexts:
- name: other
  context: {cluster: other, user: other}
current-context: other
";

    /// Cluster "dev" saved as "warm" and deleted, and a user's kubeconfig with a context of
    /// their own in `dir`.
    async fn saved_and_deleted(dir: &std::path::Path) -> (FakeRuntime, RestoreOptions) {
        let fake = two_node_cluster();
        super::super::save(&fake, "warm", "dev", &Status::quiet()).await.unwrap();
        for node in ["dev-control-plane", "dev-worker"] {
            fake.remove_container(node).await.unwrap();
        }
        let kubeconfig_path = dir.join("config");
        std::fs::write(&kubeconfig_path, THEIRS).unwrap();
        let opts = RestoreOptions { snapshot: "warm".into(), name: None, wait: Duration::ZERO, kubeconfig_path };
        (fake, opts)
    }

    fn never() -> impl std::future::Future<Output = &'static str> {
        std::future::pending()
    }

    /// The snapshot can still be restored: its marker, images and saved volumes are all there.
    async fn assert_snapshot_intact(fake: &FakeRuntime, when: &str) {
        let snapshot = super::super::find(fake, "warm").await.unwrap();
        assert!(snapshot.complete, "{when}: {snapshot:?}");
        for node in &snapshot.nodes {
            assert!(fake.volumes().contains_key(node.volume.as_deref().unwrap()), "{when}: {} lost its /var", node.name);
        }
    }

    fn assert_nothing_of_the_cluster(fake: &FakeRuntime, opts: &RestoreOptions, when: &str) {
        assert!(fake.containers().is_empty(), "{when}: left {:?}", fake.containers().keys());
        let restores: Vec<String> = fake.volumes().into_iter().filter(|(_, l)| l.contains_key(LABEL_CREATE_ID)).map(|(v, _)| v).collect();
        assert!(restores.is_empty(), "{when}: volumes left {restores:?}");
        assert_eq!(std::fs::read_to_string(&opts.kubeconfig_path).unwrap(), THEIRS, "{when}: the kubeconfig changed");
    }

    /// With a wait, a restore returns once the API server is ready, the saved scheduler's lease
    /// is released, both nodes report afresh and the controllers run, in that order.
    #[tokio::test]
    async fn a_restore_with_a_wait_returns_once_fresh_nodes_and_the_controllers_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, opts) = saved_and_deleted(dir.path()).await;
        let opts = RestoreOptions { wait: Duration::from_secs(30), ..opts };
        let api = crate::cluster::fixtures::api_after_a_stop(true);
        restore_until(&fake, &api, &opts, &Status::quiet(), never()).await.unwrap();
        api.assert_asked_in_order(crate::cluster::fixtures::STARTUP_REQUESTS);
        assert!(fake.containers().values().all(|c| c.running), "{:?}", fake.containers().keys());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_brings_back_every_node_on_a_copy_of_its_var() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, opts) = saved_and_deleted(dir.path()).await;
        let snapshot = super::super::find(&fake, "warm").await.unwrap();
        let report = restore_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), never()).await.unwrap();
        assert_eq!(report.context, "berth-dev");
        let containers = fake.containers();
        for saved in &snapshot.nodes {
            let node = containers.get(&saved.name).unwrap_or_else(|| panic!("{} not restored: {:?}", saved.name, containers.keys()));
            assert!(node.running && node.image == saved.image, "{node:?}");
            assert_eq!(node.labels.get(LABEL_CLUSTER).map(String::as_str), Some("dev"));
            assert_eq!(node.ip, saved.address);
            let var = node.var.as_deref().unwrap();
            assert_ne!(Some(var), saved.volume.as_deref(), "a restored node must not run on the snapshot's own /var");
        }
        let kubeconfig = std::fs::read_to_string(&opts.kubeconfig_path).unwrap();
        assert!(kubeconfig.contains("berth-dev") && kubeconfig.contains("other.example"), "{kubeconfig}");
        assert_snapshot_intact(&fake, "after a restore").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_of_a_cluster_that_exists_is_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, opts) = saved_and_deleted(dir.path()).await;
        restore_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), never()).await.unwrap();
        let before = fake.calls().len();
        let err = restore_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), never()).await.unwrap_err();
        assert!(matches!(&err, ClusterError::Exists(name) if name == "dev"), "{err}");
        assert!(!fake.calls()[before..].iter().any(|c| c.starts_with("create")), "{:?}", &fake.calls()[before..]);
    }

    /// A node that cannot start (its port taken since the check, say): everything the restore
    /// made goes, the user's kubeconfig is as it was, and the snapshot can be restored again.
    #[tokio::test(start_paused = true)]
    async fn a_failure_mid_way_leaves_nothing_and_the_snapshot_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, opts) = saved_and_deleted(dir.path()).await;
        fake.fail_start("dev-worker");
        let err = restore_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), never()).await.unwrap_err().to_string();
        assert!(err.contains("dev-worker"), "{err}");
        assert_nothing_of_the_cluster(&fake, &opts, "after a failed start");
        assert_snapshot_intact(&fake, "after a failed restore").await;
    }

    /// SIGINT at every point of a restore in turn: either the cluster is back whole, or nothing
    /// of it is left, the kubeconfig is as it was, the interrupt is reported, and the snapshot
    /// is whole.
    #[tokio::test(start_paused = true)]
    async fn an_interrupt_at_each_step_leaves_a_whole_cluster_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let (probe, opts) = saved_and_deleted(dir.path()).await;
        let start = probe.calls().len();
        restore_until(&probe, &crate::kube::Dial, &opts, &Status::quiet(), never()).await.unwrap();
        let steps = probe.calls().len() - start;
        let mut interrupted = 0;
        for n in 1..=steps {
            let dir = tempfile::tempdir().unwrap();
            let (fake, opts) = saved_and_deleted(dir.path()).await;
            let at = fake.calls().len() + n;
            match restore_until(&fake, &crate::kube::Dial, &opts, &Status::quiet(), interrupt_after(fake.clone(), at)).await {
                Ok(_) => assert_eq!(fake.containers().len(), 2, "after {n} calls"),
                Err(ClusterError::Interrupted { operation: crate::cluster::Operation::Restore, signal: "SIGINT", .. }) => {
                    interrupted += 1;
                    assert_nothing_of_the_cluster(&fake, &opts, &format!("interrupted after {n} calls"));
                }
                Err(e) => panic!("after {n} calls: {e}"),
            }
            assert_snapshot_intact(&fake, &format!("after {n} calls")).await;
        }
        assert!(interrupted * 2 > steps, "only {interrupted} of {steps} interrupts landed");
    }

    fn snapshot(expires: Option<i64>) -> Snapshot {
        Snapshot {
            name: "warm".into(),
            cluster: "ci".into(),
            kubernetes_version: "v1.20.2".into(),
            created: 0,
            save_id: "save-1-00ff00ff".into(),
            complete: true,
            missing: Vec::new(),
            nodes: vec![SavedNode {
                name: "ci-control-plane".into(),
                role: NodeRole::ControlPlane,
                image: "berth-snapshot/warm:ci-control-plane".into(),
                volume: Some("berth-snapshot-warm-ci-control-plane-var".into()),
                address: Some("172.18.128.1".into()),
                host_config: HostConfig::default().with_bind_mount("/lib/modules", "/lib/modules"),
                node_image: "berth-test/node:v1.20.2".into(),
                bytes: 0,
                certificates_expire: expires,
            }],
        }
    }

    #[test]
    fn a_restored_node_is_labelled_as_the_restores_and_the_clusters() {
        let s = snapshot(None);
        let body = node_body(&s, &s.nodes[0], Some("ci-control-plane-var-abc"), "restore-1", &["ci-control-plane".into()]);
        let labels = body.labels();
        assert_eq!(labels[LABEL_CLUSTER], "ci");
        assert_eq!(labels[LABEL_CREATE_ID], "restore-1");
        assert_eq!(labels[LABEL_RESTORED_FROM], "warm");
        assert_eq!(labels[spare::LABEL_VAR_VOLUME], "ci-control-plane-var-abc");
    }

    #[test]
    fn warns_of_ports_on_every_interface_and_host_paths_a_snapshot_opens() {
        let mut s = snapshot(None);
        assert_eq!(exposure_warnings(&s), Vec::<String>::new(), "/lib/modules alone is not worth a word");
        let host = std::mem::take(&mut s.nodes[0].host_config);
        s.nodes[0].host_config = host
            .with_published_port("6443/tcp", "127.0.0.1", 40000)
            .with_published_port("80/tcp", "0.0.0.0", 8080)
            .with_bind_mount("/home/alice/.ssh", "/data");
        let warnings = exposure_warnings(&s);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("ci-control-plane 8080->80/tcp") && !warnings[0].contains("40000"), "{}", warnings[0]);
        assert!(warnings[1].contains("/home/alice/.ssh at /data"), "{}", warnings[1]);
    }

    #[test]
    fn warns_of_certificates_that_expire_soon_or_have() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(expiry_warning(&snapshot(None), now), None);
        assert_eq!(expiry_warning(&snapshot(Some(1_000_000_000 + 365 * 86_400)), now), None);
        let soon = expiry_warning(&snapshot(Some(1_000_000_000 + 10 * 86_400)), now).unwrap();
        assert!(soon.contains("in 10 days"), "{soon}");
        let gone = expiry_warning(&snapshot(Some(999_999_000)), now).unwrap();
        assert!(gone.contains("expired"), "{gone}");
    }
}
