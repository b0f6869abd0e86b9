//! Checks on the local (server) side: hashes, walks, landing assertions.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::remote::ManifestEntry;

/// Writes `bytes` to `<dir>/<name>`; returns that path.
pub fn write_file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// An empty `<dir>/known_hosts`: a config that names it loads (nothing is
/// trusted through it).
pub fn empty_known_hosts(dir: &Path) -> PathBuf {
    write_file(dir, "known_hosts", "")
}

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

/// Whether `path` is a regular file (not followed through a symlink) with
/// exactly `e`'s size and bytes.
pub fn holds_copy(path: &Path, e: &ManifestEntry) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.is_file() && m.len() == e.size)
        .unwrap_or(false)
        && sha256_file(path) == e.sha256
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

/// `name` with `.conflict-N` before its extension, as the client names the
/// second of two different files that land under one name.
pub fn conflict_variant(landing_rel: &str, n: u32) -> String {
    let (dir, name) = landing_rel
        .rsplit_once('/')
        .map_or(("", landing_rel), |(d, n)| (d, n));
    let renamed = match name.rfind('.') {
        Some(i) if i > 0 => format!("{}.conflict-{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}.conflict-{n}"),
    };
    if dir.is_empty() {
        renamed
    } else {
        format!("{dir}/{renamed}")
    }
}

/// Where each manifest file must be, relative to `base`: its landing path;
/// for k files that share one (the same name in two session folders), the
/// k places `name`, `name.conflict-1`, ... `name.conflict-(k-1)`, each
/// matched to the file whose bytes it holds (the order they land in is
/// the pipeline's, not the test's).
pub fn landing_places<'a>(
    base: &Path,
    manifest: &'a [ManifestEntry],
) -> BTreeMap<String, &'a ManifestEntry> {
    let mut groups: BTreeMap<String, Vec<&ManifestEntry>> = BTreeMap::new();
    for e in manifest {
        groups.entry(e.landing_rel()).or_default().push(e);
    }
    let mut out = BTreeMap::new();
    for (landing, group) in groups {
        if group.len() == 1 {
            out.insert(landing, group[0]);
            continue;
        }
        let places: Vec<String> = std::iter::once(landing.clone())
            .chain((1..group.len() as u32).map(|n| conflict_variant(&landing, n)))
            .collect();
        let mut left: Vec<&ManifestEntry> = group.clone();
        let mut free = Vec::new();
        for place in places {
            let p = base.join(&place);
            let sha = p.is_file().then(|| sha256_file(&p));
            match left.iter().position(|e| Some(&e.sha256) == sha.as_ref()) {
                Some(i) => {
                    out.insert(place, left.remove(i));
                }
                None => free.push(place),
            }
        }
        for (place, e) in free.into_iter().zip(left) {
            out.insert(place, e);
        }
    }
    out
}

/// Assert every `manifest` file landed exactly once at
/// `<data_dir>/<intersection>/<element>/<file name>` (or
/// `<data_dir>/<intersection>/<file name>` when its element is None),
/// byte-identical, and that nothing else is under `<data_dir>/<intersection>`
/// except paths with a component starting with '.' (temp files, state).
/// Manifest files named with a leading '.' (e.g. `...`) are still checked.
/// Files that share a landing path (twins) are found by content at that
/// path and its `.conflict-N` variants ([`landing_places`]).
pub fn assert_landed(data_dir: &Path, intersection: &str, manifest: &[ManifestEntry]) {
    let base = data_dir.join(intersection);
    let expected = landing_places(&base, manifest);
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
