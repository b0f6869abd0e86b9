//! Checks on the local (server) side: hashes, walks, landing assertions.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::remote::ManifestEntry;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// Every entry under `dir`, recursively, symlinks not followed, as (path
/// relative to `dir` with `/`, lstat metadata), sorted. A missing `dir`
/// gives an empty list. The one walker behind the helpers below.
pub fn walk(dir: &Path) -> Vec<(String, fs::Metadata)> {
    fn go(dir: &Path, prefix: &str, out: &mut Vec<(String, fs::Metadata)>) {
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let md = fs::symlink_metadata(e.path()).expect("lstat");
            if md.is_dir() {
                go(&e.path(), &rel, out);
            }
            out.push((rel, md));
        }
    }
    let mut out = Vec::new();
    go(dir, "", &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every regular file under `dir` (dot names included) as (relative path,
/// size), sorted.
pub fn walk_files(dir: &Path) -> Vec<(String, u64)> {
    walk(dir)
        .into_iter()
        .filter(|(_, md)| md.is_file())
        .map(|(rel, md)| (rel, md.len()))
        .collect()
}

/// Every non-directory entry under `dir` (files, symlinks, FIFOs...) with
/// relative paths, sorted; for spotting anything that is not a plain file.
pub fn walk_all(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|(_, md)| !md.is_dir())
        .map(|(rel, _)| rel)
        .collect()
}

fn hidden(rel: &str) -> bool {
    rel.split('/').any(|c| c.starts_with('.'))
}

/// Assert every `manifest` file landed exactly once at
/// `<data_dir>/<intersection>/<element>/<file name>` (or
/// `<data_dir>/<intersection>/<file name>` when its element is None),
/// byte-identical, and that nothing else is under `<data_dir>/<intersection>`
/// except paths with a component starting with '.' (temp files, state).
/// Manifest files named with a leading '.' (e.g. `...`) are still checked.
pub fn assert_landed(data_dir: &Path, intersection: &str, manifest: &[ManifestEntry]) {
    let base = data_dir.join(intersection);
    let mut expected: BTreeMap<String, &ManifestEntry> = BTreeMap::new();
    for e in manifest {
        if let Some(prev) = expected.insert(e.landing_rel(), e) {
            panic!(
                "assert_landed: {:?} and {:?} both land at {:?}; the test data must not collide",
                prev.rel,
                e.rel,
                e.landing_rel()
            );
        }
    }
    let mut problems = Vec::new();
    for (landing, e) in &expected {
        let p = base.join(landing);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() => {
                if md.len() != e.size {
                    problems.push(format!("{landing}: size {} != {}", md.len(), e.size));
                } else if sha256_file(&p) != e.sha256 {
                    problems.push(format!("{landing}: sha256 differs"));
                }
            }
            Ok(_) => problems.push(format!("{landing}: not a regular file")),
            Err(err) => problems.push(format!("{landing}: missing ({err}) [from {}]", e.rel)),
        }
    }
    for rel in walk_all(&base) {
        if !hidden(&rel) && !expected.contains_key(&rel) {
            problems.push(format!("{rel}: unexpected"));
        }
    }
    assert!(
        problems.is_empty(),
        "assert_landed({}, {intersection}): {} problem(s):\n  {}\nlocal files: {:#?}",
        data_dir.display(),
        problems.len(),
        problems.join("\n  "),
        walk_files(&base)
    );
}
