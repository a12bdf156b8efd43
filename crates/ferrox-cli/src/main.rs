//! `ferrox`: the command-line front end. Thin: it parses arguments and calls the library
//! crates; no decision logic lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ferrox", version, about = "Ferrox virtualization cluster")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// The deterministic HA simulator.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// HA tools.
    Ha {
        #[command(subcommand)]
        command: HaCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run a scenario directory and print its event log.
    Run {
        /// Directory with cmdlist, hardware_status, service_config, ...
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum HaCommand {
    /// HA rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check a rules file: print dropped rules, the canonical config and the compiled rules.
    Check {
        file: PathBuf,
        /// Cluster nodes the rules are checked against (comma separated).
        #[arg(long, default_value = "node1,node2,node3", value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ferrox: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Top::Sim {
            command: SimCommand::Run { dir },
        } => {
            let log = ferrox_sim::run_dir(&dir)?;
            print!("{log}");
        }
        Top::Ha {
            command:
                HaCommand::Rules {
                    command: RulesCommand::Check { file, nodes },
                },
        } => {
            let raw =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let report = ferrox_ha::rules::check_report(&raw, &nodes)
                .with_context(|| format!("{}", file.display()))?;
            print!("{report}");
        }
    }
    Ok(())
}
