//! Step 2: `kubeadm init` on the first control-plane node, then an API client for what it made.

use std::collections::BTreeMap;

use super::super::{ClusterError, Result};
use super::{Ctx, Initialized, PlannedNode, Provisioned};
use crate::kubeadm::{self, NodeJoin, Params};
use crate::kubeconfig;
use crate::runtime::API_SERVER_PORT;

/// Where the rendered kubeadm config goes in each node (kind's path, for familiarity).
pub const KUBEADM_CONFIG_PATH: &str = "/kind/kubeadm.conf";

/// The label kubeadm puts on control planes to keep external load balancers off them.
const EXCLUDE_FROM_LOAD_BALANCERS: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, from the OS's random source.
pub fn new_bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 22];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}.{}", &chars[..6], &chars[6..])
}

/// A key for kubeadm's uploaded certificates: 32 random bytes, hex.
pub fn new_certificate_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The container every node reaches the API server through: the load balancer when there is
/// one, else the control plane.
pub fn endpoint_container(ctx: &Ctx<'_>) -> String {
    if ctx.is_ha() {
        super::loadbalancer::lb_name(&ctx.opts.name)
    } else {
        ctx.control_plane().name.clone()
    }
}

/// The kubeadm parameters for `node`; joins pin the CA by `ca_cert_hash` (from init).
pub fn params_for(ctx: &Ctx<'_>, nodes: &Provisioned, ca_cert_hash: Option<&str>, node: &PlannedNode, join: NodeJoin) -> Params {
    let cfg = &ctx.opts.config;
    let cp = ctx.control_plane();
    let cp_ip = nodes.node_ips.get(&cp.name).cloned().unwrap_or_default();
    let endpoint = endpoint_container(ctx);
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
        cluster_name: ctx.opts.name.clone(),
        node_name: node.name.clone(),
        node_ip: nodes.node_ips.get(&node.name).cloned().unwrap_or_default(),
        control_plane_endpoint: format!("{endpoint}:{API_SERVER_PORT}"),
        pod_subnet: cfg.pod_subnet().to_string(),
        service_subnet: cfg.service_subnet().to_string(),
        cgroup_driver: nodes.cgroup_driver.clone(),
        kube_proxy_mode: cfg.networking.kube_proxy_mode.clone().unwrap_or_else(|| "iptables".into()),
        cert_sans,
        feature_gates: cfg.feature_gates.clone(),
        runtime_config: cfg.runtime_config.clone(),
        node_labels: cfg.nodes[node.index].labels.clone().into_iter().collect::<BTreeMap<_, _>>(),
        schedulable_control_plane: !ctx.nodes.iter().any(|n| n.role == crate::config::Role::Worker),
        hostpath_provisioner: nodes.default_storage.as_deref().is_some_and(super::storage::uses_hostpath_provisioner),
        token: ctx.token.clone(),
        ca_cert_hash: ca_cert_hash.map(str::to_string),
        certificate_key: ctx.certificate_key.clone(),
        join,
    }
}

/// The patches for `node`: the cluster's, then the node's own.
pub fn patches_for(ctx: &Ctx<'_>, node: &PlannedNode) -> Vec<String> {
    let cfg = &ctx.opts.config;
    cfg.kubeadm_config_patches.iter().chain(&cfg.nodes[node.index].kubeadm_config_patches).cloned().collect()
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
    let key = ctx.certificate_key.as_deref();
    tracing::trace!("kubeadm {phase} on {node}:\n{}", redact(&format!("{}{}", out.stdout, out.stderr), &ctx.token, key));
    if out.code != 0 {
        return Err(ClusterError::KubeadmFailed { phase, node: node.to_string(), tail: redact(&out.tail(25), &ctx.token, key) });
    }
    Ok(out.stdout)
}

/// kubeadm init prints the join command with the CA's public-key hash; joins pin it.
pub fn ca_cert_hash_from(output: &str) -> Option<String> {
    let at = output.find("--discovery-token-ca-cert-hash")?;
    output[at..].split_whitespace().nth(1).filter(|h| h.starts_with("sha256:")).map(str::to_string)
}

pub async fn run(ctx: &Ctx<'_>, nodes: &Provisioned) -> Result<Initialized> {
    let cp = ctx.control_plane().clone();
    let params = params_for(ctx, nodes, None, &cp, NodeJoin::Init);
    let rendered = kubeadm::render(&params, &patches_for(ctx, &cp))?;
    ctx.docker.write_files(&cp.name, &[(KUBEADM_CONFIG_PATH, rendered.as_bytes(), 0o600)]).await?;
    let config_flag = format!("--config={KUBEADM_CONFIG_PATH}");
    let mut args = vec!["kubeadm", "init", "--skip-phases=preflight", &config_flag];
    if ctx.is_ha() {
        // The other control planes fetch the cluster's certificates from the API.
        args.push("--upload-certs");
    }
    let out = run_kubeadm(ctx, &cp.name, "init", &args).await?;
    let ca_cert_hash = ca_cert_hash_from(&out);
    if ca_cert_hash.is_none() && ctx.nodes.len() > 1 {
        let tail = "(kubeadm init printed no CA certificate hash, which joining nodes need)".to_string();
        return Err(ClusterError::KubeadmFailed { phase: "init", node: cp.name.clone(), tail });
    }

    let admin = ctx.docker.exec_ok(&cp.name, &["cat", "/etc/kubernetes/admin.conf"]).await?;
    let port = ctx.docker.published_port(&endpoint_container(ctx), &format!("{API_SERVER_PORT}/tcp")).await?;
    let server = crate::cluster::host_server_url(ctx.opts.config.api_server_address(), port);
    let entries = kubeconfig::for_cluster(&admin, &ctx.opts.name, &server)?;
    let client = ctx.api.connect(&entries).await?;
    crate::kube::wait_for_api(&client, tokio::time::Instant::now() + std::time::Duration::from_secs(60)).await?;
    if params.schedulable_control_plane {
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
    fn tokens_have_kubeadms_shape() {
        let t = new_bootstrap_token();
        let (id, secret) = t.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(t.bytes().all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(t, new_bootstrap_token());
    }

    #[test]
    fn finds_the_ca_hash_and_redacts_tokens() {
        let out = "kubeadm join c:6443 --token abcdef.0123456789abcdef \\\n    --discovery-token-ca-cert-hash sha256:0a1b2c \n";
        assert_eq!(ca_cert_hash_from(out).as_deref(), Some("sha256:0a1b2c"));
        let red = redact(&format!("{out} --certificate-key 00ff"), "abcdef.0123456789abcdef", Some("00ff"));
        assert!(!red.contains("0123456789abcdef") && !red.contains("00ff"), "{red}");
    }
}
