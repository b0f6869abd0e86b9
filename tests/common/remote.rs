//! The coprocessor side: an MMITSS-shaped v2x-data tree owned by v2xtest.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::ops::RangeInclusive;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::{Mode, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat, mkfifo};
use tempfile::TempDir;

use super::data::{
    ELEMENTS, Rng, Stamp, csv_bytes, element_file_name, expected_element, pseudo_random_bytes,
    session_name,
};
use super::local::sha256_bytes;
use super::user::TestUser;

/// Coprocessor name used for the current session of [`RemoteTree::new`]
/// (contains the letters of `spat`, `ssm`, and `srm`-ish lookalikes on purpose).
pub const DEFAULT_COPROC_NAME: &str = "SpatzAve-Ssmith";

/// Default age (mtime in the past) of every generated entry.
pub const DEFAULT_AGE: Duration = Duration::from_secs(3600);

/// One regular file put under `archive/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to `archive/` (`Name_06092021_000000/Name_spatLog_06092021_000000.csv`).
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Element the product should route it to (`None`: no element, lands
    /// directly under the intersection dir).
    pub element: Option<&'static str>,
    /// Created by [`RemoteTree::add_odd_names`] (newline, backslash, 255-byte
    /// name, ...): tests that do not target odd names may filter these out.
    pub odd_name: bool,
}

impl ManifestEntry {
    /// Last path component.
    pub fn file_name(&self) -> &str {
        self.rel.rsplit('/').next().expect("file name")
    }

    /// Where it should land relative to the intersection's local dir:
    /// `<element>/<file name>` or `<file name>`.
    pub fn landing_rel(&self) -> String {
        match self.element {
            Some(el) => format!("{el}/{}", self.file_name()),
            None => self.file_name().to_owned(),
        }
    }
}

/// Non-regular hostile entries made by [`RemoteTree::add_hostile_entries`].
#[derive(Clone, Debug)]
pub struct HostileEntries {
    /// Symlink (rel to archive/) to a regular file outside v2x-data.
    pub symlink_to_file: String,
    /// Symlink (rel to archive/) to a directory outside v2x-data.
    pub symlink_to_dir: String,
    /// Dangling symlink (rel to archive/).
    pub dangling_symlink: String,
    /// FIFO (rel to archive/); reading it would block forever.
    pub fifo: String,
    /// Regular files with odd names (also in the manifest, `odd_name: true`).
    pub odd_files: Vec<ManifestEntry>,
}

/// A temp dir (removed on drop) laid out as a coprocessor's disk:
///
/// ```text
/// <root>/v2x-data/                      v2x_data_location()
/// <root>/v2x-data/<Name>_<ts>/          current session (5 CSVs), must stay untouched
/// <root>/v2x-data/archive/...           what the add_* methods create
/// <root>/outside/...                    symlink targets outside v2x-data
/// ```
///
/// Everything is owned by v2xtest (dirs 0755, files 0644) and every ancestor
/// of the root is made traversable, so sshd's SFTP can read and delete it.
/// Every created entry (and the dirs leading to it) gets an mtime
/// [`DEFAULT_AGE`] in the past unless pinned with [`RemoteTree::set_age`] /
/// [`RemoteTree::make_fresh`]. Content is deterministic (seeded by path).
pub struct RemoteTree {
    dir: TempDir,
    user: TestUser,
    seed: u64,
    entries: BTreeMap<String, ManifestEntry>,
    current_rel: String,
    current_files: Vec<(String, u64, String)>,
    pinned: HashSet<String>,
    outside_files: Vec<(PathBuf, String)>,
    outside_count: usize,
}

impl RemoteTree {
    /// New tree with the current session named after [`DEFAULT_COPROC_NAME`], seed 1.
    pub fn new() -> RemoteTree {
        RemoteTree::with_options(DEFAULT_COPROC_NAME, 1)
    }

