//! `ferrox`: the command-line front end. Thin: it parses arguments and calls the library
//! crates; no decision logic lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod crs;

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
    /// Cluster resource scheduler: balancing plans, evacuation, placement.
    Crs {
        #[command(subcommand)]
        command: crs::CrsCommand,
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

/// Writes the report; a closed pipe (`ferrox ... | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let mut out = String::new();
    let result = run(Cli::parse(), &mut out);
    emit(&out);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ferrox: {err:#}");
            if err.downcast_ref::<crs::Infeasible>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli, out: &mut String) -> Result<()> {
    match cli.command {
        Top::Crs { command } => crs::run(command, out)?,
        Top::Sim {
            command: SimCommand::Run { dir },
        } => {
            out.push_str(&ferrox_sim::run_dir(&dir)?);
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
            out.push_str(&report);
        }
    }
    Ok(())
}
