//! Any bytes as the legacy JSON config (recognised by a leading '{'), through
//! `load` and `import-legacy-config`: never a panic, errors say what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let file = dir().join("v2x-data-sftp-client-config.json");
    let mut text = b"{".to_vec();
    text.extend_from_slice(data);
    std::fs::write(&file, &text).expect("write");
    match v2x_data_sftp_client::config::load(&file) {
        Ok(loaded) => {
            assert!(!loaded.config.intersections.is_empty());
            assert!(loaded.config.data_directory.is_absolute());
        }
        Err(errors) => assert!(errors.0.iter().all(|e| !e.to_string().trim().is_empty())),
    }
    match v2x_data_sftp_client::config::legacy::import(&file) {
        Ok(toml) => assert!(toml.contains("[[intersections]]")),
        Err(errors) => assert!(!errors.0.is_empty()),
    }
});