    /// New tree whose current session belongs to `coproc`; `seed` varies content.
    pub fn with_options(coproc: &str, seed: u64) -> RemoteTree {
        let user = TestUser::ensure();
        let dir = tempfile::Builder::new()
            .prefix("v2xtest-remote.")
            .tempdir()
            .expect("remote temp dir");
        make_ancestors_traversable(dir.path());
        let mut t = RemoteTree {
            dir,
            user,
            seed,
            entries: BTreeMap::new(),
            current_rel: String::new(),
            current_files: Vec::new(),
            pinned: HashSet::new(),
            outside_files: Vec::new(),
            outside_count: 0,
        };
        let root = t.root().to_owned();
        t.own_dir(&root);
        t.own_dir(&t.v2x_data_location());
        t.own_dir(&t.archive_dir());
        t.own_dir(&root.join("outside"));
        // the session the collector is writing right now
        let cur = Stamp::new(2021, 7, 10, 8, 15, 0);
        t.current_rel = session_name(coproc, cur);
        let cdir = t.v2x_data_location().join(&t.current_rel);
        t.own_dir(&cdir);
        for el in ELEMENTS {
            let name = element_file_name(coproc, el, cur);
            let mut rng = Rng::from_str_seed(&name, seed ^ 0xc0ffee);
            let bytes = csv_bytes(el, cur, 3000, &mut rng);
            let p = cdir.join(&name);
            t.write_owned(&p, &bytes);
            t.set_path_age(&p, DEFAULT_AGE);
            t.current_files
                .push((name, bytes.len() as u64, sha256_bytes(&bytes)));
        }
        t.set_path_age(&cdir, DEFAULT_AGE);
        t.set_path_age(&t.archive_dir(), DEFAULT_AGE);
        t
    }

    /// Root of the temp dir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/v2x-data`: the `v2x-data_location` to put in the config.
    pub fn v2x_data_location(&self) -> PathBuf {
        self.root().join("v2x-data")
    }

    /// `<root>/v2x-data/archive`.
    pub fn archive_dir(&self) -> PathBuf {
        self.v2x_data_location().join("archive")
    }

    /// Name of the current (not archived) session dir, e.g. `SpatzAve-Ssmith_07102021_081500`.
    pub fn current_session_name(&self) -> &str {
        &self.current_rel
    }

    /// `<root>/v2x-data/<current session>`.
    pub fn current_session_dir(&self) -> PathBuf {
        self.v2x_data_location().join(&self.current_rel)
    }

