//! A fleet of engines sharing work through Redis Streams (`actix_transfer::fleet`).
//!
//! ```text
//! cargo run --example fleet -- node --redis redis://127.0.0.1:6379/ --dir downloads --name a
//! cargo run --example fleet -- submit --redis redis://127.0.0.1:6379/ https://example.com/x.iso
//! cargo run --example fleet -- results --redis redis://127.0.0.1:6379/ --follow
//! ```
//!
//! - `node`: runs a node until Ctrl-C or SIGTERM (what `docker stop` and systemd send); then
//!   it stops taking jobs, lets the ones it holds finish, writes their results and exits.
//!   Start as many as you like, on as many machines: each job goes to one of them.
//! - `submit URL...`: adds one download job per URL and prints each entry id.
//! - `results [--follow]`: prints the results as JSON lines (`--follow`: waits for more).
//!
//! `RUST_LOG` sets what is logged, on stderr (`RUST_LOG=actix_transfer=debug`).
//!
//! Defaults: streams `transfer:jobs` and `transfer:results`, group `transfer`. Any program
//! that can `XADD` can submit jobs: see the formats in the docs of `actix_transfer::fleet`.

#[path = "shared/mod.rs"]
mod shared;
use shared::stop_signal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_transfer::fleet::{Drain, Fleet, JobSpec, Names, Node, NodeConfig};
use actix_transfer::Engine;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Engines on several machines sharing jobs through Redis Streams")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Common {
    /// The Redis (or Valkey) URL, e.g. redis://127.0.0.1:6379/
    #[arg(long)]
    redis: String,
    /// The jobs stream.
    #[arg(long, default_value = "transfer:jobs")]
    jobs: String,
    /// The results stream.
    #[arg(long, default_value = "transfer:results")]
    results: String,
    /// The consumer group.
    #[arg(long, default_value = "transfer")]
    group: String,
}

impl Common {
    fn names(&self) -> Names {
        Names {
            jobs: self.jobs.clone(),
            results: self.results.clone(),
            group: self.group.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node until Ctrl-C.
    Node {
        #[command(flatten)]
        common: Common,
        /// This node's name in the group (default: host name and process id).
        #[arg(long)]
        name: Option<String>,
        /// Where downloads go (and upload paths are read from).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Transfers running at once on this node.
        #[arg(long, default_value_t = 8)]
        max_active: usize,
    },
    /// Add a download job per URL.
    Submit {
        #[command(flatten)]
        common: Common,
        /// The URLs.
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Print results as JSON lines.
    Results {
        #[command(flatten)]
        common: Common,
        /// Keep waiting for new results.
        #[arg(long)]
        follow: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // On stderr: `results` prints its JSON lines on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let system = actix_rt::System::new();
    match system.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Node {
            common,
            name,
            dir,
            max_active,
        } => {
            let name = name.unwrap_or_else(default_name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let engine = Engine::builder()
                .download_dir(&dir)
                .max_active(max_active)
                .try_start()?;
            let cfg = NodeConfig::new(&common.redis, &name)
                .names(common.names())
                .max_active(max_active)
                .dir(&dir);
            let node = Node::start(engine, cfg).await?;
            eprintln!(
                "node {name}: taking jobs from {} (Ctrl-C or SIGTERM stops)",
                common.jobs
            );
            stop_signal().await;
            eprintln!("node {name}: stopping; finishing the jobs it holds");
            node.send(Drain).await?;
            eprintln!("node {name}: done");
            Ok(())
        }
        Cmd::Submit { common, urls } => {
            let fleet = Fleet::connect(&common.redis, common.names()).await?;
            for url in urls {
                let id = fleet.submit(&JobSpec::download(url)).await?;
                println!("{id}");
            }
            Ok(())
        }
        Cmd::Results { common, follow } => {
            let fleet = Fleet::connect(&common.redis, common.names()).await?;
            let mut after = "0".to_string();
            loop {
                let block = follow.then_some(Duration::from_secs(5));
                let batch = fleet.results(&after, 500, block).await?;
                if batch.is_empty() && !follow {
                    return Ok(());
                }
                for (id, fields) in batch {
                    let mut line = serde_json::Map::new();
                    line.insert("id".into(), id.clone().into());
                    for (k, v) in fields {
                        line.insert(k, v.into());
                    }
                    println!("{}", serde_json::Value::Object(line));
                    after = id;
                }
            }
        }
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    format!("{host}-{}", std::process::id())
}
