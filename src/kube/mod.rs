//! Talking to a new cluster's API server from the host: a client built from the cluster's own
//! kubeconfig entries (never the user's file), and the waits create needs. A wait re-reads
//! what it waits for whenever a watch on those objects reports a change (so it sees the change
//! at once), and at least every half second (so a watch that fails or lags cannot stall it).
//! Each check is a fresh read: nothing depends on a watch having started early enough.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::time::Instant;

use crate::wait::{poll_only, Changes};

const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot build an API client from the cluster's kubeconfig: {0}")]
    Config(String),
    #[error(transparent)]
    Timeout(#[from] crate::wait::Timeout),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

type Result<T, E = KubeError> = std::result::Result<T, E>;

#[cfg(test)]
pub mod fake;

/// How create gets a client for the cluster it just made: [`Dial`] reaches the real API
/// server; unit tests hand back a client over an in-memory one ([`fake::FakeApi`]).
#[async_trait::async_trait]
pub trait Connect: Send + Sync {
    async fn connect(&self, kubeconfig: &serde_yaml::Value) -> Result<Client>;
}

/// Dials the API server the kubeconfig entries name.
pub struct Dial;

#[async_trait::async_trait]
impl Connect for Dial {
    async fn connect(&self, kubeconfig: &serde_yaml::Value) -> Result<Client> {
        client(kubeconfig).await
    }
}

/// A client for the cluster whose entries `kubeconfig` holds (as made by `kubeconfig::for_cluster`).
pub async fn client(kubeconfig: &serde_yaml::Value) -> Result<Client> {
    let kc: Kubeconfig = serde_yaml::from_value(kubeconfig.clone()).map_err(|e| KubeError::Config(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| KubeError::Config(e.to_string()))?;
    // The API server is published on this machine: a proxy from HTTPS_PROXY (which kube reads
    // whatever NO_PROXY says) is for the nodes' pulls, never for reaching our own cluster.
    config.proxy_url = None;
    Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
}

/// [`crate::wait::until_some`] at the API's pace: re-checked on every change and every [`POLL`].
async fn wait_until<T, F, Fut>(what: &str, deadline: Instant, changes: Changes, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    Ok(crate::wait::until_some(what, deadline, POLL, changes, check).await?)
}

/// Changes to the objects of `api` (only the one called `name`, if given).
pub fn changes<K>(api: Api<K>, name: Option<&str>) -> Changes
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let mut config = watcher::Config::default();
    if let Some(name) = name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    watcher::watcher(api, config).default_backoff().map(|_| ()).boxed()
}

/// Waits until the API server answers.
pub async fn wait_for_api(client: &Client, deadline: Instant) -> Result<()> {
    wait_until("the API server answered", deadline, poll_only(), || async {
        client.apiserver_version().await.map(|_| Some(())).map_err(|e| e.to_string())
    })
    .await
}

/// Waits until the API server's `/readyz` says ok: every post-start hook done, etcd reachable,
/// informers synced — more than "it answers", which a restarting API server does early.
pub async fn wait_for_readyz(client: &Client, deadline: Instant) -> Result<()> {
    // Asked every 100 ms (an answer costs the API server next to nothing): the moment it is
    // ready is what `start` and restores are timed by.
    let every = Duration::from_millis(100);
    Ok(crate::wait::until_some("the API server was ready (/readyz)", deadline, every, poll_only(), || async {
        let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
        match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => Ok(Some(())),
            Ok(body) => Err(body.trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?)
}

/// Waits until kube-controller-manager's bootstrap signer has signed the `cluster-info`
/// ConfigMap for bootstrap token `token_id`: the moment a token-discovery `kubeadm join` can
/// succeed. kubeadm itself retries every 5 s; watching for it here lets every join succeed on
/// its first try.
pub async fn wait_for_cluster_info_signed(client: &Client, token_id: &str, deadline: Instant) -> Result<()> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let key = format!("jws-kubeconfig-{token_id}");
    wait_until("cluster-info was signed for joining nodes", deadline, changes(maps.clone(), Some("cluster-info")), || async {
        let cm = maps.get_opt("cluster-info").await.map_err(|e| e.to_string())?;
        Ok(cm.and_then(|cm| cm.data).filter(|d| d.contains_key(&key)).map(|_| ()))
    })
    .await
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
}

pub fn node_is_ready(node: &Node) -> bool {
    ready_condition(node).is_some_and(|c| c.status == "True")
}

/// Whether the node's kubelet has posted its status at or after `since` (whole seconds, as the
/// API keeps heartbeats): a Ready condition written before a stop is not news of the node now.
/// A kubelet posts its status as soon as it starts, so a running one is fresh within seconds.
pub fn node_reported_since(node: &Node, since: SystemTime) -> bool {
    let since = since.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).is_some_and(|t| t.0.as_second() >= since)
}

/// Nodes that were just (re)started, whose Ready condition counts only if their kubelet posted
/// it at or after `since`. A node that was already running needs no fresh report: its kubelet
/// sends its status only when it changes (or every few minutes).
#[derive(Debug, Clone)]
pub struct Restarted {
    pub since: SystemTime,
    pub nodes: std::collections::BTreeSet<String>,
}

impl Restarted {
    fn stale(&self, node: &Node) -> bool {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.nodes.contains(name) && !node_reported_since(node, self.since)
    }
}

/// A node that is not Ready, with the kubelet's own reason (e.g. "cni config uninitialized").
fn describe_not_ready(node: &Node, restarted: Option<&Restarted>) -> String {
    let name = node.metadata.name.clone().unwrap_or_default();
    if restarted.is_some_and(|r| r.stale(node)) {
        return format!("{name} (its kubelet has not reported since the start)");
    }
    match ready_condition(node).and_then(|c| c.message.clone()).filter(|m| !m.is_empty()) {
        Some(message) => format!("{name} ({message})"),
        None => name,
    }
}

/// Waits until `expected` nodes exist and all are Ready — the `restarted` ones by a status their
/// kubelets posted since their start. On timeout, names the nodes that are not.
pub async fn wait_for_nodes_ready(client: &Client, expected: usize, restarted: Option<&Restarted>, deadline: Instant) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ok = |n: &Node| node_is_ready(n) && !restarted.is_some_and(|r| r.stale(n));
    wait_until("all nodes were Ready", deadline, changes(nodes.clone(), None), || async {
        let list = nodes.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let not_ready: Vec<String> = list.items.iter().filter(|n| !ok(n)).map(|n| describe_not_ready(n, restarted)).collect();
        if list.items.len() >= expected && not_ready.is_empty() {
            Ok(Some(()))
        } else {
            Err(format!("{} of {expected} nodes registered; not Ready: {}", list.items.len(), not_ready.join(", ")))
        }
    })
    .await
}

/// The leader-election leases of the control plane's singletons.
const SINGLETON_LEASES: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

/// Deletes the scheduler's and controller-manager's leader leases left by processes that are
/// gone: held by one of the `restarted` nodes (a holder's identity is its node's hostname, then
/// `_` and a per-process id) and not renewed since `since`, when the nodes were started. A
/// restarted candidate otherwise waits out a full lease (15 s) from the moment it first sees the
/// old holder, and nothing is scheduled meanwhile; without the lease it takes the lock at its
/// next try (≤ 2 s). Safe with any number of control planes: a lease held from a node that kept
/// running is never touched, and the delete carries the stale lease's resourceVersion as a
/// precondition, so a lease a new leader has taken in the meantime is left alone (the delete
/// fails with a conflict, which is fine). Returns the names deleted.
pub async fn release_stale_leases(
    client: &Client,
    since: SystemTime,
    restarted: &std::collections::BTreeSet<String>,
) -> Result<Vec<String>> {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{DeleteParams, Preconditions};
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let since = since.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    let mut released = Vec::new();
    for name in SINGLETON_LEASES {
        let Some(lease) = leases.get_opt(name).await? else { continue };
        let spec = lease.spec.as_ref();
        let holder_node = spec.and_then(|s| s.holder_identity.as_deref()).and_then(|h| h.rsplit_once('_')).map(|(node, _)| node);
        let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_microsecond());
        if !holder_node.is_some_and(|n| restarted.contains(n)) || renewed.is_some_and(|r| r >= since) {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { resource_version: lease.metadata.resource_version.clone(), uid: None }),
            ..Default::default()
        };
        match leases.delete(name, &params).await {
            Ok(_) => released.push(name.to_string()),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(released)
}

/// Waits until kube-controller-manager's controllers run, by asking one of them: a ReplicaSet
/// of no replicas, made for the purpose in kube-system, counts once the ReplicaSet controller
/// has recorded it (`status.observedGeneration`), and is then deleted. The API server being
/// ready says nothing about them: a restarted controller-manager first waits for its leader
/// lease and then, up to Kubernetes 1.2x, 10 s in the node-IPAM controller's start before any
/// controller (deployments and replica sets included) gets its first event. A fresh create
/// never sees that gap (its nodes are Ready only once node-IPAM gave them pod CIDRs); a
/// restored cluster's nodes are Ready before it, so without this wait a Deployment applied
/// right after would sit unscheduled for ~10 s.
pub async fn wait_for_controllers(client: &Client, deadline: Instant) -> Result<()> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::api::{DeleteParams, PostParams};
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "kube-system");
    let name = crate::ids::unique("berth-controllers-check");
    let probe: ReplicaSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "berth"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"berth.dev/controllers-check": name}},
            "template": {
                "metadata": {"labels": {"berth.dev/controllers-check": name}},
                "spec": {"containers": [{"name": "none", "image": "none"}]},
            },
        },
    }))
    .map_err(|e| KubeError::Manifest(e.to_string()))?;
    api.create(&PostParams::default(), &probe).await?;
    let seen = wait_until("kube-controller-manager's controllers ran", deadline, changes(api.clone(), Some(&name)), || async {
        let rs = api.get(&name).await.map_err(|e| e.to_string())?;
        Ok(rs.status.and_then(|s| s.observed_generation).is_some_and(|g| g >= 1).then_some(()))
    })
    .await;
    let deleted = api.delete(&name, &DeleteParams::default()).await;
    seen?;
    deleted?;
    Ok(())
}

