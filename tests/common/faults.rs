//! Fault-campaign fixtures: running the binary as a child that can be
//! killed, peak memory of a run, a tmpfs data directory, an LD_PRELOAD shim
//! that makes local writes fail, and the campaign's figures.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::client::{Client, bin};
use super::local::{holds_copy, landing_places, sha256_file, walk_all};
use super::remote::ManifestEntry;
use super::run_cmd;

/// A `run` of the binary started in the background, its output going to
/// files (a pipe nobody reads could block it).
pub struct Running {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

/// How a background run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident set size of the process in KiB (`ru_maxrss` of wait4).
    pub max_rss_kib: u64,
}

impl Finished {
    /// Exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn killed(&self) -> bool {
        self.status.signal().is_some()
    }
}

impl Running {
    /// `v2x-data-sftp-client --config <client's> <args>` with extra
    /// environment; config and known_hosts are (re)written first.
    pub fn start(client: &Client, args: &[&str], env: &[(&str, &str)]) -> Running {
        client.write();
        let n = next_id();
        let out = client.dir.path().join(format!(".run-{n}.out"));
        let err = client.dir.path().join(format!(".run-{n}.err"));
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(client.config_path())
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("V2X_FAULT_KILL_AT")
            .env_remove("V2X_FAULT_PANIC_AT")
            .env_remove("V2X_FAULT_INTERSECTION")
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the binary");
        Running {
            child: Some(child),
            out,
            err,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Sends `sig` (ignored if the process is already gone).
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), sig);
    }

    /// Whether the process has exited (without reaping it).
    pub fn exited(&self) -> bool {
        let mut info = std::mem::MaybeUninit::<nix::libc::siginfo_t>::zeroed();
        // WNOWAIT: look, do not reap, so `wait` still gets rusage.
        let r = unsafe {
            nix::libc::waitid(
                nix::libc::P_PID,
                self.pid() as nix::libc::id_t,
                info.as_mut_ptr(),
                nix::libc::WEXITED | nix::libc::WNOHANG | nix::libc::WNOWAIT,
            )
        };
        r == 0 && unsafe { info.assume_init().si_pid() } != 0
    }

    /// Reads this run's stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    /// Waits for the process (killing it after `limit`) and collects it.
    pub fn wait(mut self, limit: Duration) -> Finished {
        let deadline = self.started + limit;
        while !self.exited() {
            if Instant::now() > deadline {
                self.signal(Signal::SIGKILL);
                let f = self.reap();
                panic!(
                    "the binary did not exit within {limit:?}; killed it. stderr:\n{}",
                    f.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.reap()
    }

    fn reap(&mut self) -> Finished {
        let child = self.child.take().expect("child");
        let pid = child.id() as nix::libc::pid_t;
        let mut status: nix::libc::c_int = 0;
        let mut usage = std::mem::MaybeUninit::<nix::libc::rusage>::zeroed();
        let r = loop {
            let r = unsafe { nix::libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
            if r == -1 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            break r;
        };
        assert_eq!(r, pid, "wait4: {}", nix::errno::Errno::last());
        // Reaped by hand: keep std from waiting on a recycled pid.
        std::mem::forget(child);
        let usage = unsafe { usage.assume_init() };
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        Finished {
            status: ExitStatus::from_raw(status),
            stdout: read(&self.out),
            stderr: read(&self.err),
            elapsed: self.started.elapsed(),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(Signal::SIGKILL);
            let _ = self.reap();
        }
    }
}

fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Runs `run` in the foreground with extra environment.
pub fn run_with_env(client: &Client, env: &[(&str, &str)], limit: Duration) -> Finished {
    Running::start(client, &["run"], env).wait(limit)
}

/// A tmpfs mounted on a folder; unmounted (lazily, so an open file cannot
/// keep it) on drop, also when a test panics.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `8m`) on `path`, creating it.
    pub fn mount_at(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).expect("tmpfs mount point");
        run_cmd(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("v2xtest-tmpfs")
                .arg(path),
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows (or shrinks) the filesystem in place: "space was freed".
    pub fn resize(&self, size: &str) {
        run_cmd(
            Command::new("mount")
                .arg("-o")
                .arg(format!("remount,size={size}"))
                .arg(&self.path),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Compiles (once per test process) `tests/common/failwrite.c` into a
/// shared object for LD_PRELOAD and returns its path. See that file for
/// its environment variables.
pub fn failwrite_shim() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/failwrite.c");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("failwrite");
        fs::create_dir_all(&out_dir).expect("shim dir");
        let so = out_dir.join(format!("failwrite-{}.so", std::process::id()));
        run_cmd(
            Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
                .arg(&so)
                .arg(&src)
                .arg("-ldl"),
        );
        so
    })
    .clone()
}

/// What a check of one intersection's landed data found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Original files checked.
    pub checked: u64,
    /// Originals not at their landing path byte-identical, and not anywhere
    /// else either.
    pub lost: u64,
    /// Extra visible copies of an original (e.g. a `.conflict-1` twin).
    pub duplicated: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.checked += o.checked;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
    }
}

/// Counts, rather than asserts, how `manifest` landed under
/// `<data_dir>/<intersection>`: each original must be at its landing path,
/// byte-identical, and no other visible file may hold a copy of one.
pub fn tally_landed(data_dir: &Path, intersection: &str, manifest: &[ManifestEntry]) -> Tally {
    let base = data_dir.join(intersection);
    let mut by_hash: BTreeMap<String, u64> = BTreeMap::new();
    for rel in walk_all(&base) {
        if rel.split('/').any(|c| c.starts_with('.')) {
            continue;
        }
        let p = base.join(&rel);
        if fs::symlink_metadata(&p)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            *by_hash.entry(sha256_file(&p)).or_default() += 1;
        }
    }
    let mut t = Tally::default();
    let mut expected_copies: BTreeMap<&str, u64> = BTreeMap::new();
    for (landing, e) in landing_places(&base, manifest) {
        t.checked += 1;
        *expected_copies.entry(e.sha256.as_str()).or_default() += 1;
        if !holds_copy(&base.join(landing), e) {
            t.lost += 1;
        }
    }
    for (hash, want) in expected_copies {
        let have = by_hash.get(hash).copied().unwrap_or(0);
        t.duplicated += have.saturating_sub(want);
    }
    t
}

