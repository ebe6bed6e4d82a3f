//! The external load balancer of a cluster with several control planes: haproxy in TCP mode,
//! health-checking each API server, so the cluster's endpoint survives losing one of them.
//! Part of the provision step; its config is written before the container starts.

use super::Ctx;
use crate::cluster::Result;
use crate::runtime::{load_balancer_body, NodeMode, NodeSpec, API_SERVER_PORT, NETWORK_NAME};

/// kind's load balancer image; any image running haproxy on this config path works
/// (`BERTH_LB_IMAGE`).
pub const DEFAULT_LB_IMAGE: &str = "docker.io/kindest/haproxy:v20230606-42a2262b";
pub const LB_CONFIG_PATH: &str = "/usr/local/etc/haproxy/haproxy.cfg";

pub fn lb_name(cluster: &str) -> String {
    format!("{cluster}-external-load-balancer")
}

/// haproxy's config for these control-plane containers. Names are resolved at run time, so the
/// balancer may start before the nodes do, through the nameserver the engine wrote into the
/// balancer's resolv.conf: Docker's embedded DNS (127.0.0.11), or Podman's aardvark-dns at the
/// network's gateway.
pub fn haproxy_config(control_planes: &[String]) -> String {
    let mut cfg = String::from(
        "# written by berth\n\
         global\n  log stdout format raw local0 info\n  # well under the 20000 open files a container may have here\n  maxconn 4000\n\n\
         resolvers engine\n  parse-resolv-conf\n  hold valid 5s\n\n\
         defaults\n  log global\n  mode tcp\n  option dontlognull\n  timeout connect 5s\n  timeout client 30m\n  timeout server 30m\n  \
         default-server init-addr last,libc,none\n\n",
    );
    cfg.push_str(&format!("frontend control-plane\n  bind *:{API_SERVER_PORT}\n  default_backend kube-apiservers\n\n"));
    cfg.push_str("backend kube-apiservers\n  option httpchk GET /healthz\n");
    for cp in control_planes {
        cfg.push_str(&format!(
            "  server {cp} {cp}:{API_SERVER_PORT} check check-ssl verify none inter 2s fall 2 rise 1 resolvers engine resolve-prefer ipv4\n"
        ));
    }
    cfg
}

/// Creates and starts the load balancer, with its config in place.
pub async fn provision(ctx: &Ctx<'_>, mode: NodeMode, ip: Option<String>) -> Result<()> {
    let cfg = &ctx.opts.config;
    let name = lb_name(&ctx.opts.name);
    let spec = NodeSpec {
        name: name.clone(),
        cluster: ctx.opts.name.clone(),
        role: crate::config::Role::ControlPlane,
        image: ctx.opts.lb_image.clone(),
        mode,
        network: NETWORK_NAME.to_string(),
        runtime: ctx.opts.runtime.clone(),
        api_server: Some((cfg.api_server_address().to_string(), ctx.plan.api_server_port)),
        port_mappings: Vec::new(),
        mounts: Vec::new(),
        host_has_lib_modules: false,
        labels: ctx.labels(),
        ip,
        runtime_cni: false,
        dns_search: None,
        extra_env: Vec::new(),
        service_subnet: None,
    };
    ctx.docker.create_container(&name, load_balancer_body(&spec)).await?;
    let control_planes: Vec<String> =
        ctx.plan.nodes.iter().filter(|n| n.role == crate::config::Role::ControlPlane).map(|n| n.name.clone()).collect();
    let config = haproxy_config(&control_planes);
    ctx.docker.write_files(&name, &[(LB_CONFIG_PATH, config.as_bytes(), 0o644)]).await?;
    ctx.docker.start_container(&name).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_every_control_plane() {
        let cfg = haproxy_config(&["ha-control-plane".into(), "ha-control-plane2".into()]);
        assert!(cfg.contains("server ha-control-plane ha-control-plane:6443 check check-ssl"));
        assert!(cfg.contains("server ha-control-plane2 ha-control-plane2:6443"));
        assert!(cfg.contains("maxconn 4000"));
        assert!(cfg.contains("bind *:6443"));
        assert!(cfg.contains("resolvers engine\n  parse-resolv-conf\n"), "the engine's own nameserver, Docker's or Podman's");
    }
}
