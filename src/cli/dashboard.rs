//! `berth dashboard`: where the Dashboard add-on is, and the token to log in with.

use crate::runtime::Docker;
use crate::{addons, cluster, kube, ui};

use super::NameArg;

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Also open the URL in a browser (xdg-open)
    #[arg(long)]
    pub open: bool,
}

pub async fn run(args: DashboardArgs, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let doc = cluster::kubeconfig_for(&docker, &args.name.name, false).await?;
    let client = kube::client(&doc).await?;
    let token = addons::dashboard_token(&client).await?;
    let context = crate::kubeconfig::context_name(&args.name.name);
    let url = addons::dashboard_proxy_url();
    println!("Dashboard: {url}");
    println!("  (start the proxy first: kubectl proxy --context {context})");
    println!("Token:     {token}");
    if args.open {
        match std::process::Command::new("xdg-open").arg(&url).status() {
            Ok(s) if s.success() => {}
            _ => status.warn(format!("could not open a browser; open {url} yourself")),
        }
    }
    Ok(())
}
