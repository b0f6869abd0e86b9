//! `import-legacy-config PATH`: the seed's JSON config as TOML on stdout.

use std::path::Path;

use crate::commands::{Exit, print_config_errors};
use crate::config;

pub fn command(path: &Path) -> Exit {
    match config::legacy::import(path) {
        Ok(toml) => {
            print!("{toml}");
            Exit::Ok
        }
        Err(e) => {
            print_config_errors(&e);
            Exit::Config
        }
    }
}
