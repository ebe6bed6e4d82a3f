//! Step 2: `kubeadm init` on the first control-plane node, then an API client for what it made.

use std::collections::BTreeMap;

use super::super::options::CreateOptions;
use super::{Ctx, Initialized, Plan, PlannedNode, Provisioned};
use crate::cluster::{BootstrapError, ClusterError, Result};
use crate::config::{PatchJson6902, Role};
use crate::kubeadm::{self, NodeJoin, Params};
use crate::kubeconfig;
use crate::runtime::{Runtime, API_SERVER_PORT};

/// Where the rendered kubeadm config goes in each node (kind's path, for familiarity).
pub const KUBEADM_CONFIG_PATH: &str = "/kind/kubeadm.conf";

/// The label kubeadm puts on control planes to keep external load balancers off them.
const EXCLUDE_FROM_LOAD_BALANCERS: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The container every node reaches the API server through: the load balancer when there is
/// one, else the control plane.
pub fn endpoint_container(opts: &CreateOptions, plan: &Plan) -> String {
    if plan.is_ha() {
        super::loadbalancer::lb_name(&opts.name)
    } else {
        plan.control_plane().name.clone()
    }
}

/// How `node` comes into the cluster: the first control plane inits, the others join.
pub fn join_kind(plan: &Plan, node: &PlannedNode) -> NodeJoin {
    match node.role {
        _ if node.name == plan.control_plane().name => NodeJoin::Init,
        Role::ControlPlane => NodeJoin::Join { control_plane: true },
        Role::Worker => NodeJoin::Join { control_plane: false },
    }
}

/// The kubeadm parameters for `node`; joins pin the CA by `ca_cert_hash` (from init).
pub fn params_for(opts: &CreateOptions, plan: &Plan, nodes: &Provisioned, ca_cert_hash: Option<&str>, node: &PlannedNode) -> Params {
    let cfg = &opts.config;
    let cp = plan.control_plane();
    let cp_ip = nodes.node_ips.get(&cp.name).cloned().unwrap_or_default();
    let endpoint = endpoint_container(opts, plan);
    let mut cert_sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), cp.name.clone(), cp_ip];
    if endpoint != cp.name {
        cert_sans.push(endpoint.clone());
    }
    let addr = cfg.api_server_address().to_string();
    if !cert_sans.contains(&addr) && addr != "0.0.0.0" {
        cert_sans.push(addr);
    }
    Params {
        version: nodes.version,
        cluster_name: opts.name.clone(),
        node_name: node.name.clone(),
        node_ip: nodes.node_ips.get(&node.name).cloned().unwrap_or_default(),
        control_plane_endpoint: format!("{endpoint}:{API_SERVER_PORT}"),
        pod_subnet: cfg.pod_subnet().to_string(),
        service_subnet: cfg.service_subnet().to_string(),
        cgroup: nodes.cgroup,
        kube_proxy_mode: cfg.kube_proxy_mode(),
        cert_sans,
        feature_gates: cfg.feature_gates.clone(),
        runtime_config: cfg.runtime_config.clone(),
        node_labels: cfg.nodes[node.index].labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
        schedulable_control_plane: !plan.nodes.iter().any(|n| n.role == Role::Worker),
        single_control_plane: plan.nodes.iter().filter(|n| n.role == Role::ControlPlane).count() == 1,
        hostpath_provisioner: nodes.default_storage.as_deref().is_some_and(super::storage::uses_hostpath_provisioner),
        rootless: nodes.rootless,
        token: plan.token.clone(),
        ca_cert_hash: ca_cert_hash.map(str::to_string),
        certificate_key: plan.certificate_key.clone(),
        join: join_kind(plan, node),
    }
}

/// `node`'s kubeadm config file: berth's documents, then the cluster's patches and the node's
/// own (merge patches first, then RFC 6902 ones, as kind applies them).
pub fn render_for(
    opts: &CreateOptions,
    plan: &Plan,
    nodes: &Provisioned,
    ca_cert_hash: Option<&str>,
    node: &PlannedNode,
) -> Result<String> {
    let cfg = &opts.config;
    let own = &cfg.nodes[node.index];
    let merge: Vec<String> = cfg.kubeadm_config_patches.iter().chain(&own.kubeadm_config_patches).cloned().collect();
    let json6902: Vec<PatchJson6902> =
        cfg.kubeadm_config_patches_json6902.iter().chain(&own.kubeadm_config_patches_json6902).cloned().collect();
    Ok(kubeadm::render(&params_for(opts, plan, nodes, ca_cert_hash, node), &merge, &json6902)?)
}

