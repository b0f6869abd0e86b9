//! `run`: one transfer pass over the selected intersections, wired to
//! systemd (the lock, signals, notifications), a terminal's progress bar,
//! the state file and the metrics.

use tracing::{error, info};

use crate::cli::Cli;
use crate::commands::{Exit, dry_run, load, select};
use crate::report::{self, metrics, progress};
use crate::systemd::{lock, notify, signals};
use crate::transfer::{Control, pass};

/// `run` (and `run --dry-run`).
///
/// # Errors
/// The early [`Exit`] of a config or usage error.
pub fn command(cli: &Cli, only: &[String], dry_run: bool) -> Result<Exit, Exit> {
    let (config, known) = load(cli)?;
    let selected = select(&config, only, "--only ")?;
    let mut control = Control::new();
    let previous = report::read(&config.state_directory).ok();
    if dry_run {
        return Ok(dry_run::dry_run(
            &config,
            &known,
            &selected,
            &control.cancel,
        ));
    }
    // The lock first: a run that finds another pass exits before touching anything.
    let _lock = match lock::lock_instance(&config.state_directory) {
        Ok(lock) => lock,
        Err(e) => {
            error!("{e}");
            return Ok(Exit::Failed);
        }
    };
    let signals = match signals::install_signal_handlers() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return Ok(Exit::Failed);
        }
    };
    control.cancel = signals.cancel_flag();
    let notifier = std::sync::Arc::new(notify::Notifier::from_env());
    notifier.status(&format!("starting: {} intersection(s)", selected.len()));
    let bar = progress::Bar::start();
    let bar_handle = bar.as_ref().map(|b| b.handle());
    let progress_notifier = std::sync::Arc::clone(&notifier);
    control.on_progress = Box::new(move |p: &progress::Progress| {
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
    let exit = Exit::ok_if(run_report.all_ok());
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
        "last pass: {} intersection(s), exit status {}",
        run_report.intersections.len(),
        exit.code()
    ));
    if let Some(path) = &config.metrics_textfile
        && let Err(e) = metrics::write(path, &run_report)
    {
        error!("{e}");
    }
    Ok(exit)
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