    /// Absolute path of `rel` (relative to archive/).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.archive_dir().join(rel)
    }

    /// A closed session `archive/<coproc>_<ts>/` with `files_per_element`
    /// CSVs of each of the five elements (file k of an element is stamped
    /// `stamp + k*600 s`), sizes drawn from `size_range`. Returns its files.
    pub fn add_session(
        &mut self,
        coproc: &str,
        stamp: Stamp,
        files_per_element: usize,
        size_range: RangeInclusive<u64>,
    ) -> Vec<ManifestEntry> {
        self.add_session_elements(coproc, stamp, &ELEMENTS, files_per_element, size_range)
    }

    /// [`RemoteTree::add_session`] with a chosen set of elements.
    pub fn add_session_elements(
        &mut self,
        coproc: &str,
        stamp: Stamp,
        elements: &[&str],
        files_per_element: usize,
        size_range: RangeInclusive<u64>,
    ) -> Vec<ManifestEntry> {
        let sess = session_name(coproc, stamp);
        self.add_dir(&sess);
        let mut out = Vec::new();
        for k in 0..files_per_element {
            let fstamp = stamp.plus_secs(600 * k as i64);
            for el in elements {
                let rel = format!("{sess}/{}", element_file_name(coproc, el, fstamp));
                let mut rng = Rng::from_str_seed(&rel, self.seed);
                let size = rng.range(*size_range.start(), *size_range.end());
                let bytes = csv_bytes(el, fstamp, size, &mut rng);
                out.push(self.add_file(&rel, &bytes));
            }
        }
        out
    }

    /// A compressed session `archive/<coproc>_<ts>.zip` of `size` bytes
    /// (starts with `PK\x03\x04`, rest pseudo-random; element None).
    pub fn add_zip_session(&mut self, coproc: &str, stamp: Stamp, size: usize) -> ManifestEntry {
        let rel = format!("{}.zip", session_name(coproc, stamp));
        let seed = Rng::from_str_seed(&rel, self.seed).next_u64();
        let mut bytes = pseudo_random_bytes(seed, size.max(4));
        bytes[..4].copy_from_slice(b"PK\x03\x04");
        self.add_file(&rel, &bytes)
    }

    /// Any regular file at `rel` (parents created); element from
    /// [`expected_element`] of its file name.
    pub fn add_file(&mut self, rel: &str, bytes: &[u8]) -> ManifestEntry {
        let el = expected_element(rel.rsplit('/').next().expect("name"));
        self.add_file_as(rel, bytes, el)
    }

    /// Regular file with an explicitly expected element.
    pub fn add_file_as(
        &mut self,
        rel: &str,
        bytes: &[u8],
        element: Option<&'static str>,
    ) -> ManifestEntry {
        let p = self.prepare(rel);
        self.write_owned(&p, bytes);
        let e = ManifestEntry {
            rel: rel.to_owned(),
            size: bytes.len() as u64,
            sha256: sha256_bytes(bytes),
            element,
            odd_name: false,
        };
        self.entries.insert(rel.to_owned(), e.clone());
        self.age_new(rel);
        e
    }

    /// `size` pseudo-random bytes at `rel` (fast, for big files).
    pub fn add_random_file(&mut self, rel: &str, size: usize) -> ManifestEntry {
        let seed = Rng::from_str_seed(rel, self.seed).next_u64();
        self.add_file(rel, &pseudo_random_bytes(seed, size))
    }

    /// One log of `size` pseudo-random bytes in a session of its own:
    /// `<coproc>_<ts>/<coproc>_<element token>_<ts>.csv` (a big file, for
    /// cuts, stalls and memory bounds).
    pub fn add_log(
        &mut self,
        coproc: &str,
        element: &str,
        stamp: Stamp,
        size: usize,
    ) -> ManifestEntry {
        let rel = format!(
            "{}/{}",
            session_name(coproc, stamp),
            element_file_name(coproc, element, stamp)
        );
        self.add_random_file(&rel, size)
    }

    /// Two files of one name, size and mtime but different bytes in two
    /// session folders, as when a session is sent again under another
    /// folder name: `<session>/<name>` and `<session>-resent/<name>`.
    /// Returns both; they land as `<name>` and `<name-stem>.conflict-1.<ext>`.
    pub fn add_twins(&mut self, session: &str, name: &str, size: usize) -> [ManifestEntry; 2] {
        let first = format!("{session}/{name}");
        let second = format!("{session}-resent/{name}");
        let a = self.add_random_file(&first, size);
        let mut bytes = fs::read(self.path(&first)).expect("read the first twin");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        let b = self.add_file(&second, &bytes);
        let mtime = fs::metadata(self.path(&first))
            .and_then(|m| m.modified())
            .expect("mtime of the first twin")
            .duration_since(UNIX_EPOCH)
            .expect("time");
        let ts = TimeSpec::from(mtime);
        utimensat(
            AT_FDCWD,
            &self.path(&second),
            &ts,
            &ts,
            UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
        self.pinned.insert(second);
        assert_ne!(a.sha256, b.sha256);
        [a, b]
    }

    /// A directory (and parents) under archive/.
    pub fn add_dir(&mut self, rel: &str) {
        let p = self.path(rel);
        self.create_parents(&p);
        if !p.is_dir() {
            self.own_dir(&p);
        }
        self.age_new(rel);
    }

    /// A file written relative to v2x-data/ (not archive/), e.g. beside the
    /// current session; not in the manifest.
    pub fn add_untracked_file(&mut self, rel_to_location: &str, bytes: &[u8]) -> PathBuf {
        let p = self.v2x_data_location().join(rel_to_location);
        self.create_parents(&p);
        self.write_owned(&p, bytes);
        self.set_path_age(&p, DEFAULT_AGE);
        p
    }

    /// Symlink at `rel` pointing to `target` (not in the manifest).
    pub fn add_symlink(&mut self, rel: &str, target: &Path) {
        let p = self.prepare(rel);
        symlink(target, &p).expect("symlink");
        self.chown_nofollow(&p);
        self.age_new(rel);
    }

    /// Symlink at `rel` to a fresh regular file under `<root>/outside/`
    /// (readable, so a client that follows it would copy it). Returns the target.
    pub fn add_symlink_to_outside_file(&mut self, rel: &str) -> PathBuf {
        self.outside_count += 1;
        let target = self
            .root()
            .join("outside")
            .join(format!("secret-{}.csv", self.outside_count));
        let bytes = format!(
            "outside file {} must never be pulled or deleted\n",
            self.outside_count
        );
        self.write_owned(&target, bytes.as_bytes());
        self.outside_files
            .push((target.clone(), sha256_bytes(bytes.as_bytes())));
        self.add_symlink(rel, &target);
        target
    }

    /// Symlink at `rel` to a fresh dir under `<root>/outside/` holding one
    /// file. Returns the target dir.
    pub fn add_symlink_to_outside_dir(&mut self, rel: &str) -> PathBuf {
        self.outside_count += 1;
        let target = self
            .root()
            .join("outside")
            .join(format!("dir-{}", self.outside_count));
        self.own_dir(&target);
        let f = target.join("inside_spatLog_06092021_000000.csv");
        let bytes = b"log_timestamp_verbose\noutside dir file\n";
        self.write_owned(&f, bytes);
        self.outside_files.push((f, sha256_bytes(bytes)));
        self.add_symlink(rel, &target);
        target
    }

    /// FIFO at `rel` (not in the manifest).
    pub fn add_fifo(&mut self, rel: &str) {
        let p = self.prepare(rel);
        mkfifo(&p, Mode::from_bits_truncate(0o644)).expect("mkfifo");
        self.chown_nofollow(&p);
        self.age_new(rel);
    }

    /// Regular files with odd but legal names inside `dir_rel` (relative to
    /// archive/, created if needed): `...`, a newline, a backslash, a leading
    /// space, a leading dash, glob characters, non-ASCII UTF-8, and a 255-byte
    /// name ending in `_spatLog_<ts>.csv` (element spat; the rest have none).
    pub fn add_odd_names(&mut self, dir_rel: &str) -> Vec<ManifestEntry> {
        self.add_dir(dir_rel);
        let suffix = "_spatLog_06092021_000000.csv";
        let long = format!("{}{suffix}", "L".repeat(255 - suffix.len()));
        assert_eq!(long.len(), 255);
        let names = [
            "...".to_owned(),
            "new\nline.csv".to_owned(),
            "back\\slash.csv".to_owned(),
            " leading space.csv".to_owned(),
            "-leading-dash.csv".to_owned(),
            "glob*?[x].csv".to_owned(),
            "ünïcødé-✓.csv".to_owned(),
            long,
        ];
        let mut out = Vec::new();
        for n in names {
            let rel = if dir_rel.is_empty() {
                n.clone()
            } else {
                format!("{dir_rel}/{n}")
            };
            let body = format!("odd name {n:?}\n");
            self.add_file(&rel, body.as_bytes());
            let e = self.entries.get_mut(&rel).expect("entry");
            e.odd_name = true;
            out.push(e.clone());
        }
        out
    }

    /// A symlink to an outside file, one to an outside dir, a dangling
    /// symlink, a FIFO and [`RemoteTree::add_odd_names`], all inside `dir_rel`.
    pub fn add_hostile_entries(&mut self, dir_rel: &str) -> HostileEntries {
        let j = |n: &str| {
            if dir_rel.is_empty() {
                n.to_owned()
            } else {
                format!("{dir_rel}/{n}")
            }
        };
        let h = HostileEntries {
            symlink_to_file: j("link_to_file_spatLog_06092021_000000.csv"),
            symlink_to_dir: j("link_to_dir"),
            dangling_symlink: j("dangling_ssmLog_06092021_000000.csv"),
            fifo: j("fifo_srmLog_06092021_000000.csv"),
            odd_files: Vec::new(),
        };
        self.add_dir(dir_rel);
        self.add_symlink_to_outside_file(&h.symlink_to_file);
        self.add_symlink_to_outside_dir(&h.symlink_to_dir);
        self.add_symlink(&h.dangling_symlink, Path::new("/nonexistent/v2xtest"));
        self.add_fifo(&h.fifo);
        let odd = self.add_odd_names(dir_rel);
        HostileEntries {
            odd_files: odd,
            ..h
        }
    }

    /// Set the mtime of `rel` to `age` ago (not following symlinks) and keep
    /// it there when later additions re-age parent dirs.
    pub fn set_age(&mut self, rel: &str, age: Duration) {
        let p = self.path(rel);
        self.set_path_age(&p, age);
        self.pinned.insert(rel.trim_end_matches('/').to_owned());
    }

    /// Set the mtime of `rel` to now (a file still being written).
    pub fn make_fresh(&mut self, rel: &str) {
        self.set_age(rel, Duration::ZERO);
    }

    /// Every regular file created under archive/, sorted by path.
    pub fn manifest(&self) -> Vec<ManifestEntry> {
        self.entries.values().cloned().collect()
    }

    /// Manifest without the odd-name files.
    pub fn manifest_plain(&self) -> Vec<ManifestEntry> {
        self.entries
            .values()
            .filter(|e| !e.odd_name)
            .cloned()
            .collect()
    }

    /// Manifest entry for `rel`.
    pub fn entry(&self, rel: &str) -> Option<&ManifestEntry> {
        self.entries.get(rel)
    }

    /// The manifest files no longer on the remote side: after a pass, the
    /// ones it took (and so must have landed).
    pub fn taken(&self) -> Vec<ManifestEntry> {
        let remaining = self.remaining_files();
        self.entries
            .values()
            .filter(|e| !remaining.contains(&e.rel))
            .cloned()
            .collect()
    }

    /// Sum of manifest sizes.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    /// Every non-directory entry still under archive/ (files, symlinks,
    /// FIFOs; symlinks not followed), paths relative to archive/, sorted.
    pub fn remaining_files(&self) -> Vec<String> {
        super::local::walk_all(&self.archive_dir())
    }

    /// Every directory still under archive/ (relative paths, sorted).
    pub fn remaining_dirs(&self) -> Vec<String> {
        super::local::walk(&self.archive_dir())
            .into_iter()
            .filter(|(_, md)| md.is_dir())
            .map(|(rel, _)| rel)
            .collect()
    }

    /// Panics unless everything under archive/ was taken: no file or
    /// folder left, archive/ itself still there. `context` leads the message.
    #[track_caller]
    pub fn assert_emptied(&self, context: &str) {
        let (files, dirs) = (self.remaining_files(), self.remaining_dirs());
        assert!(
            files.is_empty() && dirs.is_empty(),
            "{context}: left remotely: files {files:?}, folders {dirs:?}"
        );
        assert!(
            self.archive_dir().is_dir(),
            "{context}: archive/ itself must stay"
        );
    }

    /// Whether the current session dir still holds exactly its five files, unchanged.
    pub fn current_session_untouched(&self) -> bool {
        self.current_session_problems().is_empty()
    }

    /// Panic with details unless [`RemoteTree::current_session_untouched`].
    pub fn assert_current_session_untouched(&self) {
        let p = self.current_session_problems();
        assert!(p.is_empty(), "current session changed: {p:#?}");
    }

    fn current_session_problems(&self) -> Vec<String> {
        let dir = self.current_session_dir();
        let mut problems = Vec::new();
        let mut listed: Vec<String> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => return vec![format!("{}: {e}", dir.display())],
        };
        listed.sort();
        let mut want: Vec<String> = self.current_files.iter().map(|f| f.0.clone()).collect();
        want.sort();
        if listed != want {
            problems.push(format!("listing {listed:?} != {want:?}"));
        }
        for (name, size, sha) in &self.current_files {
            match fs::read(dir.join(name)) {
                Ok(b) if b.len() as u64 == *size && sha256_bytes(&b) == *sha => {}
                Ok(_) => problems.push(format!("{name}: content changed")),
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        problems
    }

    /// Whether every symlink target under `<root>/outside/` is still intact.
    pub fn outside_untouched(&self) -> bool {
        self.outside_files.iter().all(|(p, sha)| {
            fs::read(p)
                .map(|b| sha256_bytes(&b) == *sha)
                .unwrap_or(false)
        })
    }

    // ---------------------------------------------------------------- internals

    fn prepare(&self, rel: &str) -> PathBuf {
        assert!(
            !rel.is_empty() && !rel.starts_with('/'),
            "relative path expected: {rel:?}"
        );
        let p = self.path(rel);
        self.create_parents(&p);
        p
    }

    fn create_parents(&self, p: &Path) {
        let parent = p.parent().expect("parent");
        let mut missing = Vec::new();
        let mut cur = parent;
        while !cur.exists() {
            missing.push(cur.to_owned());
            cur = cur.parent().expect("parent");
        }
        for d in missing.iter().rev() {
            self.own_dir(d);
        }
    }

    fn own_dir(&self, p: &Path) {
        if !p.is_dir() {
            fs::create_dir(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        }
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod dir");
        self.chown_nofollow(p);
    }

    fn write_owned(&self, p: &Path, bytes: &[u8]) {
        fs::write(p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).expect("chmod file");
        self.chown_nofollow(p);
    }

    fn chown_nofollow(&self, p: &Path) {
        fchownat(
            AT_FDCWD,
            p,
            Some(Uid::from_raw(self.user.uid)),
            Some(Gid::from_raw(self.user.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
    }

    fn set_path_age(&self, p: &Path, age: Duration) {
        let t = SystemTime::now() - age;
        let d = t.duration_since(UNIX_EPOCH).expect("time");
        let ts = TimeSpec::from(d);
        utimensat(AT_FDCWD, p, &ts, &ts, UtimensatFlags::NoFollowSymlink)
            .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
    }

    /// Age `rel` and every dir leading to it (incl. archive/) unless pinned.
    fn age_new(&self, rel: &str) {
        let rel = rel.trim_end_matches('/');
        let mut prefixes: Vec<&str> = rel.match_indices('/').map(|(i, _)| &rel[..i]).collect();
        prefixes.push(rel);
        for pre in prefixes.iter().rev() {
            if !self.pinned.contains(*pre) {
                self.set_path_age(&self.path(pre), DEFAULT_AGE);
            }
        }
        self.set_path_age(&self.archive_dir(), DEFAULT_AGE);
    }
}

impl Default for RemoteTree {
    fn default() -> Self {
        RemoteTree::new()
    }
}

/// Give every ancestor of `p` the search (x) bit for others, so v2xtest can
/// reach `p` (tempdirs under /tmp are fine; a 0700 TMPDIR is not).
fn make_ancestors_traversable(p: &Path) {
    for a in p.ancestors().skip(1) {
        if let Ok(m) = fs::metadata(a) {
            let mode = m.permissions().mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o001))
                    .unwrap_or_else(|e| panic!("chmod o+x {}: {e}", a.display()));
            }
        }
    }
}
