//! Fitting the agency's links and watching the fleet (issue 12), against
//! real OpenSSH on loopback behind a simulated slow link: bandwidth caps
//! measured on the link, a transfer window cut mid-transfer and the next
//! pass, the coprocessor's free space against `df`, the backlog of a cut
//! pass, NO DATA, and the shipped Prometheus alert rules run by
//! `promtool test rules` on metrics written by real passes.
//!
//! The rate tests are behaviour tests, not benchmarks: a cap is a promise
//! ("1MiB/s" means 1 MiB/s on average), so they measure it, over 20 s and
//! more, on a link four times faster than the cap; the tolerance (±10 %)
//! is what the issue asks, and the pacing is exact to about 1 % on an idle
//! machine.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// A slow link: a userspace TCP proxy with a one-way delay each way and a
// bandwidth cap server→client (as the bench's delay-proxy does; tc netem is
// not available), recording when each byte went down.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct LinkShared {
    stop: AtomicBool,
    /// (when, bytes) of every write to the client.
    down: Mutex<Vec<(Instant, u64)>>,
    socks: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct SlowLink {
    addr: SocketAddr,
    shared: Arc<LinkShared>,
    accept: Option<JoinHandle<()>>,
}

impl SlowLink {
    /// `delay` one way, `rate` bytes per second down (the server's data).
    fn start(target: SocketAddr, delay: Duration, rate: u64) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind link");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(LinkShared::default());
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let clone = |s: &TcpStream| s.try_clone().expect("clone");
                sh.socks
                    .lock()
                    .expect("lock")
                    .extend([clone(&client), clone(&server)]);
                let up = pipe(clone(&client), clone(&server), delay, None, sh.clone());
                let down = pipe(server, client, delay, Some(rate), sh.clone());
                sh.threads
                    .lock()
                    .expect("lock")
                    .extend(up.into_iter().chain(down));
            }
        });
        SlowLink {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes sent down so far, and when each write happened.
    fn down(&self) -> Vec<(Instant, u64)> {
        self.shared.down.lock().expect("lock").clone()
    }
}

