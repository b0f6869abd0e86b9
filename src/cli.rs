//! The command-line definition. Parsing only: `main` turns it into work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// Pulls closed V2X data archives from intersection coprocessors over SFTP,
/// sorts them per intersection and data element, and deletes them remotely
/// only once they are safely stored here.
#[derive(Debug, Parser)]
#[command(name = "v2x-data-sftp-client", version, about, max_term_width = 100)]
pub struct Cli {
    /// Config file: TOML, or the legacy JSON file of the Python script
    /// (recognised by its content).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Log debug detail too.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one transfer pass over every configured intersection, then exit.
    /// Exit status 0 when every intersection was handled, 1 when at least
    /// one failed (its data stays on the coprocessor), 2 for a config error.
    Run {
        /// Only these intersections (by name; repeatable).
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
    },
    /// Validate the config and say what is wrong, with file, key and line.
    CheckConfig,
    /// Print on stdout a TOML config equivalent to the legacy JSON file at PATH.
    ImportLegacyConfig {
        /// The Python script's v2x-data-sftp-client-config.json.
        path: PathBuf,
    },
    /// Show what the last pass did, per intersection.
    Status {
        /// Print the state file's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
