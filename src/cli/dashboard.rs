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
    /// How long the printed token is valid, e.g. 1h (at least 10m, the API's floor)
    #[arg(long, default_value = "1h", value_parser = super::create::parse_wait)]
    pub duration: std::time::Duration,
}

pub async fn run(args: DashboardArgs, status: &ui::Status) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let doc = cluster::kubeconfig_for(&docker, &args.name.name, false).await?;
    let client = kube::client(&doc).await?;
    let token = addons::dashboard_token(&client, args.duration).await?;
    let context = crate::kubeconfig::context_name(&args.name.name);
    let url = addons::dashboard_proxy_url();
    println!("Dashboard: {url}");
    println!("  (start the proxy first: kubectl proxy --context {context})");
    println!("Token:     {token}");
    println!(
        "  (valid for {}; `berth dashboard` issues a new one)",
        humantime::format_duration(args.duration.max(addons::MIN_TOKEN_DURATION))
    );
    if args.open {
        match std::process::Command::new("xdg-open").arg(&url).status() {
            Ok(s) if s.success() => {}
            _ => status.warn(format!("could not open a browser; open {url} yourself")),
        }
    }
    Ok(())
}