/// One direction: a reader stamps each chunk with when it may leave, a
/// writer sends it then, no faster than `rate`.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    rate: Option<u64>,
    sh: Arc<LinkShared>,
) -> [JoinHandle<()>; 2] {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let writer = std::thread::spawn(move || {
        let mut free_at = Instant::now();
        for (due, chunk) in rx {
            let mut at = due.max(free_at);
            if let Some(r) = rate {
                at += Duration::from_secs_f64(chunk.len() as f64 / r as f64);
                free_at = at;
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if sh.stop.load(Ordering::SeqCst) || to.write_all(&chunk).is_err() {
                break;
            }
            if rate.is_some() {
                sh.down
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), chunk.len() as u64));
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}

/// Adds intersection `name` to `client`, reached over a slow link of its
/// own (20 ms each way, 4 MiB/s down), which the caller keeps alive.
fn add_over_slow_link(client: &mut Client, sshd: &Sshd, tree: &RemoteTree, name: &str) -> SlowLink {
    let link = SlowLink::start(sshd.addr(), Duration::from_millis(20), 4 * MIB);
    client.add_through(Site::new(name, sshd, tree), sshd, link.addr());
    link
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        shut_down_proxy(
            &self.shared.stop,
            self.addr,
            self.accept.take(),
            &self.shared.socks,
            &self.shared.threads,
        );
    }
}

/// The average rate of a stream of (when, bytes) writes, between the
/// moment `skip` bytes had gone (past the handshakes and listings) and the
/// moment all but `skip` had (before the last files' closing requests and
/// the disconnects, which carry no file data), with the seconds it spans.
fn steady_rate(mut writes: Vec<(Instant, u64)>, skip: u64) -> (f64, f64) {
    writes.sort_by_key(|w| w.0);
    let total: u64 = writes.iter().map(|w| w.1).sum();
    let mut sum = 0;
    let (mut start, mut end) = (None, None);
    for (t, n) in &writes {
        sum += n;
        if start.is_none() && sum >= skip {
            start = Some((*t, sum));
        }
        if end.is_none() && sum >= total.saturating_sub(skip) {
            end = Some((*t, sum));
        }
    }
    let (t0, s0) = start.expect("enough bytes went down");
    let (t1, s1) = end.expect("enough bytes went down");
    let secs = (t1 - t0).as_secs_f64();
    ((s1 - s0) as f64 / secs, secs)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `files` random files of `size` bytes in MMITSS session folders.
fn fill(tree: &mut RemoteTree, files: usize, size: usize) {
    for k in 0..files {
        let stamp = Stamp::new(2021, 6, 1 + (k / 5) as u32, 0, 0, 0);
        let el = ELEMENTS[k % 5];
        let rel = format!(
            "{}/{}",
            session_name(DEFAULT_COPROC_NAME, stamp),
            element_file_name(DEFAULT_COPROC_NAME, el, stamp)
        );
        tree.add_random_file(&rel, size);
    }
}

/// Top-level keys and tables the fixture's `Client` does not write.
struct Extra<'a> {
    /// Before every table (e.g. `metrics_textfile = ...`).
    head: &'a str,
    /// After the intersections (e.g. a `[status]` table).
    tail: &'a str,
}

/// Writes the client's config with `extra` and runs `args` with `env`.
fn run_with(client: &Client, extra: &Extra, args: &[&str], env: &[(&str, &str)]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    client.write();
    let text = format!("{}\n{}\n{}", extra.head, client.config_text(), extra.tail);
    std::fs::write(client.config_path(), text).expect("config");
    std::fs::set_permissions(client.config_path(), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(client.config_path())
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the binary")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

fn ix<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["intersections"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// `df`'s available bytes and size of the filesystem holding `path`.
#[cfg(feature = "fault-injection")]
fn df(path: &Path) -> (u64, u64) {
    let out = Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(path)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let nums: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "df said: {text}");
    (nums[0], nums[1])
}

/// The metric's value for `intersection` in a textfile.
fn metric(text: &str, name: &str, intersection: &str) -> Option<f64> {
    let head = format!("v2x_data_sftp_client_{name}{{intersection=\"{intersection}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------
// Bandwidth caps
// ---------------------------------------------------------------------------

#[test]
fn max_rate_holds_one_intersection_to_its_cap_on_a_faster_slow_link() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    // 24 MiB at 1 MiB/s: 24 s, on a link of 4 MiB/s with a 40 ms round trip.
    fill(&mut tree, 24, MIB as usize);
    let mut client = Client::new();
    let link = add_over_slow_link(&mut client, &sshd, &tree, "intersection-1");
    client.set("max_rate = \"1MiB/s\"");
    let out = client.run();
    assert_exit(&out, 0);
    assert_landed(&client.data_dir(), "intersection-1", &tree.manifest());
    let (rate, secs) = steady_rate(link.down(), MIB / 2);
    eprintln!(
        "max_rate 1MiB/s: {:.4} MiB/s on the link over {secs:.1} s",
        rate / MIB as f64
    );
    assert!(secs >= 20.0, "measured over {secs} s");
    let cap = MIB as f64;
    assert!(
        (rate - cap).abs() <= cap * 0.10,
        "{rate:.0} B/s on the link, cap {cap} (±10 %)"
    );
    // The pass's own account agrees: every file byte once.
    let state = client.ix_state("intersection-1");
    assert_eq!(state["read_bytes"], tree.total_bytes());
}

#[test]
fn max_rate_total_holds_four_intersections_together() {
    let sshd = Sshd::start_default();
    let mut trees = Vec::new();
    let mut links = Vec::new();
    let mut client = Client::new();
    for i in 0..4 {
        let mut tree = RemoteTree::with_options(DEFAULT_COPROC_NAME, 10 + i);
        // 4 x 12 MiB at 2 MiB/s together: 24 s. Each link carries 4 MiB/s
        // and no intersection has a cap of its own: only the total binds,
        // also while the last one finishes alone.
        fill(&mut tree, 12, MIB as usize);
        let name = format!("intersection-{}", i + 1);
        links.push(add_over_slow_link(&mut client, &sshd, &tree, &name));
        trees.push(tree);
    }
    client.set("max_rate_total = \"2MiB/s\"");
    let out = client.run();
    assert_exit(&out, 0);
    let all: Vec<(Instant, u64)> = links.iter().flat_map(SlowLink::down).collect();
    let (rate, secs) = steady_rate(all, 2 * MIB);
    eprintln!(
        "max_rate_total 2MiB/s over four: {:.4} MiB/s on the links over {secs:.1} s",
        rate / MIB as f64
    );
    assert!(secs >= 20.0, "measured over {secs} s");
    let cap = 2.0 * MIB as f64;
    assert!(
        (rate - cap).abs() <= cap * 0.10,
        "{rate:.0} B/s on the four links, total cap {cap} (±10 %)"
    );
    for (i, tree) in trees.iter().enumerate() {
        assert_landed(
            &client.data_dir(),
            &format!("intersection-{}", i + 1),
            &tree.manifest(),
        );
    }
}

#[test]
fn a_cap_far_below_the_link_never_runs_a_request_into_io_timeout() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    // 128 KiB at 16 KiB/s: 8 s, four times transfer.io_timeout. Paced
    // requests are each answered at once, so no call waits that long.
    fill(&mut tree, 2, 64 << 10);
    let mut client = Client::new();
    client.add(Site::new("intersection-1", &sshd, &tree), &sshd);
    client.set("io_timeout = \"2s\"");
    client.set("max_rate = \"16KiB/s\"");
    let t = Instant::now();
    let out = client.run();
    let took = t.elapsed().as_secs_f64();
    assert_exit(&out, 0);
    assert_landed(&client.data_dir(), "intersection-1", &tree.manifest());
    assert!(took >= 6.0, "the cap was not applied: {took} s");
}

// ---------------------------------------------------------------------------
// The transfer window, the backlog of a cut pass, free space against df
// ---------------------------------------------------------------------------

/// A time zone whose clock reads a whole minute `ahead` from now (POSIX TZ
/// offsets may have seconds), and that minute as "HH:MM": `end_time` is a
/// real local time of day, read through the C library as in production,
/// without waiting up to a minute for the next one.
#[cfg(feature = "fault-injection")]
fn zone_with_minute_in(ahead: Duration) -> (String, String, SystemTime) {
    let end = SystemTime::now() + ahead;
    let secs = end.duration_since(UNIX_EPOCH).expect("clock").as_secs();
    // Local = UTC - off: the local clock reads a whole minute at `secs`.
    let off = secs % 60;
    let local = (secs - off) % 86_400;
    let tz = format!("XYZ+0:00:{off:02}");
    let hhmm = format!("{:02}:{:02}", local / 3600, local / 60 % 60);
    (tz, hhmm, UNIX_EPOCH + Duration::from_secs(secs))
}

/// The window's grace, shortened for this test through the documented
/// test-only variable (a real minute would make every run wait it out;
/// the cut itself is the same code).
#[cfg(feature = "fault-injection")]
const GRACE: &str = "6";

#[cfg(feature = "fault-injection")]
#[test]
fn end_time_mid_transfer_moves_nothing_after_the_grace_defers_the_rest_and_the_next_pass_takes_it_once()
 {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    // 16 files of 1 MiB at 512 KiB/s: 32 s; the window ends after ~10 s.
    fill(&mut tree, 16, MIB as usize);
    let total = tree.total_bytes();
    let mut client = Client::new();
    let link = add_over_slow_link(&mut client, &sshd, &tree, "intersection-1");
    client.set("max_rate = \"512KiB/s\"");
    let prom = client.dir.path().join("v2x.prom");
    let head = format!("metrics_textfile = {:?}", prom.display().to_string());
    let extra = Extra {
        head: &head,
        tail: "[status]\nremote_min_free = \"1%\"\n",
    };
    let (tz, hhmm, end) = zone_with_minute_in(Duration::from_secs(10));
    client.set(&format!("end_time = \"{hhmm}\""));
    let start = Instant::now();
    let start_wall = SystemTime::now();
    let out = run_with(
        &client,
        &extra,
        &["run"],
        &[("TZ", &tz), ("V2X_TEST_WINDOW_GRACE_SECONDS", GRACE)],
    );
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("transfer window closed"), "{err}");

    // No byte went down the link after end + grace (a write in progress at
    // that instant may finish: 16 KiB at 4 MiB/s is 4 ms; 250 ms allowed for
    // the watchdog's and this machine's scheduling).
    let hard_end = start
        + end.duration_since(start_wall).unwrap_or_default()
        + Duration::from_secs(GRACE.parse().unwrap_or(6));
    let writes = link.down();
    let late: u64 = writes
        .iter()
        .filter(|(t, _)| *t > hard_end + Duration::from_millis(250))
        .map(|w| w.1)
        .sum();
    assert_eq!(late, 0, "bytes moved after end_time + grace");

    let first = client.ix_state("intersection-1");
    assert_eq!(first["outcome"], "ok", "{first}");
    assert!(
        first["errors"].as_array().is_some_and(Vec::is_empty),
        "{first}"
    );
    let landed = first["files"].as_u64().unwrap_or(0);
    let deferred = first["deferred"]["files"].as_u64().unwrap_or(0);
    assert!(landed >= 2 && deferred >= 2, "cut mid-transfer: {first}");
    assert_eq!(
        landed + deferred,
        16,
        "every file landed or deferred (a stopped one resumes): {first}"
    );
    let left = tree.remaining_files();
    assert_eq!(left.len() as u64, deferred, "{left:?}");
    // The backlog of the cut coprocessor, in the state file, status and metrics.
    let left_bytes = left.len() as u64 * MIB;
    assert_eq!(first["backlog"]["files"], deferred);
    assert_eq!(first["backlog"]["bytes"], left_bytes);
    let status = run_with(&client, &extra, &["status", "--json"], &[]);
    assert_exit(&status, 0);
    let s = json(&status);
    let age = ix(&s, "intersection-1")["backlog_oldest_age_seconds"]
        .as_u64()
        .unwrap_or(0);
    // Fixture files are DEFAULT_AGE (1 h) old.
    assert!(age.abs_diff(DEFAULT_AGE.as_secs()) < 120, "{s}");
    let table = run_with(&client, &extra, &["status"], &[]);
    let t = stdout(&table);
    assert!(
        t.contains(&format!(
            "{deferred} file(s), {}.0 MiB, oldest 1h",
            left.len()
        )),
        "{t}"
    );
    assert!(t.contains(&format!("deferred {deferred} file(s)")), "{t}");
    let m = std::fs::read_to_string(&prom).expect("metrics");
    assert_eq!(
        metric(&m, "backlog_files", "intersection-1"),
        Some(deferred as f64)
    );
    assert_eq!(
        metric(&m, "backlog_bytes", "intersection-1"),
        Some(left_bytes as f64)
    );
    assert_eq!(
        metric(&m, "deferred_files", "intersection-1"),
        Some(deferred as f64)
    );

    // Free space: what status and the metrics say, against df right now.
    let (avail, size) = df(&tree.v2x_data_location());
    let free = ix(&s, "intersection-1")["remote_space"]["free_bytes"]
        .as_u64()
        .expect("free bytes");
    eprintln!(
        "coprocessor free: status {free}, df {avail} ({:+.4} %)",
        (free as f64 - avail as f64) * 100.0 / avail as f64
    );
    assert!(
        free.abs_diff(avail) as f64 <= avail as f64 * 0.01,
        "{free} vs df {avail}"
    );
    assert_eq!(ix(&s, "intersection-1")["remote_space"]["size_bytes"], size);
    let mfree = metric(&m, "remote_free_bytes", "intersection-1").expect("metric");
    assert!(
        (mfree - avail as f64).abs() <= avail as f64 * 0.01,
        "{mfree} vs df {avail}"
    );
    assert_eq!(metric(&m, "remote_free_low", "intersection-1"), Some(0.0));

    // The dry run judges tonight's backlog by the cut pass's rate (about
    // 512 KiB/s): the rest needs seconds, and fits a 00:00 to HH:MM window.
    let dry = run_with(&client, &extra, &["run", "--dry-run"], &[("TZ", &tz)]);
    assert_exit(&dry, 0);
    let d = stdout(&dry);
    assert!(
        d.contains(&format!(
            "estimate: intersection-1: {}.0 MiB at ",
            left.len()
        )) && d.contains("(last pass): about "),
        "{d}"
    );
    assert!(d.contains(&format!("window: 00:00 to {hhmm} (")), "{d}");

    // The next pass, no window: the rest, each byte read once over both.
    client.transfer.retain(|l| !l.starts_with("end_time"));
    let out = run_with(&client, &extra, &["run"], &[]);
    assert_exit(&out, 0);
    let second = client.ix_state("intersection-1");
    assert_eq!(second["files"], deferred, "{second}");
    assert_eq!(second.get("deferred"), None, "{second}");
    assert_eq!(second["backlog"]["files"], 0);
    let read =
        first["read_bytes"].as_u64().unwrap_or(0) + second["read_bytes"].as_u64().unwrap_or(0);
    assert_eq!(
        read, total,
        "bytes read over both passes: nothing pulled twice"
    );
    assert_landed(&client.data_dir(), "intersection-1", &tree.manifest());
    assert!(tree.remaining_files().is_empty());
    assert!(partial_files(&client.data_dir()).is_empty());
}

// ---------------------------------------------------------------------------
// Silent collectors and the alert rules
// ---------------------------------------------------------------------------

/// The shipped rules' annotations, by alert name, read from the file the
/// way this file writes them (a quoted `summary:` and a folded
/// `description: >-` block), so the test expects exactly what ships.
fn annotations(rules: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    let mut name = String::new();
    let mut summary = String::new();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("- alert: ") {
            name = n.to_string();
        } else if let Some(s) = t.strip_prefix("summary: ") {
            summary = s.trim_matches('"').to_string();
        } else if t == "description: >-" {
            let indent = line.len() - line.trim_start().len();
            let mut words = Vec::new();
            while let Some(next) = lines.peek() {
                if next.len() - next.trim_start().len() <= indent || next.trim().is_empty() {
                    break;
                }
                words.push(next.trim().to_string());
                lines.next();
            }
            out.push((name.clone(), summary.clone(), words.join(" ")));
        }
    }
    out
}

/// A `promtool test rules` file: every sample of a metrics textfile
/// written by a real pass, held for two days (promtool's clock starts at
/// 0, so "two days later" makes an intersection that never succeeded, whose
/// last success is 0, stale), and the alerts expected then.
fn promtool_test(rules: &Path, metrics: &str, expected: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "rule_files:\n  - {:?}\nevaluation_interval: 1m\ntests:\n  - interval: 1h\n    input_series:\n",
        rules.display().to_string()
    );
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample");
        y.push_str(&format!(
            "      - series: '{series}'\n        values: '{value}+0x60'\n"
        ));
    }
    let texts = annotations(&std::fs::read_to_string(rules).expect("rules"));
    y.push_str("    alert_rule_test:\n");
    for (alert, _, _) in &texts {
        y.push_str(&format!(
            "      - eval_time: 2d\n        alertname: {alert}\n        exp_alerts:"
        ));
        let firing: Vec<_> = expected.iter().filter(|e| e.0 == alert).collect();
        if firing.is_empty() {
            y.push_str(" []\n");
            continue;
        }
        y.push('\n');
        for (_, intersection, severity) in firing {
            let (_, summary, description) = texts.iter().find(|t| t.0 == *alert).expect("texts");
            let fill = |s: &str| s.replace("{{ $labels.intersection }}", intersection);
            y.push_str(&format!(
                "          - exp_labels: {{ intersection: {intersection:?}, severity: {severity} }}\n            \
                 exp_annotations:\n              summary: {:?}\n              description: {:?}\n",
                fill(summary),
                fill(description)
            ));
        }
    }
    y
}

