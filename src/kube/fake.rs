//! An in-memory API server for unit tests: a [`kube::Client`] over a function that answers the
//! few requests create, `start` and `create/delete node` make (the version, `/readyz`,
//! `cluster-info`, nodes — one read, patched or deleted by name too —, pods (none), the
//! kube-proxy DaemonSet, leader leases, the controllers' probe ReplicaSet) from what the test
//! says the cluster looks like, and records every request, so a test can check which waits and
//! joins an operation ran, in what order. A watch of nodes streams the nodes again each time the
//! test says the cluster changed ([`FakeApi::changed`]), so the waits' watch path runs too; other
//! watches stay open and silent.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::{Connect, Result};

/// What the fake API server reports, asked afresh at every request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The bootstrap token id whose signature `cluster-info` carries, once it does.
    pub signed_token_id: Option<String>,
    /// Registered nodes, all Ready (and as many kube-proxy pods ready) unless `not_ready`.
    pub nodes: Vec<String>,
    /// The nodes report NotReady (a wait for them never ends).
    pub not_ready: bool,
    /// The nodes' kubelets report at the moment of asking, as just-started kubelets do; otherwise
    /// their last report is from long ago (a start's wait for fresh reports never ends).
    pub fresh: bool,
    /// Leader leases in kube-system: (name, renewTime as RFC 3339, resourceVersion).
    pub leases: Vec<(String, String, String)>,
    /// The node whose process holds the leases (`demo-control-plane` when not given).
    pub lease_holder: Option<String>,
}

type Look = dyn Fn() -> Seen + Send + Sync;

/// The fake API server; [`Connect`] hands out clients to it whatever the kubeconfig says.
#[derive(Clone)]
pub struct FakeApi {
    look: Arc<Look>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Bumped by [`changed`](Self::changed): node watches stream the nodes again.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

/// What the fake's responses carry: a whole body, or a watch's stream of events.
type Reply = UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;

impl FakeApi {
    pub fn new(look: impl Fn() -> Seen + Send + Sync + 'static) -> FakeApi {
        FakeApi { look: Arc::new(look), requests: Arc::default(), changes: Arc::new(tokio::sync::watch::channel(0).0) }
    }

    /// Tells the watches that what the test's look says has changed.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// What the test's look says now.
    pub fn seen(&self) -> Seen {
        (self.look)()
    }

    /// Every request so far, as "METHOD /path?query".
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Fails unless a request starting with each of `prefixes` was made, the first of each in
    /// the order given.
    pub fn assert_asked_in_order(&self, prefixes: &[&str]) {
        let requests = self.requests();
        let at = |what: &str| requests.iter().position(|r| r.starts_with(what)).unwrap_or_else(|| panic!("no {what}: {requests:#?}"));
        let order: Vec<usize> = prefixes.iter().map(|p| at(p)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order {order:?}: {requests:#?}");
    }

    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                Ok::<_, std::convert::Infallible>(api.answer(&Request::from_parts(parts, body)))
            }
        });
        Client::new(service, "default")
    }

    fn answer(&self, request: &Request<bytes::Bytes>) -> Response<Reply> {
        let uri = request.uri();
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
        let sent = if request.body().is_empty() { String::new() } else { format!(" {}", String::from_utf8_lossy(request.body())) };
        self.requests.lock().unwrap().push(format!("{} {target}{sent}", request.method()));
        let seen = (self.look)();
        let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
        let body = match (request.method(), uri.path()) {
            (&Method::GET, "/api/v1/nodes") if watch => return self.node_watch(),
            _ if watch => return stream_lines(futures_util::stream::pending().boxed()),
            (&Method::GET, "/version") => Some(version()),
            (&Method::GET, "/readyz") => return respond_text("ok"),
            (&Method::POST, REPLICA_SETS) => {
                let posted: Value = serde_json::from_slice(request.body()).unwrap_or_default();
                Some(observed_replica_set(posted.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()))
            }
            // The ReplicaSet controller runs: whatever is asked for has been observed.
            (&Method::GET | &Method::DELETE, path) if path.starts_with(&format!("{REPLICA_SETS}/")) => {
                Some(observed_replica_set(path.trim_start_matches(&format!("{REPLICA_SETS}/"))))
            }
            (&Method::GET, "/api/v1/namespaces/kube-public/configmaps/cluster-info") => seen.signed_token_id.map(cluster_info),
            // A resourceVersion, so a watcher's list is followed by its watch.
            (&Method::GET, "/api/v1/nodes") => Some(json!({
                "apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"},
                "items": seen.nodes.iter().map(|n| node(n, !seen.not_ready, seen.fresh)).collect::<Vec<_>>(),
            })),
            (&Method::GET | &Method::PATCH | &Method::DELETE, path) if path.starts_with("/api/v1/nodes/") => {
                let name = path.trim_start_matches("/api/v1/nodes/");
                seen.nodes.iter().any(|n| n == name).then(|| node(name, !seen.not_ready, seen.fresh))
            }
            // No pods run in the fake: a drain finds none to move.
            (&Method::GET, "/api/v1/pods") => Some(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})),
            (&Method::GET, "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy") => Some(kube_proxy(seen.nodes.len())),
            (method, path) if path.starts_with(LEASES) => {
                let name = path.trim_start_matches(LEASES);
                let lease = seen.leases.iter().find(|(n, _, _)| n == name);
                match (method, lease) {
                    (&Method::GET, Some((name, renewed, rv))) => Some(lease_object(seen.lease_holder.as_deref(), name, renewed, rv)),
                    // A delete's precondition is honoured: another resourceVersion is a conflict.
                    (&Method::DELETE, Some((name, renewed, rv))) => {
                        let wanted: Value = serde_json::from_slice(request.body()).unwrap_or_default();
                        match wanted.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
                            Some(asked) if asked != rv => {
                                return respond(
                                    StatusCode::CONFLICT,
                                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "precondition failed"}),
                                )
                            }
                            _ => Some(lease_object(seen.lease_holder.as_deref(), name, renewed, rv)),
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match body {
            Some(body) => respond(StatusCode::OK, &body),
            None => respond(
                StatusCode::NOT_FOUND,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not in the fake"}),
            ),
        }
    }

    /// A watch of all nodes: each change the test announces sends every node as MODIFIED.
    fn node_watch(&self) -> Response<Reply> {
        let api = self.clone();
        let events = each_change(self.changes.subscribe()).flat_map(move |()| {
            let seen = (api.look)();
            let lines: Vec<String> = seen
                .nodes
                .iter()
                .map(|n| json!({"type": "MODIFIED", "object": node(n, !seen.not_ready, seen.fresh)}).to_string() + "\n")
                .collect();
            futures_util::stream::iter(lines)
        });
        stream_lines(events.boxed())
    }
}