/// Removes a label from a node (a no-op where the node does not carry it).
pub async fn remove_node_label(client: &Client, node: &str, key: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {key: null}}});
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Waits until a DaemonSet has a ready pod on every node it schedules to.
pub async fn wait_for_daemonset(client: &Client, namespace: &str, name: &str, deadline: Instant) -> Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let what = format!("DaemonSet {namespace}/{name} was ready on every node");
    wait_until(&what, deadline, changes(api.clone(), Some(name)), || async {
        let ds = api.get_opt(name).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("{name} does not exist yet"))?;
        let s = ds.status.unwrap_or_default();
        if s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled {
            Ok(Some(()))
        } else {
            Err(format!("{} of {} pods ready", s.number_ready, s.desired_number_scheduled))
        }
    })
    .await
}

/// Waits until a Deployment has all its replicas available; a timeout says how many were.
pub async fn wait_for_deployment_available(client: &Client, namespace: &str, name: &str, deadline: Instant) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let what = format!("Deployment {namespace}/{name} was available");
    wait_until(&what, deadline, changes(api.clone(), Some(name)), || async {
        let d = api.get_opt(name).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("{name} does not exist"))?;
        let desired = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        if desired > 0 && available >= desired {
            Ok(Some(()))
        } else {
            Err(format!("{available} of {desired} replicas"))
        }
    })
    .await
}

