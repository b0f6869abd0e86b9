//! Entry point: parse the command line, start logging, run one command, map
//! its outcome to the exit status (0 handled, 1 an intersection failed, 2
//! usage or config error, before anything was touched).

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info, warn};

use v2x_data_sftp_client::cli::{Cli, Command};
use v2x_data_sftp_client::config::{self, Config, ConfigErrors};
use v2x_data_sftp_client::known_hosts::KnownHosts;
use v2x_data_sftp_client::{logging, pass, report};

const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    ExitCode::from(match &cli.command {
        Command::Run { only } => run(&cli, only),
        Command::CheckConfig => check_config(&cli),
        Command::ImportLegacyConfig { path } => import_legacy(path),
        Command::Status { json } => status(&cli, *json),
    })
}

fn print_config_errors(errors: &ConfigErrors) {
    for e in &errors.0 {
        eprintln!("config error: {e}");
    }
}

/// Loads and validates the config and the known_hosts file.
fn load(cli: &Cli) -> Result<(Config, KnownHosts), u8> {
    let loaded = config::load(&cli.config).map_err(|e| {
        print_config_errors(&e);
        EXIT_CONFIG
    })?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let config = loaded.config;
    let (known, warnings) = KnownHosts::load(&config.known_hosts).map_err(|e| {
        eprintln!("config error: {e}");
        EXIT_CONFIG
    })?;
    for w in &warnings {
        warn!("known_hosts: {w}");
    }
    Ok((config, known))
}

fn run(cli: &Cli, only: &[String]) -> u8 {
    let (config, known) = match load(cli) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let selected: Vec<_> = if only.is_empty() {
        config.intersections.clone()
    } else {
        for name in only {
            if !config.intersections.iter().any(|ix| &ix.name == name) {
                eprintln!(
                    "error: --only {name:?}: no intersection of that name in {}",
                    config.source.display()
                );
                return EXIT_CONFIG;
            }
        }
        config
            .intersections
            .iter()
            .filter(|ix| only.contains(&ix.name))
            .cloned()
            .collect()
    };
    let control = pass::Control::new();
    info!(intersections = selected.len(), config = %config.source.display(), "pass starting");
    let mut run_report = pass::run(&config, &known, &selected, &control);
    if let Ok(previous) = report::read(&config.state_directory) {
        run_report.inherit_last_success(&previous);
    }
    let failed = run_report
        .intersections
        .iter()
        .filter(|i| i.outcome != report::Outcome::Ok)
        .count();
    info!(
        intersections = run_report.intersections.len(),
        failed,
        seconds = format!("{:.1}", run_report.seconds),
        "pass finished"
    );
    if let Err(e) = report::write(&config.state_directory, &run_report) {
        error!("{e}");
    }
    if run_report.all_ok() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn check_config(cli: &Cli) -> u8 {
    let (config, _known) = match load(cli) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let problems = config::check_secret_files(&config);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("config error: {p}");
        }
        return EXIT_CONFIG;
    }
    println!(
        "{}: OK, {} intersection(s), data lands in {}",
        config.source.display(),
        config.intersections.len(),
        config.data_directory.display()
    );
    EXIT_OK
}

fn import_legacy(path: &std::path::Path) -> u8 {
    match config::legacy::import(path) {
        Ok(toml) => {
            print!("{toml}");
            EXIT_OK
        }
        Err(e) => {
            print_config_errors(&e);
            EXIT_CONFIG
        }
    }
}

fn status(cli: &Cli, json: bool) -> u8 {
    let loaded = match config::load(&cli.config) {
        Ok(l) => l,
        Err(e) => {
            print_config_errors(&e);
            return EXIT_CONFIG;
        }
    };
    match report::read(&loaded.config.state_directory) {
        Ok(r) => {
            if json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_FAILED;
                    }
                }
            } else {
                print!("{}", report::render_table(&r));
            }
            if r.all_ok() { EXIT_OK } else { EXIT_FAILED }
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_FAILED
        }
    }
}
