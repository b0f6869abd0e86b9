//! The commands, one file each, and the one map from how a command ended to
//! the process's exit status (`CONTRACT.md`).
//!
//! | command | file |
//! | --- | --- |
//! | `run` | [`run`] (and [`dry_run`] for `run --dry-run`) |
//! | `check-config` | [`check_config`] |
//! | `import-legacy-config` | [`import_legacy`] |
//! | `status` | [`status`] |
//! | `trust` | [`trust`] |
//! | `verify` | [`verify`] |
//! | `ledger` | [`ledger`] |
//! | `completions` | [`completions`] |
//! | `man` | [`man`] |

use crate::cli::{Cli, Command};
use crate::config::{self, Config, ConfigErrors, Intersection};
use crate::ssh::known_hosts::KnownHosts;

pub mod check_config;
pub mod completions;
pub mod dry_run;
pub mod import_legacy;
pub mod ledger;
pub mod man;
pub mod run;
pub mod status;
pub mod trust;
pub mod verify;

/// How a command ended. The exit statuses are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every intersection was handled (or the command did what it was asked).
    Ok,
    /// At least one intersection failed or needs attention; its data is
    /// kept where it was.
    Failed,
    /// A usage or config error, found before anything was touched.
    Config,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Config => 2,
        }
    }

    /// `Ok` when `ok`, else `Failed`.
    pub fn ok_if(ok: bool) -> Exit {
        if ok { Exit::Ok } else { Exit::Failed }
    }
}

/// Runs the command the command line names.
pub fn dispatch(cli: &Cli) -> Exit {
    let result = match &cli.command {
        Command::Run { only, dry_run } => run::command(cli, only, *dry_run),
        Command::CheckConfig { connect, only } => check_config::command(cli, *connect, only),
        Command::ImportLegacyConfig { path } => Ok(import_legacy::command(path)),
        Command::Status { json } => Ok(status::status(&cli.config, *json)),
        Command::Trust { names, all, yes } => load(cli).and_then(|(config, _)| {
            let selected = select(&config, if *all { &[] } else { names }, "")?;
            Ok(trust::command(&config, &selected, *yes))
        }),
        Command::Verify { since, only, json } => {
            Ok(verify::command(&cli.config, since.as_deref(), only, *json))
        }
        Command::Ledger {
            pass,
            since,
            only,
            format,
        } => Ok(ledger::command(
            &cli.config,
            &ledger::Filter {
                pass: pass.as_deref(),
                since: since.as_deref(),
                only,
            },
            *format,
        )),
        Command::Completions { shell } => Ok(completions::command(*shell)),
        Command::Man => Ok(man::command()),
    };
    result.unwrap_or_else(|early| early)
}

pub(crate) fn print_config_errors(errors: &ConfigErrors) {
    for e in &errors.0 {
        eprintln!("config error: {e}");
    }
}

/// Loads and validates the config and the known_hosts file; on an error,
/// prints it and gives [`Exit::Config`].
///
/// # Errors
/// [`Exit::Config`], once the config's errors or the known_hosts file's
/// read error are printed.
pub(crate) fn load(cli: &Cli) -> Result<(Config, KnownHosts), Exit> {
    let loaded = config::load(&cli.config).map_err(|e| {
        print_config_errors(&e);
        Exit::Config
    })?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = loaded.config;
    let (known, warnings) = KnownHosts::load(&config.known_hosts).map_err(|e| {
        eprintln!("config error: {e}");
        Exit::Config
    })?;
    for w in &warnings {
        tracing::warn!("known_hosts: {w}");
    }
    Ok((config, known))
}

/// The intersections named by `--only` (or a command's names), all when
/// `names` is empty; an unknown name is a usage error.
///
/// # Errors
/// [`Exit::Config`], once the unknown name is printed with the names the
/// config has.
pub(crate) fn select(
    config: &Config,
    names: &[String],
    flag: &str,
) -> Result<Vec<Intersection>, Exit> {
    if names.is_empty() {
        return Ok(config.intersections.clone());
    }
    for name in names {
        if !config.intersections.iter().any(|ix| &ix.name == name) {
            let known: Vec<&str> = config
                .intersections
                .iter()
                .map(|i| i.name.as_str())
                .collect();
            eprintln!(
                "error: {flag}{name:?}: no intersection of that name in {} (it has: {})",
                config.source.display(),
                known.join(", ")
            );
            return Err(Exit::Config);
        }
    }
    Ok(config
        .intersections
        .iter()
        .filter(|ix| names.contains(&ix.name))
        .cloned()
        .collect())
}