/// Each change of `rx` after the first look, as an item.
fn each_change(rx: tokio::sync::watch::Receiver<u64>) -> futures_util::stream::BoxStream<'static, ()> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) }).boxed()
}

/// A response whose body is `lines`, sent as they come (a watch).
fn stream_lines(lines: futures_util::stream::BoxStream<'static, String>) -> Response<Reply> {
    let frames = lines.map(|l| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(l))));
    reply(StatusCode::OK, BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames)), "application/json")
}

#[async_trait::async_trait]
impl Connect for FakeApi {
    async fn connect(&self, _kubeconfig: &serde_yaml::Value) -> Result<Client> {
        Ok(self.client())
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Reply> {
    reply(status, whole(serde_json::to_vec(body).unwrap()), "application/json")
}

fn respond_text(body: &str) -> Response<Reply> {
    reply(StatusCode::OK, whole(body.as_bytes().to_vec()), "text/plain")
}

/// A body sent in one piece.
fn whole(bytes: Vec<u8>) -> Reply {
    BodyExt::boxed_unsync(http_body_util::Full::new(bytes::Bytes::from(bytes)))
}

fn reply(status: StatusCode, body: Reply, content_type: &'static str) -> Response<Reply> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/";
const REPLICA_SETS: &str = "/apis/apps/v1/namespaces/kube-system/replicasets";

fn observed_replica_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "kube-system", "generation": 1},
        "spec": {"replicas": 0, "selector": {}},
        "status": {"replicas": 0, "observedGeneration": 1},
    })
}

/// A leader lease held by a process on `holder` (`demo-control-plane` when None).
fn lease_object(holder: Option<&str>, name: &str, renewed: &str, rv: &str) -> Value {
    let holder = format!("{}_5f3c2a1e-0000-4000-8000-000000000000", holder.unwrap_or("demo-control-plane"));
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed},
    })
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "20", "gitVersion": "v1.20.2", "gitCommit": "fake", "gitTreeState": "clean",
        "buildDate": "2021-01-13T13:20:00Z", "goVersion": "go1.15", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn cluster_info(token_id: String) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": "", format!("jws-kubeconfig-{token_id}"): "signed"},
    })
}

fn node(name: &str, ready: bool, fresh: bool) -> Value {
    let status = if ready { "True" } else { "False" };
    let heartbeat =
        if fresh { humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string() } else { "2026-01-01T00:00:00Z".into() };
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat}]},
    })
}

fn kube_proxy(nodes: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "status": {"currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberMisscheduled": 0, "numberReady": nodes},
    })
}