/// Replaces secrets in kubeadm's output before it is logged.
pub fn redact(text: &str, token: &str, certificate_key: Option<&str>) -> String {
    let secret_half = token.split('.').nth(1).unwrap_or(token);
    let text = text.replace(token, "<token>").replace(secret_half, "<token-secret>");
    match certificate_key {
        Some(key) => text.replace(key, "<certificate-key>"),
        None => text,
    }
}

/// Runs a kubeadm phase in a node; on failure the error carries kubeadm's last lines.
pub async fn run_kubeadm(ctx: &Ctx<'_>, node: &str, phase: &'static str, args: &[&str]) -> Result<String> {
    let out = ctx.docker.exec(node, args).await?;
    let key = ctx.plan.certificate_key.as_deref();
    tracing::trace!("kubeadm {phase} on {node}:\n{}", redact(&format!("{}{}", out.stdout, out.stderr), &ctx.plan.token, key));
    if out.code != 0 {
        return Err(ClusterError::from(BootstrapError::KubeadmFailed {
            phase,
            node: node.to_string(),
            tail: redact(&out.tail(25), &ctx.plan.token, key),
        }));
    }
    Ok(out.stdout)
}

/// What `kubeadm join --discovery-token-ca-cert-hash` pins: the key of the CA in `control_plane`'s
/// `ca.crt`, hashed as kubeadm hashes it. A failure is reported as `phase` of `node`.
pub async fn ca_cert_hash_of(docker: &dyn Runtime, control_plane: &str, phase: &'static str, node: &str) -> Result<String> {
    let ca = docker.exec_ok(control_plane, &["cat", "/etc/kubernetes/pki/ca.crt"]).await?;
    kubeadm::ca_cert_hash(ca.as_bytes()).ok_or_else(|| {
        ClusterError::from(BootstrapError::KubeadmFailed {
            phase,
            node: node.to_string(),
            tail: format!("{control_plane}'s /etc/kubernetes/pki/ca.crt is not a certificate; joining nodes pin its key"),
        })
    })
}

pub async fn run(ctx: &Ctx<'_>, nodes: &Provisioned) -> Result<Initialized> {
    let cp = ctx.control_plane().clone();
    let rendered = render_for(ctx.opts, &ctx.plan, nodes, None, &cp)?;
    let patches: Vec<(String, &str)> =
        kubeadm::patch_files(nodes.version).into_iter().map(|(name, text)| (format!("{}/{name}", kubeadm::PATCHES_DIR), text)).collect();
    let mut files = vec![(KUBEADM_CONFIG_PATH, rendered.as_bytes(), 0o600)];
    files.extend(patches.iter().map(|(path, text)| (path.as_str(), text.as_bytes(), 0o644)));
    ctx.docker.write_files(&cp.name, &files).await?;
    let config_flag = format!("--config={KUBEADM_CONFIG_PATH}");
    let mut args = vec!["kubeadm", "init", kubeadm::skipped_phases(ctx.opts.config.kube_proxy_mode()), &config_flag];
    if ctx.is_ha() {
        // The other control planes fetch the cluster's certificates from the API.
        args.push("--upload-certs");
    }
    run_kubeadm(ctx, &cp.name, "init", &args).await?;
    let ca_cert_hash = if ctx.plan.nodes.len() > 1 { Some(ca_cert_hash_of(ctx.docker, &cp.name, "init", &cp.name).await?) } else { None };

    let admin = ctx.docker.exec_ok(&cp.name, &["cat", "/etc/kubernetes/admin.conf"]).await?;
    let port = ctx.docker.published_port(&endpoint_container(ctx.opts, &ctx.plan), &format!("{API_SERVER_PORT}/tcp")).await?;
    let server = crate::cluster::host_server_url(ctx.opts.config.api_server_address(), port);
    let entries = kubeconfig::for_cluster(&admin, &ctx.opts.name, &server)?;
    let client = ctx.api.connect(&entries).await?;
    crate::kube::wait_for_api(&client, tokio::time::Instant::now() + std::time::Duration::from_secs(60)).await?;
    if !ctx.plan.nodes.iter().any(|n| n.role == Role::Worker) {
        // kubeadm (1.19+) keeps cloud load balancers off control planes with this label; with no
        // workers that would leave LoadBalancer Services nowhere to go. kind removes it too.
        crate::kube::remove_node_label(&client, &cp.name, EXCLUDE_FROM_LOAD_BALANCERS).await?;
    }
    Ok(Initialized { client, kubeconfig: entries, ca_cert_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_and_certificate_keys() {
        let out = "kubeadm join c:6443 --token abcdef.0123456789abcdef \\\n    --discovery-token-ca-cert-hash sha256:0a1b2c \n";
        let red = redact(&format!("{out} --certificate-key 00ff"), "abcdef.0123456789abcdef", Some("00ff"));
        assert!(!red.contains("0123456789abcdef") && !red.contains("00ff"), "{red}");
    }
}
