//! `nos-p4rt-target`: the x86 dataplane as a standalone P4Runtime target, in
//! the manner of bmv2's `simple_switch_grpc`.
//!
//! ```sh
//! nos-p4rt-target --grpc-addr 127.0.0.1:9559 --device-id 1 -i 1@veth0 -i 2@veth1
//! ```
//!
//! Each `-i PORT@IFACE` makes P4 port `PORT` the Linux interface `IFACE`.
//! A controller then wins arbitration on the stream, pushes the nos.p4
//! P4Info with SetForwardingPipelineConfig and writes entries; punted
//! packets come back as PacketIn. SIGTERM or SIGINT stops it cleanly.

use clap::Parser;
use dataplane::p4rt::{Options, PacketInRelay, PortConfig, Server};
use dataplane::{PortResolver, X86Backend};
use nos_core::Port;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// The x86 dataplane of the NOS as a P4Runtime target for the nos.p4
/// program (p4/programs/nos.p4info.txtpb).
#[derive(Debug, Parser)]
#[command(
    name = "nos-p4rt-target",
    version,
    after_help = "Example:\n  nos-p4rt-target --grpc-addr 127.0.0.1:9559 --device-id 1 -i 1@veth0 -i 2@veth1\n\n\
The target starts with no pipeline: a controller must win arbitration on the\n\
StreamChannel and push the nos.p4 P4Info (SetForwardingPipelineConfig,\n\
VERIFY_AND_COMMIT) before writing entries. The ports' interfaces are taken\n\
over: the kernel stops answering ARP and IPv6 on them. Needs CAP_NET_RAW\n\
(root) for the AF_PACKET sockets. Log level: RUST_LOG (default info)."
)]
struct Args {
    /// Address of the P4Runtime gRPC server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9559")]
    grpc_addr: SocketAddr,

    /// The device id controllers address.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    device_id: u64,

    /// A data port: P4 port number PORT (1..=510, not 255) on Linux
    /// interface IFACE; repeat for every port.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "PORT@IFACE",
        value_parser = parse_port,
        required = true
    )]
    ports: Vec<(u32, String)>,
}

fn parse_port(s: &str) -> Result<(u32, String), String> {
    let (port, ifname) = s
        .split_once('@')
        .ok_or_else(|| format!("`{s}` is not PORT@IFACE (for example 1@veth0)"))?;
    let port: u32 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{s}` is not a port number"))?;
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains('/') {
        return Err(format!("`{ifname}` is not a Linux interface name"));
    }
    Ok((port, ifname.to_string()))
}

/// The interface's MTU, from sysfs (1500 when it cannot be read).
fn mtu_of(ifname: &str) -> u32 {
    let path = format!("/sys/class/net/{ifname}/mtu");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().unwrap_or(1500),
        Err(e) => {
            tracing::warn!(%ifname, "cannot read {path}: {e}; assuming MTU 1500");
            1500
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("SIGINT received");
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nos-p4rt-target: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // Dropping the runtime drops the server's last handles, and with them
    // the dataplane, which joins its I/O thread.
    drop(runtime);
    tracing::info!("stopped");
    code
}

async fn run(args: Args) -> ExitCode {
    for (id, ifname) in &args.ports {
        if !std::path::Path::new("/sys/class/net").join(ifname).exists() {
            tracing::error!("port {id}: there is no network interface named {ifname}");
            return ExitCode::FAILURE;
        }
    }
    let ports: Vec<PortConfig> = args
        .ports
        .iter()
        .map(|(id, ifname)| PortConfig {
            id: *id,
            ifname: ifname.clone(),
            mtu: mtu_of(ifname),
        })
        .collect();
    let relay = PacketInRelay::new();
    // Model ports are named after their interfaces.
    let resolver: PortResolver = Arc::new(|p: &Port| Some(p.name.clone()));
    let backend = match X86Backend::start(resolver, relay.sink()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("cannot start the dataplane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        device_id: args.device_id,
        ports: ports.clone(),
    };
    let server = match Server::new(options, backend, relay) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.grpc_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", args.grpc_addr);
            return ExitCode::FAILURE;
        }
    };
    for p in &ports {
        tracing::info!(port = p.id, ifname = %p.ifname, mtu = p.mtu, "data port");
    }
    tracing::info!(
        addr = %args.grpc_addr,
        device_id = args.device_id,
        "P4Runtime target listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = dataplane::p4rt::transport()
        .add_service(server.clone().into_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = stop_rx.await;
            },
        );
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => {
            return match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("gRPC server failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ = shutdown_signal() => {}
    }
    // Controllers' streams would keep a graceful shutdown waiting: end them.
    server.close_streams();
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), serve).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!("gRPC server failed while stopping: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            tracing::warn!("connections still open after 5 s; stopping anyway");
            ExitCode::SUCCESS
        }
    }
}