/// After a killed pass: every file of `manifest` named in `gone` (no
/// longer on the coprocessor) must be landed byte-identical. Places are
/// assigned over the whole manifest, not over `gone` alone: of two twins
/// (one name in two session folders), the one landed first takes the plain
/// name and may still wait remotely for its REMOVE when the pass dies,
/// while the other, landed as `.conflict-1` and removed, is among `gone`.
pub fn tally_gone(
    data_dir: &Path,
    intersection: &str,
    manifest: &[ManifestEntry],
    gone: &[String],
) -> Tally {
    let base = data_dir.join(intersection);
    let mut t = Tally::default();
    for (landing, e) in landing_places(&base, manifest) {
        if !gone.contains(&e.rel) {
            continue;
        }
        t.checked += 1;
        if !holds_copy(&base.join(landing), e) {
            t.lost += 1;
        }
    }
    t
}

/// Hidden `.part` files under `dir` (temporary downloads).
pub fn partial_files(dir: &Path) -> Vec<String> {
    walk_all(dir)
        .into_iter()
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".part"))
        })
        .collect()
}

/// The number of field `name` (`"VmHWM:"`, `"Threads:"`) in the text of a
/// `/proc/<pid>/status` file; sizes are in KiB there.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One row of the campaign's figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: String,
    pub trials: u64,
    pub tally: Tally,
    pub note: String,
}

fn campaign_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; the figures go beside it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("fault-campaign")
}

/// Where the assembled table goes: `<target>/fault-campaign.md`.
pub fn campaign_table_path() -> PathBuf {
    campaign_dir().with_extension("md")
}

/// Records a row (one file per fault under `<target>/fault-campaign/`),
/// prints it, and rewrites `<target>/fault-campaign.md` from every row there.
pub fn record(row: Row) {
    let dir = campaign_dir();
    fs::create_dir_all(&dir).expect("campaign dir");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .expect("lock file");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let slug: String = row
        .fault
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let line = format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        row.fault, row.trials, row.tally.checked, row.tally.lost, row.tally.duplicated, row.note
    );
    fs::write(dir.join(format!("{slug}.tsv")), format!("{line}\n")).expect("write row");
    println!(
        "fault campaign: {} | trials {} | files checked {} | lost {} | duplicated {} | {}",
        row.fault, row.trials, row.tally.checked, row.tally.lost, row.tally.duplicated, row.note
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for e in fs::read_dir(&dir).expect("read campaign dir").flatten() {
        if e.path().extension().is_some_and(|x| x == "tsv") {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            if let Some(l) = text.lines().next() {
                rows.push(l.split('\t').map(str::to_string).collect());
            }
        }
    }
    rows.sort();
    let mut md = String::from(
        "| fault | trials | files checked | files lost | files duplicated | notes |\n\
         | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    let (mut tr, mut ch, mut lo, mut du) = (0u64, 0u64, 0u64, 0u64);
    for r in &rows {
        if r.len() < 6 {
            continue;
        }
        let n = |i: usize| r[i].parse::<u64>().unwrap_or(0);
        tr += n(1);
        ch += n(2);
        lo += n(3);
        du += n(4);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r[0], r[1], r[2], r[3], r[4], r[5]
        ));
    }
    md.push_str(&format!(
        "| **total** | **{tr}** | **{ch}** | **{lo}** | **{du}** | |\n"
    ));
    let tmp = dir.join(".table.tmp");
    let mut f = File::create(&tmp).expect("table");
    f.write_all(md.as_bytes()).expect("write table");
    drop(f);
    fs::rename(&tmp, campaign_table_path()).expect("rename table");
}

/// How many trials a campaign runs: `V2X_TRIALS=N` wins, then
/// `V2X_CAMPAIGN=long` (×10 the default), else `default`.
pub fn trials(default: u64) -> u64 {
    if let Some(n) = std::env::var("V2X_TRIALS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return n.max(1);
    }
    if std::env::var("V2X_CAMPAIGN").is_ok_and(|v| v == "long") {
        return default * 10;
    }
    default
}

/// The campaign's seed: `V2X_SEED=N` replays a run; otherwise the time.
pub fn campaign_seed() -> u64 {
    std::env::var("V2X_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
