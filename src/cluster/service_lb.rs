//! `berth load-balancer`: LoadBalancer Services that get an address, like on a cloud.
//!
//! While it runs, every Service of `type: LoadBalancer` (without a `loadBalancerClass`, which
//! names another implementation) gets a forwarder: a small container on berth's network, at an
//! address pinned like a node's, whose kernel forwards each of the Service's ports (TCP, UDP,
//! SCTP) to the Service's NodePort on the cluster's nodes — so kube-proxy does the balancing,
//! and endpoints, scaling and readiness behave as they do in the cluster. That address goes
//! into the Service's `status.loadBalancer.ingress`; the host reaches it directly (berth's
//! network is a bridge on the host). A `spec.loadBalancerIP` on berth's network is honoured
//! when free, and an address a Service already has is kept, so addresses survive a stop/start
//! of the cluster and a restart of this command. Forwarders carry the cluster's label: `stop`,
//! `start` and `delete cluster` treat them with the nodes. Ctrl-C removes what it made.
//!
//! It is a foreground command, as `minikube tunnel` is, because something must watch the
//! Services and only the host can create containers: a controller inside the cluster would
//! need the Docker socket.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use sha2::{Digest, Sha256};

use super::{kubeconfig_for, nodes, Result};
use crate::config::{Cidr, Protocol};
use crate::runtime::{network, service_lb_body, Lease, Runtime, ServiceLbSpec, LABEL_CLUSTER, NETWORK_NAME, SERVICE_LB_ROLE};
use crate::ui::Status;

/// The Service a forwarder serves, `namespace/name`.
const LABEL_SERVICE: &str = "dev.berth.service";
/// A digest of the forwarder's rules: a change of ports or nodes means a new forwarder.
const LABEL_RULES: &str = "dev.berth.lb-rules";

/// How often the Services are looked at even when no watch event came.
const RESYNC: Duration = Duration::from_secs(5);

/// One port of a LoadBalancer Service, as its forwarder serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPort {
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: u16,
}

/// A Service this command serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub namespace: String,
    pub name: String,
    pub ports: Vec<LbPort>,
    /// `spec.loadBalancerIP`, if set.
    pub requested_ip: Option<String>,
    /// The address its status already names, kept where possible.
    pub current_ip: Option<String>,
}

impl Wanted {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The Services to serve, and why others of `type: LoadBalancer` are not served.
pub fn wanted(services: &[Service]) -> (Vec<Wanted>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        if let Some(class) = spec.load_balancer_class.as_deref().filter(|c| !c.is_empty()) {
            skipped.push(format!("{namespace}/{name}: loadBalancerClass {class} is another implementation's; left alone"));
            continue;
        }
        let ports: Vec<LbPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(LbPort {
                    // Kubernetes defaults an unset protocol to TCP; an unknown one is not forwarded.
                    protocol: p.protocol.as_deref().map_or(Some(Protocol::Tcp), Protocol::parse)?,
                    port: u16::try_from(p.port).ok()?,
                    node_port: u16::try_from(p.node_port?).ok()?,
                })
            })
            .collect();
        if ports.is_empty() {
            skipped.push(format!(
                "{namespace}/{name}: no port has a NodePort (allocateLoadBalancerNodePorts: false?); berth forwards to NodePorts"
            ));
            continue;
        }
        let current_ip = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone());
        out.push(Wanted { namespace, name, ports, requested_ip: spec.load_balancer_ip.clone().filter(|ip| !ip.is_empty()), current_ip });
    }
    (out, skipped)
}

/// The forwarder's script: DNAT each port to the NodePort on every node (spread evenly: the
/// i-th of n rules takes 1/(n-i) of what reaches it), masquerade so replies come back through
/// it, then wait. It runs again at every container start (rules live in the container's own
/// network namespace, which a restart renews).
pub fn forwarder_script(ports: &[LbPort], node_ips: &[String]) -> String {
    let mut s = String::from("set -e\n");
    for p in ports {
        let proto = p.protocol.docker_suffix();
        for (i, ip) in node_ips.iter().enumerate() {
            let left = node_ips.len() - i;
            let spread =
                if left > 1 { format!(" -m statistic --mode random --probability {:.5}", 1.0 / left as f64) } else { String::new() };
            s.push_str(&format!(
                "iptables -t nat -A PREROUTING -p {proto} --dport {}{spread} -j DNAT --to-destination {ip}:{}\n",
                p.port, p.node_port
            ));
        }
    }
    s.push_str("iptables -t nat -A POSTROUTING -j MASQUERADE\n");
    s.push_str("trap 'exit 0' TERM\nwhile :; do sleep 3600 & wait $!; done\n");
    s
}

