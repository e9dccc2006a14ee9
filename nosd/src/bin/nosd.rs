//! The NOS daemon.

use clap::{Parser, Subcommand};
use nosd::daemon::{self, Options};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "nosd",
    version,
    about = "NOS control plane daemon: config store, routing and the forwarding target",
    long_about = "nosd keeps its configuration in a sled store with numbered commits, computes \
connected and static routes into one forwarding model, and programs the x86 software dataplane \
(AF_PACKET on the Linux interfaces named in the config). Manage it with nosctl."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// Configuration file (YAML); committed at start when it differs from the newest commit.
        /// Without it, nosd resumes from the newest commit in the store.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Directory of the config store.
        #[arg(long, default_value = "/var/lib/nosd")]
        state_dir: PathBuf,
        /// Management socket for nosctl.
        #[arg(long, default_value = nosd::api::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// TUN device that gives the router's addresses to the kernel for its own
        /// traffic (BGP, pings to the router); `none` to run without one.
        #[arg(long, default_value = "nos0")]
        host_interface: String,
        /// Serve gNMI (configuration and state on OpenConfig paths) on this address, e.g.
        /// `127.0.0.1:9339`. Off unless given. For now the server is plain-text
        /// gRPC with no TLS and no authentication: whoever reaches the address can
        /// read and change the configuration, so bind it to a trusted address only.
        #[arg(long, value_name = "ADDR")]
        gnmi_addr: Option<std::net::SocketAddr>,
        /// Log filter, e.g. `info`, `debug`, `info,routing=debug` (RUST_LOG overrides it).
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Build a lab of network namespaces, route pings through the x86 dataplane, clean up.
    Demo {
        /// Keep the lab running until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Validate a configuration file and print every error with its field path.
    Check { file: PathBuf },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            config,
            state_dir,
            socket,
            host_interface,
            gnmi_addr,
            log_level,
        } => {
            let filter = EnvFilter::try_from_default_env()
                .or_else(|_| EnvFilter::try_new(&log_level))
                .unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(true)
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(daemon::run(Options {
                        config,
                        state_dir,
                        socket,
                        host_interface: (host_interface != "none").then_some(host_interface),
                        gnmi_addr,
                    }))
                })
        }
        Cmd::Demo { keep } => nosd::demo::run(keep),
        Cmd::Check { file } => {
            daemon::load_config_file(&file).map(|_| println!("{}: valid", file.display()))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nosd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
