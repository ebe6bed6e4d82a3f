//! The command line: clap types, one file per command. A command turns its flags into options
//! and calls the library (cluster, node_image, kubeconfig); no Docker or kubeadm logic here.
//! [`main`] maps every error to one message and an exit code: 0 success, 1 failure, 2 usage.

mod build;
mod create;
mod dashboard;
mod delete;
mod get;
mod lifecycle;
mod load;
mod load_balancer;
mod snapshot;

use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::ui;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Disposable, real Kubernetes clusters on this machine, with Docker containers as nodes",
    long_about = "berth creates Kubernetes clusters whose nodes are Docker containers, bootstrapped by kubeadm.\n\
                  Try: berth create cluster, then kubectl get nodes, then berth delete cluster."
)]
pub struct Cli {
    /// More detail on stderr: -v step timings, -vv what berth does, -vvv also kubeadm's whole output (secrets redacted)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbosity: u8,
    /// Print only errors and warnings
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster
    Create {
        #[command(subcommand)]
        what: create::CreateWhat,
    },
    /// Delete one cluster or several
    Delete {
        #[command(subcommand)]
        what: delete::DeleteWhat,
    },
    /// Stop a cluster without deleting it
    Stop {
        #[command(subcommand)]
        what: lifecycle::StopWhat,
    },
    /// Start a stopped cluster
    Start {
        #[command(subcommand)]
        what: lifecycle::StartWhat,
    },
    /// Show clusters, nodes or a cluster's kubeconfig
    Get {
        #[command(subcommand)]
        what: get::GetWhat,
    },
    /// Load images from the host into a cluster's nodes
    Load {
        #[command(subcommand)]
        what: load::LoadWhat,
    },
    /// Write a cluster's kubeconfig context, or its logs
    Export {
        #[command(subcommand)]
        what: get::ExportWhat,
    },
    /// Print the Dashboard add-on's URL and login token
    Dashboard(dashboard::DashboardArgs),
    /// Give a cluster's LoadBalancer Services addresses reachable from this host, until Ctrl-C
    LoadBalancer(load_balancer::LoadBalancerArgs),
    /// Save a cluster as a snapshot, list snapshots, delete one (restore: create cluster --from-snapshot)
    Snapshot {
        #[command(subcommand)]
        what: snapshot::SnapshotWhat,
    },
    /// Build a node image
    Build {
        #[command(subcommand)]
        what: build::BuildWhat,
    },
    /// Print berth's version
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `-o` on the get commands: names one per line by default, as kind prints them, so
/// `for c in $(berth get clusters)` works; a table with `wide`; JSON with `json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Wide,
    Json,
}

/// `--kubeconfig`, shared by the commands that write or clean it.
#[derive(Debug, clap::Args)]
pub struct KubeconfigArg {
    /// The kubeconfig file to update (default, as kubectl chooses: the first file of $KUBECONFIG
    /// that exists, else its last, else ~/.kube/config)
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

/// `--name`, shared by the commands about one cluster.
#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// The cluster's name
    #[arg(short, long, default_value = crate::cluster::DEFAULT_CLUSTER_NAME, env = "BERTH_CLUSTER_NAME")]
    pub name: String,
}

/// Runs berth with the process's arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    ui::init_logging(cli.verbosity);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ERROR: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            report(&e);
            1
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One clear message; the cause chain only where it adds something.
fn report(e: &anyhow::Error) {
    let mut msg = format!("ERROR: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(&format!(": {c}"));
        }
    }
    eprintln!("{msg}");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let outcome = run_command(cli).await;
    // A lease an interrupted or failed command dropped is being given back: not cut off here;
    // and one whose create an interrupt cut off in flight (no `Lease` was made for it, so a plain
    // error cannot leave one) is found by its holder's mark.
    crate::runtime::Lease::settle(std::time::Duration::from_secs(10)).await;
    if outcome.is_err() && crate::interrupt::received() {
        if let Ok(docker) = crate::runtime::Docker::connect().await {
            if let Err(e) = crate::runtime::Lease::sweep_mine(&docker).await {
                tracing::warn!("removing this command's leases: {e}");
            }
        }
    }
    outcome
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    let status = if cli.quiet { ui::Status::quiet() } else { ui::Status::new(false) };
    match cli.command {
        Command::Create { what } => create::run(what, &status).await,
        Command::Delete { what } => delete::run(what, &status).await,
        Command::Stop { what } => lifecycle::stop(what, &status).await,
        Command::Start { what } => lifecycle::start(what, &status).await,
        Command::Get { what } => get::run(what).await,
        Command::Load { what } => load::run(what, &status).await,
        Command::Export { what } => get::export(what, &status).await,
        Command::Build { what } => build::run(what, &status).await,
        Command::Snapshot { what } => snapshot::run(what, &status).await,
        Command::Dashboard(args) => dashboard::run(args, &status).await,
        Command::LoadBalancer(args) => load_balancer::run(args, &status).await,
        Command::Version => {
            println!("berth {} ({} {})", env!("CARGO_PKG_VERSION"), std::env::consts::OS, std::env::consts::ARCH);
            Ok(())
        }
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut script);
            write_stdout(&script)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