#[test]
fn no_data_and_stale_in_status_and_the_alert_rules_fire_on_real_metrics() {
    let sshd = Sshd::start_default();
    let mut healthy = RemoteTree::with_options(DEFAULT_COPROC_NAME, 1);
    healthy.add_session(
        DEFAULT_COPROC_NAME,
        Stamp::new(2021, 6, 9, 0, 0, 0),
        1,
        2_000..=8_000,
    );
    // A collector that stopped: archive/ stays empty night after night.
    let silent = RemoteTree::with_options(DEFAULT_COPROC_NAME, 2);
    let mut client = Client::new();
    client.add(Site::new("healthy", &sshd, &healthy), &sshd);
    client.add(Site::new("silent", &sshd, &silent), &sshd);
    client.add_untrusted(Site::at(
        "failing",
        closed_port(),
        &silent.v2x_data_location(),
    ));
    client.set("retries = 0");
    let prom = client.dir.path().join("v2x.prom");
    let head = format!("metrics_textfile = {:?}", prom.display().to_string());
    // Free space is not what this test is about: keep "disk low" quiet on
    // any test machine.
    let extra = Extra {
        head: &head,
        tail: "[status]\nremote_min_free = \"1MiB\"\nno_data_after = \"36h\"\n",
    };
    let out = run_with(&client, &extra, &["run"], &[]);
    assert_exit(&out, 1);
    // The first night tells nothing about silence yet.
    let s = run_with(&client, &extra, &["status", "--json"], &[]);
    let s = json(&s);
    assert_eq!(ix(&s, "silent")["no_data"], false, "{s}");
    assert_eq!(ix(&s, "healthy")["no_data"], false, "{s}");

    // Fake the state file: "silent" has been watched for three days.
    let path = client.state_dir().join("last-run.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for i in state["intersections"].as_array_mut().expect("list") {
        if i["name"] == "silent" {
            i["first_pass"] = (now - 3 * 86_400).into();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&state).expect("json")).expect("write state");

    let out = run_with(&client, &extra, &["run"], &[]);
    assert_exit(&out, 1);
    let status = run_with(&client, &extra, &["status"], &[]);
    assert_exit(&status, 1);
    let table = stdout(&status);
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("no row {n}: {table}"))
            .to_string()
    };
    assert!(
        row("silent").contains("NO DATA (no file landed for over 1d 12h)"),
        "{table}"
    );
    assert!(!row("silent").contains("STALE"), "{table}");
    assert!(
        row("failing").contains("STALE") && !row("failing").contains("NO DATA"),
        "{table}"
    );
    assert!(
        !row("healthy").contains("NO DATA") && !row("healthy").contains("STALE"),
        "{table}"
    );
    let s = json(&run_with(&client, &extra, &["status", "--json"], &[]));
    assert_eq!(
        ["healthy", "silent", "failing"]
            .map(|n| (ix(&s, n)["no_data"].clone(), ix(&s, n)["stale"].clone())),
        [
            (false.into(), false.into()),
            (true.into(), false.into()),
            (false.into(), true.into())
        ],
        "{s}"
    );
    let metrics = std::fs::read_to_string(&prom).expect("metrics");
    assert_eq!(metric(&metrics, "no_data", "silent"), Some(1.0));
    assert_eq!(metric(&metrics, "no_data", "healthy"), Some(0.0));
    assert_eq!(metric(&metrics, "last_pass_success", "failing"), Some(0.0));

    // The shipped rules, checked and run on these very metrics.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus-alerts.yml");
    promtool("check", &rules, "");
    let test = promtool_test(
        &rules,
        &metrics,
        &[
            ("V2xDataPassFailed", "failing", "warning"),
            ("V2xDataStale", "failing", "critical"),
            ("V2xDataNoData", "silent", "warning"),
        ],
    );
    let file = client.dir.path().join("alerts-test.yml");
    std::fs::write(&file, &test).expect("write");
    promtool("test", &file, &format!("\n--- test file\n{test}"));
}

/// `promtool <verb> rules FILE`, which must succeed; `context` follows
/// promtool's own output in the failure message.
fn promtool(verb: &str, file: &Path, context: &str) {
    let out = Command::new("promtool")
        .args([verb, "rules"])
        .arg(file)
        .output()
        .expect("promtool (Debian package prometheus, .ci/install-deps)");
    assert!(
        out.status.success(),
        "promtool {verb} rules:\n{}{}{context}",
        stdout(&out),
        stderr(&out)
    );
}
