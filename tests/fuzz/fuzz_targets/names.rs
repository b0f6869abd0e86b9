//! Any bytes as a remote file name: classification never panics and names
//! an element of the list; a name that passes `is_plain_name` (and its
//! conflict variants) stays one visible component inside its folder; the
//! temporary file a download opens is hidden and inside the folder; the
//! escaped form for logs has no control characters.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use v2x_data_sftp_client::transfer::classify::classify;
use v2x_data_sftp_client::config::DEFAULT_ELEMENTS;
use v2x_data_sftp_client::landing::{Identity, Lander, conflict_name, is_plain_name};
use v2x_data_sftp_client::common::text::escape;

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fn one_component_inside(root: &Path, name: &OsStr) {
    let joined = root.join(name);
    assert_eq!(joined.parent(), Some(root), "{name:?}");
    let rest: Vec<_> = joined.strip_prefix(root).unwrap().components().collect();
    assert_eq!(rest.len(), 1, "{name:?}");
    assert!(matches!(rest[0], Component::Normal(_)), "{name:?}");
}

fuzz_target!(|data: &[u8]| {
    let elements: Vec<String> = DEFAULT_ELEMENTS.iter().map(|s| s.to_string()).collect();
    let lossy = String::from_utf8_lossy(data);
    if let Some(el) = classify(&lossy, &elements) {
        assert!(elements.iter().any(|e| e == el));
    }
    let escaped = escape(OsStr::from_bytes(data));
    assert!(!escaped.chars().any(|c| c.is_control()), "{escaped:?}");

    let name = OsStr::from_bytes(data);
    if !is_plain_name(name) {
        return;
    }
    let root = Path::new("/var/lib/v2x/data/ix/spat");
    one_component_inside(root, name);
    for n in [0, 1, 9, 999] {
        let c = conflict_name(name, n);
        assert!(!c.as_bytes().contains(&b'/'));
        assert!(!c.as_bytes().starts_with(b"."), "{c:?}");
        one_component_inside(root, &c);
    }
    // The temporary file of a download: hidden, inside the folder.
    let folder = dir();
    let size = data.len() as u64;
    let mut lander = Lander::new();
    let mut remote = b"/v2x/archive/session/".to_vec();
    remote.extend_from_slice(data);
    let partial = lander
        .open(
            folder,
            name,
            &remote,
            Identity {
                size,
                mtime: size * 7,
            },
        )
        .expect("open a partial");
    let entries: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].as_bytes().starts_with(b"."), "{entries:?}");
    assert!(entries[0].as_bytes().ends_with(b".part"), "{entries:?}");
    assert!(entries[0].len() <= 255, "{entries:?}");
    partial.discard();
});
