//! `run --dry-run`: connects and lists like a pass, prints what it would
//! land where and delete, and changes nothing ([`crate::transfer::plan`]).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::commands::Exit;
use crate::common::text::human_bytes;
use crate::config::{Config, Intersection};
use crate::ssh::known_hosts::KnownHosts;
use crate::transfer::plan::{self, Plan, Planned};

/// Exit 0 when every intersection could be walked.
pub fn dry_run(
    config: &Config,
    known: &KnownHosts,
    selected: &[Intersection],
    cancel: &Arc<AtomicBool>,
) -> Exit {
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
        Exit::Ok
    } else {
        Exit::Failed
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
