//! Any bytes as a config file: never a panic; an error always says what is
//! wrong; a config that loads has intersections and an absolute data folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn path() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let file = path().join("config.toml");
    std::fs::write(&file, data).expect("write");
    check(&file);
});

fn check(file: &std::path::Path) {
    match v2x_data_sftp_client::config::load(file) {
        Ok(loaded) => {
            assert!(!loaded.config.intersections.is_empty());
            assert!(loaded.config.data_directory.is_absolute());
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(!e.to_string().trim().is_empty());
            }
        }
    }
}
