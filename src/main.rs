//! Entry point: parse the command line, start logging, run one command, map
//! its outcome to the exit status (0 handled, 1 an intersection failed, 2
//! usage or config error, before anything was touched).

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info, warn};

use v2x_data_sftp_client::cli::{Cli, Command};
use v2x_data_sftp_client::config::{self, Config, ConfigErrors, Intersection};
use v2x_data_sftp_client::known_hosts::KnownHosts;
use v2x_data_sftp_client::{logging, metrics, ops, pass, probe, progress, report, service};

const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    ExitCode::from(match &cli.command {
        Command::Run { only, dry_run } => run(&cli, only, *dry_run),
        Command::CheckConfig { connect, only } => check_config(&cli, *connect, only),
        Command::ImportLegacyConfig { path } => import_legacy(path),
        Command::Status { json } => status(&cli, *json),
        Command::Trust { names, all, yes } => trust(&cli, names, *all, *yes),
        Command::Completions { shell } => completions(*shell),
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

/// The intersections named by `--only` (or a command's names), all when
/// `names` is empty; an unknown name is a usage error.
fn select(config: &Config, names: &[String], flag: &str) -> Result<Vec<Intersection>, u8> {
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
            return Err(EXIT_CONFIG);
        }
    }
    Ok(config
        .intersections
        .iter()
        .filter(|ix| names.contains(&ix.name))
        .cloned()
        .collect())
}

fn run(cli: &Cli, only: &[String], dry_run: bool) -> u8 {
    let (config, known) = match load(cli) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let selected = match select(&config, only, "--only ") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut control = pass::Control::new();
    let previous = report::read(&config.state_directory).ok();
    if dry_run {
        return ops::dry_run(&config, &known, &selected, &control.cancel);
    }
    // The lock first: a run that finds another pass exits before touching anything.
    let _lock = match service::lock_instance(&config.state_directory) {
        Ok(lock) => lock,
        Err(e) => {
            error!("{e}");
            return EXIT_FAILED;
        }
    };
    let signals = match service::install_signal_handlers() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return EXIT_FAILED;
        }
    };
    control.cancel = signals.cancel_flag();
    let notifier = std::sync::Arc::new(service::Notifier::from_env());
    notifier.status(&format!("starting: {} intersection(s)", selected.len()));
    let bar = progress::Bar::start();
    let bar_handle = bar.as_ref().map(|b| b.handle());
    let progress_notifier = std::sync::Arc::clone(&notifier);
    control.on_progress = Box::new(move |p: &pass::Progress| {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(h) = &bar_handle {
            h.update(p);
        }
        progress_notifier.status(&format!(
            "intersection {} of {} done, {} file(s), {} byte(s) pulled",
            p.intersections_done.load(Relaxed),
            p.intersections_total,
            p.files.load(Relaxed),
            p.bytes.load(Relaxed)
        ));
        progress_notifier.extend_timeout(std::time::Duration::from_secs(300));
    });
    info!(intersections = selected.len(), config = %config.source.display(), "pass starting");
    let mut run_report = pass::run(&config, &known, &selected, &control);
    if let Some(bar) = bar {
        bar.finish();
    }
    log_finished(&run_report);
    // This pass's intersections decide the exit status, not those kept
    // from an earlier one below.
    let exit = if run_report.all_ok() {
        EXIT_OK
    } else {
        EXIT_FAILED
    };
    if let Some(previous) = &previous {
        run_report.inherit_last_success(previous);
        let configured: Vec<String> = config
            .intersections
            .iter()
            .map(|i| i.name.clone())
            .collect();
        run_report.keep_unselected(previous, &configured);
    }
    if let Err(e) = report::write(&config.state_directory, &run_report) {
        error!("{e}");
    }
    notifier.status(&format!(
        "last pass: {} intersection(s), exit status {exit}",
        run_report.intersections.len()
    ));
    if let Some(path) = &config.metrics_textfile
        && let Err(e) = metrics::write(path, &run_report)
    {
        error!("{e}");
    }
    exit
}

fn log_finished(run_report: &report::RunReport) {
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
}

fn check_config(cli: &Cli, connect: bool, only: &[String]) -> u8 {
    let (config, known) = match load(cli) {
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
    if !connect {
        return EXIT_OK;
    }
    let selected = match select(&config, only, "--only ") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let probes = probe::probe_all(&config, &known, &selected);
    print!("{}", probe::render(&probes));
    if probes.iter().all(|p| p.result.is_ok()) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
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
    ops::status(&loaded.config, json)
}

fn trust(cli: &Cli, names: &[String], all: bool, yes: bool) -> u8 {
    let (config, _known) = match load(cli) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let selected = match select(&config, if all { &[] } else { names }, "") {
        Ok(s) => s,
        Err(code) => return code,
    };
    ops::trust(&config, &selected, yes)
}

fn completions(shell: clap_complete::Shell) -> u8 {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(
        shell,
        &mut cmd,
        "v2x-data-sftp-client",
        &mut std::io::stdout(),
    );
    EXIT_OK
}
