//! The CLI for nosd.

use clap::{Parser, Subcommand};
use nosd::api::{Request, Response};
use nosd::{client, render};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "nosctl",
    version,
    about = "Show and change the state of a running nosd"
)]
struct Cli {
    /// nosd's management socket.
    #[arg(long, global = true, default_value = nosd::api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show state.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Commit, inspect and roll back the configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
    /// Read a password from standard input (its first line) and print its Argon2id hash,
    /// for `management.users[].password_hash`. Needs no running nosd.
    HashPassword,
}

#[derive(Subcommand, Debug)]
enum Show {
    /// Ports (with packet counters) and router interfaces.
    Interfaces,
    /// The RIB: selected routes with their source.
    Routes,
    /// What is installed in the forwarding target.
    Fib,
    /// ARP and ND neighbors.
    Neighbors,
    /// Dataplane drop and punt counters.
    Counters,
    /// BGP sessions, prefixes and routes.
    Bgp {
        #[command(subcommand)]
        what: ShowBgp,
    },
    /// The configuration of the newest commit, or of commit N.
    Config { commit: Option<u64> },
}

#[derive(Subcommand, Debug)]
enum ShowBgp {
    /// One line per neighbor, like FRR's `show bgp summary`.
    Summary,
    /// Details of one neighbor.
    Neighbor { address: std::net::IpAddr },
    /// Paths in the BGP tables, all or those inside PREFIX.
    Routes { prefix: Option<ipnet::IpNet> },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate FILE and commit it; nothing changes if it is invalid.
    Commit {
        file: PathBuf,
        #[arg(short, long)]
        message: Option<String>,
    },
    /// List the commits.
    History,
    /// Differences between commits N and M.
    Diff { from: u64, to: u64 },
    /// Make a new commit with the configuration of commit N.
    Rollback {
        commit: u64,
        #[arg(short, long)]
        message: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nosctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads a password (the first line of standard input) and prints its hash.
fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as typed; pipe it in to avoid that): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let hash = gnmi_server::security::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let req = match &cli.cmd {
        Cmd::HashPassword => return hash_password(),
        Cmd::Show { what } => match what {
            Show::Interfaces => Request::ShowInterfaces,
            Show::Routes => Request::ShowRoutes,
            Show::Fib => Request::ShowFib,
            Show::Neighbors => Request::ShowNeighbors,
            Show::Counters => Request::ShowCounters,
            Show::Bgp { what } => match what {
                ShowBgp::Summary => Request::ShowBgpSummary,
                ShowBgp::Neighbor { address } => Request::ShowBgpNeighbor { address: *address },
                ShowBgp::Routes { prefix } => Request::ShowBgpRoutes { prefix: *prefix },
            },
            Show::Config { commit } => Request::ShowConfig { commit: *commit },
        },
        Cmd::Config { what } => match what {
            ConfigCmd::Commit { file, message } => Request::ConfigCommit {
                yaml: std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
                message: message.clone(),
            },
            ConfigCmd::History => Request::ConfigHistory,
            ConfigCmd::Diff { from, to } => Request::ConfigDiff {
                from: *from,
                to: *to,
            },
            ConfigCmd::Rollback { commit, message } => Request::ConfigRollback {
                commit: *commit,
                message: message.clone(),
            },
        },
    };
    let data = match client::call(&cli.socket, &req)? {
        Response::Ok { data } => data,
        Response::Error { message, errors } => {
            let mut m = message;
            for e in errors {
                m.push_str(&format!("\n  {}: {}", e.path, e.reason));
            }
            anyhow::bail!(m);
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(());
    }
    let text = match &req {
        Request::ShowInterfaces => render::interfaces(&serde_json::from_value(data)?),
        Request::ShowRoutes => render::routes(&serde_json::from_value::<Vec<_>>(data)?),
        Request::ShowFib => render::fib(&serde_json::from_value::<Vec<_>>(data)?),
        Request::ShowNeighbors => render::neighbors(&serde_json::from_value::<Vec<_>>(data)?),
        Request::ShowCounters => render::counters(&serde_json::from_value::<Vec<_>>(data)?),
        Request::ShowBgpSummary => render::bgp_summary(&serde_json::from_value(data)?),
        Request::ShowBgpNeighbor { .. } => render::bgp_neighbor(&serde_json::from_value(data)?),
        Request::ShowBgpRoutes { .. } => {
            render::bgp_routes(&serde_json::from_value::<Vec<_>>(data)?)
        }
        Request::ShowConfig { .. } => {
            let c: nosd::api::ShownConfig = serde_json::from_value(data)?;
            match c.commit {
                Some(i) => format!("# commit {} at {}\n{}", i.number, i.timestamp, c.yaml),
                None => format!("# no commit yet\n{}", c.yaml),
            }
        }
        Request::ConfigHistory => render::history(&serde_json::from_value::<Vec<_>>(data)?),
        Request::ConfigDiff { from, to } => {
            let d: String = serde_json::from_value(data)?;
            if d.is_empty() {
                format!("commits {from} and {to} have the same configuration\n")
            } else {
                d
            }
        }
        Request::ConfigCommit { .. } | Request::ConfigRollback { .. } => {
            let c: nosd::api::Committed = serde_json::from_value(data)?;
            format!(
                "commit {} at {}{}{}\n",
                c.commit.number,
                c.commit.timestamp,
                c.commit
                    .message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
                if c.changed { "" } else { " (no change)" }
            )
        }
    };
    print!("{text}");
    Ok(())
}
