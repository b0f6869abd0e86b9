//! `status`: what the last pass did, per intersection, from the state file.

use std::path::Path;

use crate::commands::{Exit, print_config_errors};
use crate::config;
use crate::report::{self, StateError};

/// `status`: the table (or `--json`); exit 0 only when every configured
/// intersection's last pass ended ok and none is stale.
pub fn status(config_path: &Path, json: bool) -> Exit {
    // Only the config: `status` reads the state file and never connects,
    // so a known_hosts problem is not its concern.
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(e) => {
            print_config_errors(&e);
            return Exit::Config;
        }
    };
    let config = &loaded.config;
    let now = crate::common::clock::unix_now();
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
            return Exit::Failed;
        }
    };
    let rows = report::status_rows(report.as_ref(), &names, config.stale_after, now);
    if json {
        let Some(report) = &report else {
            return Exit::Failed;
        };
        let value = report::status_json(report, &rows, config.stale_after, now);
        match serde_json::to_string_pretty(&value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Failed;
            }
        }
    } else {
        print!(
            "{}",
            report::render_table(report.as_ref(), &rows, config.stale_after, now)
        );
    }
    if report::status_ok(&rows) {
        Exit::Ok
    } else {
        Exit::Failed
    }
}