/// How long a request may keep failing for reasons that pass (a connection the API server
/// dropped, a 5xx while it restarts under load) before the failure is final.
const TRANSIENT_GRACE: Duration = Duration::from_secs(60);

/// Failures that say nothing about the request itself: the connection, or an API server that
/// is briefly unable to answer.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `request` until it succeeds, fails for a reason of its own, or has failed transiently
/// for [`TRANSIENT_GRACE`].
async fn retry_transient<T, F, Fut>(what: &str, mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + TRANSIENT_GRACE;
    loop {
        match request().await {
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                tracing::debug!("{what}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Applies a multi-document YAML manifest with server-side apply (field manager "berth"),
/// finding each kind's resource through discovery. Returns how many objects were applied.
pub async fn apply_manifest(client: &Client, manifest: &str) -> Result<usize> {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::GroupVersionKind;
    use kube::discovery::Scope;
    use serde::Deserialize;

    let mut applied = 0;
    for document in serde_yaml::Deserializer::from_str(manifest) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| KubeError::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value).map_err(|e| KubeError::Manifest(e.to_string()))?;
        let types = obj.types.clone().ok_or_else(|| KubeError::Manifest("an object has no apiVersion/kind".into()))?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| KubeError::Manifest(e.to_string()))?;
        let name = obj.metadata.name.clone().ok_or_else(|| KubeError::Manifest(format!("a {} has no name", types.kind)))?;
        let what = format!("applying {} {name}", types.kind);
        let (resource, caps) = retry_transient(&what, || kube::discovery::pinned_kind(client, &gvk)).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        if types.kind == "APIService" {
            create_or_replace(&api, &name, &obj, &what).await?;
        } else {
            let params = PatchParams::apply("berth").force();
            let patch = Patch::Apply(&obj);
            retry_transient(&what, || api.patch(&name, &params, &patch)).await?;
        }
        applied += 1;
    }
    Ok(applied)
}

/// Creates `obj`, or replaces the object of that name. For APIService objects: a kube-apiserver
/// built without the aggregator's OpenAPI schema (Debian's 1.20 package, our test image's, is
/// one) cannot server-side apply them — the request panics with "FieldManager must be installed
/// to run apply" and the connection drops — while create and update work everywhere.
async fn create_or_replace(api: &Api<kube::api::DynamicObject>, name: &str, obj: &kube::api::DynamicObject, what: &str) -> Result<()> {
    use kube::api::PostParams;
    let params = PostParams { field_manager: Some("berth".into()), ..Default::default() };
    match retry_transient(what, || api.create(&params, obj)).await {
        Err(KubeError::Api(kube::Error::Api(status))) if status.code == 409 => {
            let current = retry_transient(what, || api.get(name)).await?;
            let mut replacement = obj.clone();
            replacement.metadata.resource_version = current.metadata.resource_version;
            retry_transient(what, || api.replace(name, &params, &replacement)).await?;
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// Waits until node `name` is registered and Ready.
pub async fn wait_for_node_ready(client: &Client, name: &str, deadline: Instant) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until(&format!("node {name} was Ready"), deadline, changes(nodes.clone(), Some(name)), || async {
        match nodes.get_opt(name).await.map_err(|e| e.to_string())? {
            Some(node) if node_is_ready(&node) => Ok(Some(())),
            Some(node) => Err(describe_not_ready(&node, None)),
            None => Err(format!("{name} is not registered yet")),
        }
    })
    .await
}

/// Marks node `name` unschedulable (`kubectl cordon`); an absent node is not an error.
pub async fn cordon(client: &Client, name: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(name).await?.is_none() {
        return Ok(());
    }
    nodes.patch(name, &PatchParams::default(), &Patch::Merge(&serde_json::json!({"spec": {"unschedulable": true}}))).await?;
    Ok(())
}

/// Removes the Node object `name`; an absent one is not an error.
pub async fn delete_node(client: &Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pods a drain moves off a node: all but DaemonSet pods (their controller puts them
/// back on the node) and static pods' mirrors (the kubelet owns them), as `kubectl drain` does.
fn drainable(pod: &Pod) -> bool {
    let owned_by_daemonset = pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "DaemonSet");
    let mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let finished = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
    !owned_by_daemonset && !mirror && !finished
}

/// Moves every drainable pod off node `name` by the Eviction API, which honours
/// PodDisruptionBudgets, retrying a refused eviction until `deadline`; with `force`, deletes
/// them instead (no budget is asked). Returns once none is left on the node; a timeout names
/// the pods still there.
pub async fn drain(client: &Client, name: &str, force: bool, deadline: Instant) -> Result<()> {
    use kube::api::{DeleteParams, EvictParams};
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={name}"));
    wait_until(&format!("the pods on {name} were moved off it"), deadline, poll_only(), || async {
        let left: Vec<Pod> = pods.list(&on_node).await.map_err(|e| e.to_string())?.items.into_iter().filter(drainable).collect();
        if left.is_empty() {
            return Ok(Some(()));
        }
        let mut blocked = Vec::new();
        for pod in &left {
            let (Some(ns), Some(pod_name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else { continue };
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let outcome = if force {
                api.delete(pod_name, &DeleteParams::default()).await.map(|_| ())
            } else {
                api.evict(pod_name, &EvictParams::default()).await.map(|_| ())
            };
            match outcome {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                // 429: a PodDisruptionBudget does not allow it now.
                Err(kube::Error::Api(e)) if e.code == 429 => {
                    blocked.push(format!("{ns}/{pod_name} (a PodDisruptionBudget refuses: {})", e.message))
                }
                Err(e) => return Err(format!("{ns}/{pod_name}: {e}")),
            }
        }
        let names: Vec<String> = left
            .iter()
            .map(|p| format!("{}/{}", p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()))
            .collect();
        Err(if blocked.is_empty() { format!("still on the node: {}", names.join(", ")) } else { blocked.join("; ") })
    })
    .await
}

/// Pods that are not Running/Succeeded, with their reasons: what to show when a wait fails.
pub async fn failing_pods(client: &Client) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut out = Vec::new();
    for pod in pods.list(&ListParams::default()).await?.items {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        let reasons: Vec<String> = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .filter_map(|cs| cs.state.and_then(|s| s.waiting).and_then(|w| w.reason))
            .collect();
        if phase != "Running" && phase != "Succeeded" || !reasons.is_empty() {
            out.push(format!("{ns}/{name}: {phase} {}", reasons.join(",")).trim_end().to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(status: &str, heartbeat: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat, "message": "kubelet is posting ready status"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_ready_condition_from_before_the_start_is_stale() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let before = node("True", "2023-11-14T22:13:10Z"); // start − 10 s
        let after = node("True", "2023-11-14T22:13:21Z"); // start + 1 s
        assert!(node_is_ready(&before) && !node_reported_since(&before, start));
        assert!(node_reported_since(&after, start));
        assert!(node_reported_since(&node("True", "2023-11-14T22:13:20Z"), start + Duration::from_millis(400)), "same second counts");
        let restarted = Restarted { since: start, nodes: ["n1".to_string()].into() };
        assert!(restarted.stale(&before) && !restarted.stale(&after));
        assert!(describe_not_ready(&before, Some(&restarted)).contains("has not reported since the start"));
        let others = Restarted { since: start, nodes: ["n2".to_string()].into() };
        assert!(!others.stale(&before), "a node that was already running needs no fresh report");
        assert_eq!(describe_not_ready(&node("False", "2023-11-14T22:13:21Z"), None), "n1 (kubelet is posting ready status)");
    }

    /// A node that turns Ready is seen through the watch of nodes, at once, not at the next
    /// poll: on a paused clock the wait returns at the moment of the change, well before a
    /// poll would come. With the watch broken it would return only at the poll.
    #[tokio::test(start_paused = true)]
    async fn a_wait_sees_a_change_through_its_watch_before_the_next_poll() {
        use super::fake::{FakeApi, Seen};
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready.clone();
        let api = FakeApi::new(move || Seen {
            nodes: vec!["n1".into()],
            not_ready: !flag.load(std::sync::atomic::Ordering::SeqCst),
            fresh: true,
            ..Default::default()
        });
        let change_at = POLL / 5;
        let turn = api.clone();
        tokio::spawn(async move {
            // Past the first polls' moment, so only the watch can bring the news in time.
            tokio::time::sleep(POLL + change_at).await;
            ready.store(true, std::sync::atomic::Ordering::SeqCst);
            turn.changed();
        });
        let started = Instant::now();
        wait_for_nodes_ready(&api.client(), 1, None, started + Duration::from_secs(30)).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= POLL + change_at && took < 2 * POLL,
            "took {took:?}: the change came at {:?}, the next poll at {:?}",
            POLL + change_at,
            2 * POLL
        );
        assert!(api.requests().iter().any(|r| r.starts_with("GET /api/v1/nodes?") && r.contains("watch=true")), "{:#?}", api.requests());
    }

    #[tokio::test]
    async fn only_leases_nobody_renewed_since_the_start_are_deleted_and_only_at_the_version_read() {
        use super::fake::{FakeApi, Seen};
        let leases = vec![
            ("kube-scheduler".to_string(), "2026-01-01T00:00:00.000000Z".to_string(), "41".to_string()),
            ("kube-controller-manager".to_string(), "2026-01-01T00:10:00.000000Z".to_string(), "42".to_string()),
        ];
        let api = FakeApi::new(move || Seen { leases: leases.clone(), ..Default::default() });
        // The start began at 00:05: the scheduler's lease is stale, the controller-manager's fresh.
        let since = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 300);
        let released = release_stale_leases(&api.client(), since, &["demo-control-plane".to_string()].into()).await.unwrap();
        assert_eq!(released, ["kube-scheduler"]);
        let deletes: Vec<String> = api.requests().into_iter().filter(|r| r.starts_with("DELETE")).collect();
        assert_eq!(deletes.len(), 1, "{deletes:?}");
        assert!(deletes[0].contains("/leases/kube-scheduler") && deletes[0].contains(r#""resourceVersion":"41""#), "{deletes:?}");
    }

    #[tokio::test]
    async fn a_lease_renewed_between_the_read_and_the_delete_is_left_alone() {
        use super::fake::{FakeApi, Seen};
        // The fake answers the read with version 7 but holds 8 by the time the delete comes: a
        // conflict, which is not an error and releases nothing.
        let looks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = looks.clone();
        let api = FakeApi::new(move || {
            let rv = if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 { "7" } else { "8" };
            Seen { leases: vec![("kube-scheduler".into(), "2020-01-01T00:00:00Z".into(), rv.into())], ..Default::default() }
        });
        let released = release_stale_leases(&api.client(), SystemTime::now(), &["demo-control-plane".to_string()].into()).await.unwrap();
        assert!(released.is_empty(), "{released:?}");
        assert!(api.requests().iter().any(|r| r.starts_with("DELETE")), "the delete was tried");
    }

    #[tokio::test]
    async fn a_lease_held_from_a_node_that_kept_running_is_never_touched() {
        use super::fake::{FakeApi, Seen};
        let leases = vec![("kube-scheduler".to_string(), "2020-01-01T00:00:00Z".to_string(), "5".to_string())];
        let api = FakeApi::new(move || Seen { leases: leases.clone(), ..Default::default() });
        // The holder is on demo-control-plane, which this start did not restart.
        let released = release_stale_leases(&api.client(), SystemTime::now(), &["demo-control-plane2".to_string()].into()).await.unwrap();
        assert!(released.is_empty(), "{released:?}");
        assert!(!api.requests().iter().any(|r| r.starts_with("DELETE")), "{:?}", api.requests());
    }
}
