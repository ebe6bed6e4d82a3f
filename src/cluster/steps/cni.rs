//! Step 4: the default pod network. Like kind, berth installs the manifest the node image
//! carries at /kind/manifests/default-cni.yaml (with `{{ .PodSubnet }}` filled in): berth's own
//! images bring berth-netd, kindest/node images bring kindnetd. An image without that manifest
//! gets a static network instead: each node bridges its pod CIDR, routes to the others are set
//! once from here (they do not survive a node restart; berth warns).

use std::time::Duration;

use futures_util::future::try_join_all;

use super::super::create::Ctx;
use super::super::{ClusterError, Result};

const CIDR_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_CNI_MANIFEST: &str = "/kind/manifests/default-cni.yaml";
pub const STATIC_CNI_CONFIG_PATH: &str = "/etc/cni/net.d/10-berth-bridge.conflist";

/// Fills kind's template variable; the manifests use no other.
pub fn render_manifest(manifest: &str, pod_subnet: &str) -> String {
    manifest.replace("{{ .PodSubnet }}", pod_subnet).replace("{{.PodSubnet}}", pod_subnet)
}

pub async fn run(ctx: &mut Ctx<'_>) -> Result<()> {
    let cp = ctx.control_plane().name.clone();
    let manifest = ctx.docker.exec(&cp, &["cat", DEFAULT_CNI_MANIFEST]).await?;
    if manifest.code == 0 && !manifest.stdout.trim().is_empty() {
        let rendered = render_manifest(&manifest.stdout, ctx.opts.config.pod_subnet());
        let applied = crate::kube::apply_manifest(ctx.client(), &rendered).await?;
        tracing::info!("applied {applied} objects from {DEFAULT_CNI_MANIFEST}");
        return Ok(());
    }
    ctx.warn(format!(
        "the node image has no {DEFAULT_CNI_MANIFEST}; using a static bridge network whose routes do not survive a node restart"
    ));
    static_network(ctx).await
}

/// The CNI config for a node whose pods take addresses from `pod_cidr`.
pub fn bridge_conflist(pod_cidr: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "berth",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // Traffic between pod CIDRs is routed, not NATed; what leaves the pod network is
                // masqueraded by the iptables rule below.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }))
    .expect("static JSON")
}

async fn static_network(ctx: &Ctx<'_>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + CIDR_TIMEOUT;
    let cidrs = try_join_all(ctx.nodes.iter().map(|n| async move {
        let cidr = crate::kube::wait_for_pod_cidr(ctx.client(), &n.name, deadline).await?;
        Ok::<_, ClusterError>((n.name.clone(), cidr))
    }))
    .await?;
    let pod_subnet = ctx.opts.config.pod_subnet().to_string();
    try_join_all(cidrs.iter().map(|(node, cidr)| {
        let routes: Vec<(String, String)> = cidrs
            .iter()
            .filter(|(other, _)| other != node)
            .map(|(other, c)| (c.clone(), ctx.node_ips[other].clone()))
            .collect();
        configure_node(ctx, node, cidr, routes, pod_subnet.clone())
    }))
    .await?;
    Ok(())
}

async fn configure_node(ctx: &Ctx<'_>, node: &str, cidr: &str, routes: Vec<(String, String)>, pod_subnet: String) -> Result<()> {
    let mut script = String::from("set -e\n");
    for (dst, via) in &routes {
        script.push_str(&format!("ip route replace {dst} via {via}\n"));
    }
    script.push_str(&format!(
        "iptables -t nat -C POSTROUTING -s {pod_subnet} ! -d {pod_subnet} -j MASQUERADE 2>/dev/null || \
         iptables -t nat -A POSTROUTING -s {pod_subnet} ! -d {pod_subnet} -j MASQUERADE\n"
    ));
    ctx.docker.exec_ok(node, &["sh", "-c", &script]).await?;
    // Written last: the kubelet reports the node Ready as soon as a CNI config exists.
    ctx.docker.write_files(node, &[(STATIC_CNI_CONFIG_PATH, bridge_conflist(cidr).as_bytes(), 0o644)]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_carries_the_node_cidr() {
        let v: serde_json::Value = serde_json::from_str(&bridge_conflist("10.244.1.0/24")).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(v["plugins"][0]["type"], "bridge");
    }

    #[test]
    fn shipped_manifest_renders_to_valid_objects() {
        let text = include_str!("../../../node-image/manifests/default-cni.yaml");
        let out = render_manifest(text, "10.250.0.0/16");
        assert!(!out.contains("{{"), "every template variable is filled");
        let kinds: Vec<String> = out
            .split("\n---\n")
            .map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).unwrap()["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
        assert!(out.contains("value: \"10.250.0.0/16\""));
    }
}
