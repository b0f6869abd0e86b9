//! The command-line definition. Parsing only: `main` turns it into work.
//! The man page ([`man`]) and the shell completions are generated from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_CONFIG_PATH;

pub mod man;

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
        /// Connect and list only, then print what would land where and
        /// what would be deleted. Nothing is created, written or removed on
        /// either side, and the state file and metrics are left as they were.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the config and say what is wrong, with file, key and line.
    CheckConfig {
        /// Also try every intersection (in parallel): reachability, host key,
        /// authentication and the archive folder, one line each with what to
        /// fix. Reads and deletes nothing. Exit 1 if any intersection fails.
        #[arg(long)]
        connect: bool,
        /// With --connect: only these intersections (by name; repeatable).
        #[arg(long, value_name = "NAME", requires = "connect")]
        only: Vec<String>,
    },
    /// Fetch an intersection's SSH host key (handshake only, nothing is
    /// sent), show its fingerprint and, once confirmed, add it to the
    /// known_hosts file. A changed key is never replaced: remove the old
    /// line yourself after finding out why it changed.
    Trust {
        /// Intersections by name.
        #[arg(
            value_name = "NAME",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        names: Vec<String>,
        /// Every configured intersection.
        #[arg(long)]
        all: bool,
        /// Add unknown keys without asking (compare the fingerprints first).
        /// Never replaces a changed key.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print on stdout a TOML config equivalent to the legacy JSON file at PATH.
    ImportLegacyConfig {
        /// The Python script's v2x-data-sftp-client-config.json.
        path: PathBuf,
    },
    /// Show what the last pass did, per intersection, flagging those with
    /// no success for longer than status.stale_after. Exit status 0 when
    /// every intersection's last pass ended ok and none is stale, 1
    /// otherwise (or before the first pass), 2 for a config error.
    Status {
        /// Print the state file's JSON, with a `stale` flag per
        /// intersection, instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash the landed files against the ledger and report those missing,
    /// changed (or truncated) since they landed, and files under the
    /// intersections' folders that no record names. Exit status 0 when all
    /// match, 1 when anything was found, 2 for a config or usage error.
    Verify {
        /// Only records from this day on (YYYY-MM-DD, UTC); every file is
        /// still looked at for records, to find the unrecorded ones.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only these intersections (by name; repeatable).
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the ledger's records of landed files: one JSON line each, or
    /// `sha256sum` lines that `cd <data_directory> && sha256sum -c` checks.
    /// `--pass last` gives exactly the files of the last pass (what a unit
    /// started by `OnSuccess=` hands on to the next stage).
    Ledger {
        /// `last` (the pass in last-run.json) or a pass id.
        #[arg(long, value_name = "last|ID")]
        pass: Option<String>,
        /// Only records from this day on (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only these intersections (by name; repeatable).
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        #[arg(long, value_enum, default_value_t = LedgerFormat::Json)]
        format: LedgerFormat,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page, v2x-data-sftp-client(8), in roff on stdout
    /// (packaging/build-deb installs it).
    #[command(hide = true)]
    Man,
}

/// How `ledger` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LedgerFormat {
    /// One JSON object per line, as the ledger stores them.
    Json,
    /// `HASH  PATH` lines, paths relative to the data directory.
    Sha256sum,
}