/// Readable, and unique: `-` may be in cluster, namespace and Service names alike, so the
/// three joined could name two Services the same; the digest of the three apart cannot.
fn forwarder_name(cluster: &str, w: &Wanted) -> String {
    format!("{cluster}-lb-{}-{}-{}", w.namespace, w.name, &digest(&format!("{cluster}\n{}\n{}", w.namespace, w.name))[..8])
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An address for a new forwarder: the one asked for or already held if it is on berth's
/// network and free, else the next free one where berth pins nodes.
fn choose_address(subnet: Cidr, used: &BTreeSet<Ipv4Addr>, w: &Wanted) -> std::result::Result<Ipv4Addr, String> {
    let usable = |ip: &str| ip.parse::<Ipv4Addr>().ok().filter(|ip| subnet.contains(*ip) && !used.contains(ip));
    if let Some(requested) = &w.requested_ip {
        return usable(requested).ok_or_else(|| {
            format!("{}: loadBalancerIP {requested} is not a free address on berth's network {subnet}; left alone", w.key())
        });
    }
    if let Some(ip) = w.current_ip.as_deref().and_then(usable) {
        return Ok(ip);
    }
    network::allocate(subnet, used, 1).and_then(|v| v.into_iter().next()).ok_or_else(|| format!("berth's network {subnet} is full"))
}

/// A forwarder as Docker reports it.
struct Forwarder {
    name: String,
    service: String,
    rules: String,
    running: bool,
}

async fn forwarders(docker: &dyn Runtime, cluster: &str) -> Result<Vec<Forwarder>> {
    let mut out = Vec::new();
    for c in docker.list_containers(&format!("{LABEL_CLUSTER}={cluster}")).await? {
        let running = c.running();
        let (name, labels) = (c.name, c.labels);
        if labels.get(crate::runtime::LABEL_ROLE).map(String::as_str) != Some(SERVICE_LB_ROLE) {
            continue;
        }
        out.push(Forwarder {
            name,
            service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
            rules: labels.get(LABEL_RULES).cloned().unwrap_or_default(),
            running,
        });
    }
    Ok(out)
}

/// What one pass changed, for the user.
#[derive(Default)]
struct Pass {
    said: BTreeSet<String>,
}

impl Pass {
    fn say(&mut self, status: &Status, message: String) {
        if self.said.insert(message.clone()) {
            status.info(message);
        }
    }
}

/// One look at the Services: forwarders made, replaced or removed, statuses written.
async fn reconcile(docker: &dyn Runtime, cluster: &str, client: &kube::Client, status: &Status, said: &mut Pass) -> Result<()> {
    let services = Api::<Service>::all(client.clone()).list(&ListParams::default()).await.map_err(crate::kube::KubeError::from)?;
    let (wanted, skipped) = wanted(&services.items);
    for reason in skipped {
        said.say(status, reason);
    }
    let cluster_nodes = nodes(docker, cluster).await?;
    let node_ips = node_addresses(docker, &cluster_nodes).await?;
    let existing = forwarders(docker, cluster).await?;
    let image = node_image(&cluster_nodes, cluster)?;
    for w in &wanted {
        // One Service's failure (its address, Docker refusing its forwarder) is said and left
        // for the next pass; the other Services are served all the same.
        let served: Result<()> = async {
            let script = forwarder_script(&w.ports, &node_ips);
            let rules = digest(&script);
            let name = forwarder_name(cluster, w);
            let current = existing.iter().find(|f| f.service == w.key());
            let ip = match current {
                Some(f) if f.rules == rules => {
                    if !f.running {
                        docker.start_container(&f.name).await?;
                    }
                    docker.container_ip(&f.name, NETWORK_NAME).await?
                }
                _ => {
                    let lease = Lease::network(docker, &image).await?;
                    let Some(subnet) = docker.ensure_network(NETWORK_NAME, &lease).await? else {
                        lease.release().await?;
                        said.say(status, format!("berth's network has no subnet of berth's; cannot pin addresses for {}", w.key()));
                        return Ok(());
                    };
                    // Replacing a forwarder keeps its address: the Service's status names it.
                    let keep = match current {
                        Some(f) => docker.container_ip(&f.name, NETWORK_NAME).await.ok(),
                        None => None,
                    };
                    if let Some(f) = current {
                        docker.remove_container(&f.name).await?;
                    }
                    let used = docker.used_addresses(NETWORK_NAME).await?;
                    let w_keep = Wanted { current_ip: keep.or_else(|| w.current_ip.clone()), ..w.clone() };
                    let ip = match choose_address(subnet, &used, &w_keep) {
                        Ok(ip) => ip.to_string(),
                        Err(reason) => {
                            said.say(status, reason);
                            return Ok(());
                        }
                    };
                    let spec = ServiceLbSpec {
                        name: name.clone(),
                        cluster: cluster.to_string(),
                        image: image.clone(),
                        network: NETWORK_NAME.to_string(),
                        ip: ip.clone(),
                        script,
                        labels: vec![(LABEL_SERVICE.to_string(), w.key()), (LABEL_RULES.to_string(), rules)],
                    };
                    docker.create_container(&name, service_lb_body(&spec)).await?;
                    docker.start_container(&name).await?;
                    lease.release().await?;
                    let ports: Vec<String> = w.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect();
                    status.info(format!("{}: {ip} ({})", w.key(), ports.join(", ")));
                    ip
                }
            };
            if w.current_ip.as_deref() != Some(ip.as_str()) {
                set_ingress(client, &w.namespace, &w.name, Some(&ip)).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = served {
            said.say(status, format!("{}: {e}; trying again at the next pass", w.key()));
        }
    }
    for f in existing.iter().filter(|f| !wanted.iter().any(|w| w.key() == f.service)) {
        docker.remove_container(&f.name).await?;
        status.info(format!("{}: no longer a LoadBalancer Service; its address is released", f.service));
    }
    Ok(())
}

/// Writes (or, with `None`, clears) the Service's load balancer ingress.
async fn set_ingress(client: &kube::Client, namespace: &str, name: &str, ip: Option<&str>) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let ingress = match ip {
        Some(ip) => serde_json::json!([{ "ip": ip }]),
        None => serde_json::json!([]),
    };
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(crate::kube::KubeError::from)?;
    Ok(())
}

/// The Kubernetes nodes' addresses on berth's network.
async fn node_addresses(docker: &dyn Runtime, cluster_nodes: &[super::NodeInfo]) -> Result<Vec<String>> {
    let mut ips = Vec::new();
    for n in cluster_nodes.iter().filter(|n| n.is_kubernetes_node()) {
        ips.push(docker.container_ip(&n.name, NETWORK_NAME).await?);
    }
    ips.sort();
    Ok(ips)
}

/// The image of the cluster's first control plane: it has `sh` and `iptables`, and it is here.
fn node_image(cluster_nodes: &[super::NodeInfo], cluster: &str) -> Result<String> {
    let cp = cluster_nodes
        .iter()
        .find(|n| n.role == super::NodeRole::ControlPlane)
        .ok_or_else(|| super::ClusterError::NotFound(cluster.to_string()))?;
    Ok(cp.image.clone())
}

/// Serves `cluster`'s LoadBalancer Services until `stop` resolves, then removes the forwarders
/// and clears the addresses it wrote. While the cluster is stopped it waits and carries on.
pub async fn serve(docker: &dyn Runtime, cluster: &str, status: &Status, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    let cluster_nodes = nodes(docker, cluster).await?;
    // One server per cluster: a second would fight over the forwarders, and its Ctrl-C would
    // remove the first's.
    let lease = Lease::acquire(docker, &lease_name(cluster), &node_image(&cluster_nodes, cluster)?, Duration::ZERO).await?;
    tokio::pin!(stop);
    let mut said = Pass::default();
    let mut client: Option<kube::Client> = None;
    let mut changes = crate::wait::poll_only();
    loop {
        if client.is_none() {
            if let Ok(doc) = kubeconfig_for(docker, cluster, false).await {
                if let Ok(c) = crate::kube::client(&doc).await {
                    changes = crate::kube::changes(Api::<Service>::all(c.clone()), None);
                    client = Some(c);
                }
            }
        }
        if let Some(c) = &client {
            if let Err(e) = reconcile(docker, cluster, c, status, &mut said).await {
                said.say(status, format!("waiting for cluster {cluster:?}: {e}"));
                client = None;
            } else {
                said.said.retain(|m| !m.starts_with("waiting for cluster"));
            }
        }
        use futures_util::StreamExt;
        tokio::select! {
            _ = &mut stop => break,
            _ = changes.next() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
    let released = release(docker, cluster, client.as_ref(), status).await;
    lease.release().await?;
    released
}

/// The lease `berth load-balancer` holds while it serves `cluster`.
fn lease_name(cluster: &str) -> String {
    format!("load-balancer-{cluster}")
}

/// Ctrl-C: forwarders removed, and the addresses they served taken out of the Services' status.
async fn release(docker: &dyn Runtime, cluster: &str, client: Option<&kube::Client>, status: &Status) -> Result<()> {
    let made = forwarders(docker, cluster).await?;
    for f in &made {
        docker.remove_container(&f.name).await?;
        if let (Some(client), Some((namespace, name))) = (client, f.service.split_once('/')) {
            if let Err(e) = set_ingress(client, namespace, name, None).await {
                tracing::debug!("clearing the address of {}: {e}", f.service);
            }
        }
    }
    status.info(format!("Removed {} load balancer(s) of cluster {cluster:?}", made.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn serves_load_balancers_without_a_class_that_have_node_ports() {
        let services = [
            service("metadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 172.18.250.1\n  ports: [{port: 80, nodePort: 30080}, {port: 53, protocol: UDP, nodePort: 30053}]\nstatus: {loadBalancer: {ingress: [{ip: 172.18.128.9}]}}"),
            service("metadata: {name: cp, namespace: default}\nspec: {type: ClusterIP, ports: [{port: 80}]}"),
            service("metadata: {name: other, namespace: x}\nspec: {type: LoadBalancer, loadBalancerClass: example.com/lb, ports: [{port: 80, nodePort: 30081}]}"),
            service("metadata: {name: bare, namespace: x}\nspec: {type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{port: 80}]}"),
        ];
        let (wanted, skipped) = wanted(&services);
        assert_eq!(wanted.len(), 1);
        let w = &wanted[0];
        assert_eq!(w.key(), "default/web");
        assert_eq!(w.ports[0], LbPort { protocol: Protocol::Tcp, port: 80, node_port: 30080 });
        assert_eq!(w.ports[1].protocol, Protocol::Udp);
        assert_eq!((w.requested_ip.as_deref(), w.current_ip.as_deref()), (Some("172.18.250.1"), Some("172.18.128.9")));
        assert!(skipped[0].contains("x/other") && skipped[0].contains("another implementation"), "{skipped:?}");
        assert!(skipped[1].contains("x/bare") && skipped[1].contains("NodePort"), "{skipped:?}");
    }

    #[test]
    fn the_script_spreads_each_port_over_every_node() {
        let ports = [LbPort { protocol: Protocol::Udp, port: 53, node_port: 30053 }];
        let script = forwarder_script(&ports, &["10.0.0.2".into(), "10.0.0.3".into(), "10.0.0.4".into()]);
        let rules: Vec<&str> = script.lines().filter(|l| l.contains("DNAT")).collect();
        assert_eq!(rules.len(), 3);
        assert!(
            rules[0].contains("-p udp --dport 53 -m statistic --mode random --probability 0.33333 -j DNAT --to-destination 10.0.0.2:30053")
        );
        assert!(rules[1].contains("--probability 0.50000") && rules[1].ends_with("10.0.0.3:30053"));
        assert!(!rules[2].contains("statistic") && rules[2].ends_with("10.0.0.4:30053"), "the last takes the rest");
        assert!(script.contains("MASQUERADE"));
    }

    #[test]
    fn addresses_prefer_what_was_asked_then_what_was_held() {
        let subnet = Cidr::parse("172.18.0.0/16").unwrap();
        let used: BTreeSet<Ipv4Addr> = ["172.18.128.1".parse().unwrap()].into();
        let w = |requested: Option<&str>, current: Option<&str>| Wanted {
            namespace: "d".into(),
            name: "s".into(),
            ports: Vec::new(),
            requested_ip: requested.map(String::from),
            current_ip: current.map(String::from),
        };
        assert_eq!(choose_address(subnet, &used, &w(None, None)).unwrap().to_string(), "172.18.128.2", "the next free pinned address");
        assert_eq!(choose_address(subnet, &used, &w(None, Some("172.18.200.7"))).unwrap().to_string(), "172.18.200.7");
        assert_eq!(choose_address(subnet, &used, &w(None, Some("172.18.128.1"))).unwrap().to_string(), "172.18.128.2", "taken: a new one");
        assert_eq!(choose_address(subnet, &used, &w(Some("172.18.250.1"), None)).unwrap().to_string(), "172.18.250.1");
        let refused = choose_address(subnet, &used, &w(Some("10.1.2.3"), None)).unwrap_err();
        assert!(refused.contains("loadBalancerIP 10.1.2.3 is not a free address on berth's network"), "{refused}");
    }

    #[test]
    fn forwarder_names_differ_where_dashes_would_make_them_alike() {
        let w = |namespace: &str, name: &str| Wanted {
            namespace: namespace.into(),
            name: name.into(),
            ports: Vec::new(),
            requested_ip: None,
            current_ip: None,
        };
        let names = [forwarder_name("x", &w("y-z", "w")), forwarder_name("x", &w("y", "z-w")), forwarder_name("x-lb-y", &w("z", "w"))];
        assert!(names[0].starts_with("x-lb-y-z-w-"), "{names:?}");
        assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2], "{names:?}");
        assert_eq!(forwarder_name("x", &w("y-z", "w")), names[0], "the same Service, the same name");
    }
}
