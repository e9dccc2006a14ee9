//! The NOS daemon.

use clap::{Parser, Subcommand};
use nosd::daemon::{self, Exit, Options};
use nosd::gnmi::{GnmiOptions, Transport};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "nosd",
    version,
    about = "NOS control plane daemon: config store, routing and the forwarding target",
    long_about = "nosd keeps its configuration in a sled store with numbered commits, computes \
connected and static routes into one forwarding model, and programs the x86 software dataplane \
(AF_PACKET on the Linux interfaces named in the config) or, with `dataplane: { backend: p4runtime }`, \
a P4Runtime target (ARP, ND and BGP by packet-in and packet-out). Manage it with nosctl."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
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
    /// Serve gNMI (configuration and state on OpenConfig paths) and gNOI (System:
    /// Time, Ping, Reboot...) on this address, e.g. `0.0.0.0:9339`. Off unless given.
    /// TLS by default; every RPC must carry the metadata `username` and `password` of a
    /// user in the config's `management.users`. A gNOI COLD or WARM reboot stops nosd
    /// cleanly and starts it again in the same process with the same arguments (so a
    /// --config file is committed again if it differs from the newest commit); HALT and
    /// POWERDOWN stop it.
    #[arg(long, value_name = "ADDR")]
    gnmi_addr: Option<std::net::SocketAddr>,
    /// The gNMI server's TLS certificate (PEM, the chain with the server's own first).
    /// Without it, a self-signed certificate is generated in the state directory at
    /// first start (gnmi-cert.pem, gnmi-key.pem) and kept.
    #[arg(
        long,
        value_name = "PEM",
        requires = "gnmi_key",
        requires = "gnmi_addr"
    )]
    gnmi_cert: Option<PathBuf>,
    /// The private key of --gnmi-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "gnmi_cert")]
    gnmi_key: Option<PathBuf>,
    /// A CA certificate (PEM): gNMI clients must then present a certificate it
    /// signed (mutual TLS), besides their username and password.
    #[arg(long, value_name = "PEM", requires = "gnmi_addr")]
    gnmi_ca: Option<PathBuf>,
    /// For labs only: serve gNMI/gNOI in plain text, without TLS, and accept requests
    /// without credentials while no users are configured. The log says so loudly.
    #[arg(long, conflicts_with_all = ["gnmi_cert", "gnmi_key", "gnmi_ca"], requires = "gnmi_addr")]
    insecure: bool,
    /// Log filter, e.g. `info`, `debug`, `info,routing=debug` (RUST_LOG overrides it).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon until SIGTERM or SIGINT (or a gNOI reboot).
    Run(Box<RunArgs>),
    /// Build a lab of network namespaces, route pings through the x86 dataplane, clean up.
    Demo {
        /// Keep the lab running until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Validate a configuration file and print every error with its field path.
    Check { file: PathBuf },
}

/// The environment variable counting gNOI restarts across re-executions.
const REBOOTS_ENV: &str = "NOSD_GNOI_REBOOTS";

/// Starts nosd again in this process (same program, arguments and process
/// id) after a gNOI COLD or WARM reboot, once everything was stopped; returns
/// only when that fails.
fn restart(reboots: u32) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return anyhow::anyhow!("cannot restart after the gNOI reboot: {e}"),
    };
    tracing::warn!(program = %program.display(), "gNOI reboot: starting nosd again");
    let err = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .env(REBOOTS_ENV, reboots.saturating_add(1).to_string())
        .exec();
    anyhow::anyhow!(
        "cannot restart {} after the gNOI reboot: {err}",
        program.display()
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(args) => {
            let RunArgs {
                config,
                state_dir,
                socket,
                host_interface,
                gnmi_addr,
                gnmi_cert,
                gnmi_key,
                gnmi_ca,
                insecure,
                log_level,
            } = *args;
            let reboots: u32 = std::env::var(REBOOTS_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
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
                    let gnmi = gnmi_addr.map(|addr| GnmiOptions {
                        addr,
                        transport: if insecure {
                            Transport::Insecure
                        } else {
                            Transport::Tls {
                                cert_key: gnmi_cert.zip(gnmi_key),
                                client_ca: gnmi_ca,
                            }
                        },
                    });
                    rt.block_on(daemon::run(Options {
                        config,
                        state_dir,
                        socket,
                        host_interface: (host_interface != "none").then_some(host_interface),
                        gnmi,
                        reboots,
                    }))
                })
                .and_then(|exit| match exit {
                    Exit::Stopped => Ok(()),
                    Exit::Restart => Err(restart(reboots)),
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
