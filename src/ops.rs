//! The operator's commands around a pass: `run --dry-run`, `status` and
//! `trust`, each turned into text and an exit status (0 all good, 1 an
//! intersection needs attention; config errors are `main`'s, exit 2).

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::{Config, Intersection};
use crate::known_hosts::KnownHosts;
use crate::plan::{self, Plan, Planned};
use crate::report::{self, StateError, human_bytes};
use crate::trust::{self, Confirm};

const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;

/// `run --dry-run`: connects and lists like a pass, prints what it would
/// land where and delete, and changes nothing ([`crate::plan`]). Exit 0
/// when every intersection could be walked.
pub fn dry_run(
    config: &Config,
    known: &KnownHosts,
    selected: &[Intersection],
    cancel: &Arc<AtomicBool>,
) -> u8 {
    let plans = plan::plan_all(config, known, selected, cancel);
    print!("{}", render_plan(&plans));
    if let Some(line) = space_note(config, &plans) {
        println!("{line}");
    }
    println!(
        "dry run: nothing was created, written or removed, here or on the coprocessors \
         (the state file and metrics are unchanged)"
    );
    if plans.iter().all(Plan::ok) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Whether what the dry run would pull fits on the data directory's disk
/// with `transfer.min_free_space` to spare (a pass stops an intersection
/// cleanly when it would not).
fn space_note(config: &Config, plans: &[Plan]) -> Option<String> {
    let need: u64 = plans.iter().map(|p| p.totals().1).sum();
    // The data directory may not exist yet: ask the disk it will be on.
    let probe = config
        .data_directory
        .ancestors()
        .find(|p| p.is_dir())?
        .to_path_buf();
    let free = crate::landing::free_bytes(&probe).ok()?;
    let keep = config.transfer.min_free_bytes;
    let verdict = if free >= need.saturating_add(keep) {
        "fits"
    } else {
        "DOES NOT FIT: a pass would stop before the disk gets that full; free space or lower transfer.min_free_space"
    };
    Some(format!(
        "space: {} to pull, {} free in {}, transfer.min_free_space keeps {}: {verdict}",
        human_bytes(need),
        human_bytes(free),
        probe.display(),
        human_bytes(keep)
    ))
}

/// The dry run's report, one block per intersection.
pub fn render_plan(plans: &[Plan]) -> String {
    let mut out = String::new();
    for plan in plans {
        let (files, bytes, dirs) = plan.totals();
        if plan.ok() {
            out.push_str(&format!(
                "{} ({}): would pull {files} file(s), {}, deleting each remotely once landed, \
                 and remove {dirs} emptied folder(s)\n",
                plan.name,
                plan.host,
                human_bytes(bytes)
            ));
        } else {
            out.push_str(&format!(
                "{} ({}): FAILED, the list below may be incomplete\n",
                plan.name, plan.host
            ));
        }
        for item in &plan.items {
            let line = match item {
                Planned::Land {
                    remote,
                    local,
                    bytes,
                    exists,
                } => format!(
                    "  pull   {} -> {} ({}){}",
                    remote.display(),
                    local.display(),
                    human_bytes(*bytes),
                    if *exists {
                        " (a file of that name is already here: kept as landed if identical, \
                         else this one lands beside it as .conflict-N)"
                    } else {
                        ""
                    }
                ),
                Planned::RemoveDir { remote } => {
                    format!("  rmdir  {} (once emptied)", remote.display())
                }
                Planned::Leave { rel, reason } => format!("  leave  {rel}: {reason}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        for e in &plan.errors {
            out.push_str(&format!("  error  {e}\n"));
        }
    }
    out
}

/// `status`: the table (or `--json`); exit 0 only when every configured
/// intersection's last pass ended ok and none is stale.
pub fn status(config: &Config, json: bool) -> u8 {
    let now = crate::pipeline::unix_now();
    let names: Vec<String> = config
        .intersections
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let report = match report::read(&config.state_directory) {
        Ok(r) => Some(r),
        Err(e @ StateError::Missing { .. }) if !json => {
            eprintln!("{e}");
            None
        }
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAILED;
        }
    };
    let rows = report::status_rows(report.as_ref(), &names, config.stale_after, now);
    if json {
        let Some(report) = &report else {
            return EXIT_FAILED;
        };
        let value = report::status_json(report, &rows, config.stale_after, now);
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        }
    } else {
        print!(
            "{}",
            report::render_table(report.as_ref(), &rows, config.stale_after, now)
        );
    }
    if report::status_ok(&rows) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `trust`: asks on a terminal, adds with `--yes`, else only shows. Exit 0
/// when every selected intersection's key is trusted afterwards.
pub fn trust(config: &Config, selected: &[Intersection], yes: bool) -> u8 {
    let mut ask = |question: &str| -> io::Result<bool> {
        let mut stdout = io::stdout();
        write!(stdout, "{question}")?;
        stdout.flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        let answer = answer.trim().to_ascii_lowercase();
        Ok(answer == "y" || answer == "yes")
    };
    let confirm = if yes {
        Confirm::Yes
    } else if io::stdin().is_terminal() {
        Confirm::Ask(&mut ask)
    } else {
        Confirm::No
    };
    let results = trust::trust(config, selected, confirm, &mut io::stdout());
    if results.iter().all(|(_, o)| o.trusted()) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
