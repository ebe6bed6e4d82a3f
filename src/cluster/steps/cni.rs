//! Step 4: the default pod network. Each node bridges its own pod CIDR (given by the
//! controller-manager) with the reference CNI plugins shipped in the node image, and routes every
//! other node's pod CIDR via that node's address on berth's network. No image is pulled.
//!
//! The routes are set from here, once; a node restarted later loses them (a network agent that
//! keeps them is future work, tracked with the multi-node issue).

use std::time::Duration;

use futures_util::future::try_join_all;

use super::super::create::Ctx;
use super::super::{ClusterError, Result};

const CIDR_TIMEOUT: Duration = Duration::from_secs(120);
pub const CNI_CONFIG_PATH: &str = "/etc/cni/net.d/10-berth-bridge.conflist";

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
                // Pod traffic leaving the pod network (to the internet, to nodes) is NATed to the
                // node address; traffic between pod CIDRs is routed, not NATed, by the routes.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }))
    .expect("static JSON")
}

pub async fn run(ctx: &mut Ctx<'_>) -> Result<()> {
    let ctx = &*ctx;
    let deadline = tokio::time::Instant::now() + CIDR_TIMEOUT;
    let cidrs = try_join_all(ctx.nodes.iter().map(|n| async move {
        let cidr = crate::kube::wait_for_pod_cidr(ctx.client(), &n.name, deadline).await?;
        Ok::<_, ClusterError>((n.name.clone(), cidr))
    }))
    .await?;
    let pod_subnet = ctx.opts.config.pod_subnet().to_string();
    try_join_all(cidrs.iter().map(|(node, cidr)| {
        let others: Vec<(String, String)> = cidrs
            .iter()
            .filter(|(other, _)| other != node)
            .map(|(other, c)| (c.clone(), ctx.node_ips[other].clone()))
            .collect();
        configure_node(ctx, node, cidr, others, pod_subnet.clone())
    }))
    .await?;
    Ok(())
}

async fn configure_node(ctx: &Ctx<'_>, node: &str, cidr: &str, routes: Vec<(String, String)>, pod_subnet: String) -> Result<()> {
    let mut script = String::from("set -e\n");
    for (dst, via) in &routes {
        script.push_str(&format!("ip route replace {dst} via {via}\n"));
    }
    // Masquerade only what leaves the pod network, so pods see each other's real addresses.
    script.push_str(&format!(
        "iptables -t nat -C POSTROUTING -s {pod_subnet} ! -d {pod_subnet} -j MASQUERADE 2>/dev/null || \
         iptables -t nat -A POSTROUTING -s {pod_subnet} ! -d {pod_subnet} -j MASQUERADE\n"
    ));
    ctx.docker.exec_ok(node, &["sh", "-c", &script]).await?;
    // Written last: the kubelet reports the node Ready as soon as a CNI config exists.
    ctx.docker.write_files(node, &[(CNI_CONFIG_PATH, bridge_conflist(cidr).as_bytes(), 0o644)]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflist_carries_the_node_cidr() {
        let v: serde_json::Value = serde_json::from_str(&super::bridge_conflist("10.244.1.0/24")).unwrap();
        assert_eq!(v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(v["plugins"][0]["type"], "bridge");
    }
}
