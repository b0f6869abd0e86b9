//! The systemd generator: turns the config into unit drop-ins at boot and on
//! every `systemctl daemon-reload`.
//!
//! Shipped as its own small binary (`src/bin/v2x-data-sftp-client-generator.rs`,
//! installed in `/usr/lib/systemd/system-generators/`) rather than as an
//! argv[0] alias of the main binary: the generator runs during early boot
//! and on every reload, so it should be small and obviously unable to touch
//! the network, and keeping it out of `main.rs` leaves the command line
//! exactly the contract's.
//!
//! What it writes, in the generator's *normal* directory (`systemd.generator(7)`):
//!
//! * `v2x-data-sftp-client.timer.d/10-start-time.conf`: `OnCalendar=` reset,
//!   then the config's `start_time` (or the legacy `data_transfer_start_24h`).
//!   Nothing when the config sets no start time: the shipped timer says 00:00.
//! * `v2x-data-sftp-client.service.d/10-config.conf`, only when needed:
//!   `ReadWritePaths=` for a data or state directory outside the unit's
//!   `StateDirectory=` (with `ProtectHome=tmpfs` + `BindPaths=` if it lies under
//!   `/home`, `/root` or `/run/user`), and `IPAddressDeny=any` +
//!   `IPAddressAllow=` when every configured host is an IP address literal.
//!
//! Precedence: drop-ins from every unit directory are applied in the order of
//! their *file names*, whatever directory they live in (`systemd.unit(5)`).
//! `systemctl edit` writes `override.conf` under `/etc`, and digits sort before
//! letters, so an operator's override is applied after `10-*.conf` and wins;
//! the e2e test checks this on a booted system.
//!
//! It never fails boot: any problem (no config, a config error, an unwritable
//! directory) is logged at warning level with the identifier
//! `v2x-data-sftp-client-generator` (journald's socket, else `/dev/kmsg`,
//! else stderr: see [`log`]), and the generator exits 0 having written
//! nothing, so the shipped defaults stay.
//! It reads one local file and touches no network.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::{self, Config};

/// Unit names, as the contract fixes them.
pub const SERVICE_UNIT: &str = "v2x-data-sftp-client.service";
pub const TIMER_UNIT: &str = "v2x-data-sftp-client.timer";
/// Drop-in file names (see the module doc on why they start with a digit).
pub const TIMER_DROPIN: &str = "10-start-time.conf";
pub const SERVICE_DROPIN: &str = "10-config.conf";
/// The directory the unit's `StateDirectory=` makes writable.
pub const UNIT_STATE_DIRECTORY: &str = "/var/lib/v2x-data-sftp-client";

const NAME: &str = "v2x-data-sftp-client-generator";

/// Entry point: `args` is the whole argv (`std::env::args_os().collect()`),
/// `argv[1]` the normal generator directory (`argv[2]`, `argv[3]`, the early
/// and late directories, are not used). Returns the exit status: 0 whatever
/// happens to the config, 2 only when called without a directory (never the
/// case under systemd).
pub fn main(args: &[OsString]) -> i32 {
    let Some(normal_dir) = args.get(1) else {
        eprintln!("usage: {NAME} NORMAL_DIR [EARLY_DIR LATE_DIR]");
        return 2;
    };
    let config_path = Path::new(config::DEFAULT_CONFIG_PATH);
    match generate(config_path, Path::new(normal_dir)) {
        Ok(summary) => log(6, &summary),
        Err(why) => log(
            4,
            &format!("{why}; {TIMER_UNIT} keeps its default schedule"),
        ),
    }
    0
}

/// Reads the config at `config_path` and writes the drop-ins under
/// `normal_dir`. Returns a one-line summary of what was written, or why
/// nothing was.
///
/// # Errors
/// A one-line reason, for the journal: the config does not load (with its
/// errors), or a drop-in folder or file cannot be written. The timer then
/// keeps its shipped schedule.
pub fn generate(config_path: &Path, normal_dir: &Path) -> Result<String, String> {
    let loaded = match config::load(config_path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            let text = errors.to_string();
            let text = text.trim().replace('\n', "; ");
            return Err(format!(
                "{} is not usable ({text}); run `v2x-data-sftp-client check-config`",
                config_path.display()
            ));
        }
    };
    let dropins = plan(&loaded.config);
    let mut written = Vec::new();
    if let Some(text) = &dropins.timer {
        write_dropin(normal_dir, TIMER_UNIT, TIMER_DROPIN, text)?;
        written.push(format!(
            "{TIMER_UNIT} runs daily at {}",
            schedule_text(&loaded.config)
        ));
    }
    if let Some(text) = &dropins.service {
        write_dropin(normal_dir, SERVICE_UNIT, SERVICE_DROPIN, text)?;
        written.push(format!(
            "{SERVICE_UNIT}: {}",
            dropins.service_summary.join(", ")
        ));
    }
    for skipped in &dropins.skipped {
        log(4, skipped);
    }
    if written.is_empty() {
        Ok(format!(
            "{}: nothing to change from the shipped units",
            config_path.display()
        ))
    } else {
        Ok(format!(
            "from {}: {}",
            config_path.display(),
            written.join("; ")
        ))
    }
}

/// The drop-ins one config calls for. Pure, so it is tested without systemd.
#[derive(Debug, Default, PartialEq)]
pub struct Dropins {
    /// Contents of the timer drop-in, if the config sets a start time.
    pub timer: Option<String>,
    /// Contents of the service drop-in, if any directive is needed.
    pub service: Option<String>,
    /// Short notes of what the service drop-in does, for the log.
    pub service_summary: Vec<String>,
    /// Paths left out because no unit file can express them.
    pub skipped: Vec<String>,
}

pub fn plan(config: &Config) -> Dropins {
    let mut out = Dropins::default();
    let header = format!(
        "# Written by {NAME} from {} at boot or daemon-reload.\n\
         # Do not edit: change the config and run `systemctl daemon-reload`,\n\
         # or override with `systemctl edit` (override.conf is applied after this file).\n",
        config.source.display()
    );

    if let Some(start) = config.start_time {
        out.timer = Some(format!(
            "{header}[Timer]\nOnCalendar=\nOnCalendar=*-*-* {:02}:{:02}:00\n",
            start.hour, start.minute
        ));
    }

    let mut service = String::new();
    let unit_state = Path::new(UNIT_STATE_DIRECTORY);
    let mut under_home = Vec::new();
    let mut extra = Vec::new();
    // The metrics textfile is written through a temporary file beside it,
    // so its folder must be writable, not only the file.
    let metrics_dir = config
        .metrics_textfile
        .as_ref()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf);
    for dir in [
        Some(&config.data_directory),
        Some(&config.state_directory),
        metrics_dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if dir.starts_with(unit_state) || extra.contains(dir) || under_home.contains(dir) {
            continue;
        }
        if quote(dir).is_none() {
            out.skipped.push(format!(
                "{} contains a control character and cannot be named in a unit file; \
                 it stays read-only for the service",
                dir.display()
            ));
            continue;
        }
        if ["/home", "/root", "/run/user"]
            .iter()
            .any(|h| dir.starts_with(h))
        {
            under_home.push(dir.clone());
        } else {
            extra.push(dir.clone());
        }
    }
    for dir in &extra {
        // "-": a missing directory must not stop the unit from starting;
        // the pass then reports it, naming the path.
        if let Some(quoted) = quote_with_prefix("-", dir) {
            let _ = writeln!(service, "ReadWritePaths={quoted}");
            out.service_summary
                .push(format!("{} writable", dir.display()));
        }
    }
    if !under_home.is_empty() {
        service.push_str("ProtectHome=tmpfs\n");
        for dir in &under_home {
            if let Some(quoted) = quote_with_prefix("-", dir) {
                let _ = writeln!(service, "BindPaths={quoted}");
                out.service_summary.push(format!(
                    "{} writable (home directories otherwise hidden)",
                    dir.display()
                ));
            }
        }
    }

    let addresses: Option<Vec<IpAddr>> = config
        .intersections
        .iter()
        .map(|i| i.host.parse::<IpAddr>().ok())
        .collect();
    if let Some(mut addresses) = addresses.filter(|a| !a.is_empty()) {
        addresses.sort();
        addresses.dedup();
        let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let _ = write!(
            service,
            "IPAddressDeny=any\nIPAddressAllow={}\n",
            list.join(" ")
        );
        out.service_summary
            .push(format!("IP traffic only to {}", list.join(", ")));
    }

    if !service.is_empty() {
        out.service = Some(format!("{header}[Service]\n{service}"));
    }
    out
}

fn schedule_text(config: &Config) -> String {
    match config.start_time {
        Some(t) => format!("{:02}:{:02}", t.hour, t.minute),
        None => "00:00".into(),
    }
}

fn write_dropin(normal_dir: &Path, unit: &str, name: &str, text: &str) -> Result<(), String> {
    let dir: PathBuf = normal_dir.join(format!("{unit}.d"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A path as one quoted word of a unit file setting: C escapes for `\` and
/// `"`, `%%` for `%` (specifiers are expanded in path settings). `None` for a
/// path that cannot be written in a unit file (control characters, not UTF-8).
fn quote(path: &Path) -> Option<String> {
    quote_with_prefix("", path)
}

fn quote_with_prefix(prefix: &str, path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 4);
    out.push('"');
    out.push_str(prefix);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// One log record, to wherever it can be read later. A generator runs from
/// PID 1 before journald exists (at boot) and while it runs (on
/// `daemon-reload`), with stderr going to a console nobody reads, so:
/// journald's native socket when it answers; else `/dev/kmsg`, which journald
/// imports once it starts; else stderr. `<N>`/`PRIORITY=` is the syslog level.
fn log(priority: u8, message: &str) {
    if log_to_journal(priority, message).is_ok() {
        return;
    }
    let line = format!("<{priority}>{NAME}: {message}\n");
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        use std::io::Write as _;
        if kmsg.write_all(line.as_bytes()).is_ok() {
            return;
        }
    }
    eprint!("{line}");
}

fn log_to_journal(priority: u8, message: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let message = message.replace('\n', " ");
    let entry = format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={NAME}\nMESSAGE={message}\n");
    sock.send_to(entry.as_bytes(), "/run/systemd/journal/socket")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::secret::Secret;
    use crate::config::{Auth, Intersection, StartTime, Transfer};

    fn intersection(name: &str, host: &str) -> Intersection {
        Intersection {
            name: name.into(),
            host: host.into(),
            port: 22,
            username: "u".into(),
            auth: Auth::Password(Secret::new("p".into())),
            v2x_data_location: "/v2x".into(),
            compression: None,
        }
    }

    fn config(hosts: &[&str]) -> Config {
        Config {
            source: "/etc/v2x-data-sftp-client/config.toml".into(),
            data_directory: "/var/lib/v2x-data-sftp-client/data".into(),
            state_directory: UNIT_STATE_DIRECTORY.into(),
            known_hosts: "/etc/v2x-data-sftp-client/known_hosts".into(),
            elements: vec!["spat".into()],
            start_time: None,
            transfer: Transfer::default(),
            stale_after: crate::config::DEFAULT_STALE_AFTER,
            metrics_textfile: None,
            intersections: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| intersection(&format!("i{i}"), h))
                .collect(),
        }
    }

    #[test]
    fn metrics_textfile_folder_is_made_writable() {
        let mut c = config(&["rsu-1.example"]);
        c.metrics_textfile = Some("/var/lib/prometheus/node-exporter/v2x.prom".into());
        let service = plan(&c).service.expect("a service drop-in");
        assert!(
            service.contains("ReadWritePaths=\"-/var/lib/prometheus/node-exporter\"\n"),
            "{service}"
        );
    }

    #[test]
    fn default_paths_and_host_names_need_no_dropin() {
        let plan = plan(&config(&["rsu-1.example", "10.0.0.1"]));
        assert_eq!(plan.timer, None);
        assert_eq!(plan.service, None);
    }

    #[test]
    fn start_time_resets_then_sets_on_calendar() {
        let mut c = config(&["rsu.example"]);
        c.start_time = Some(StartTime { hour: 2, minute: 5 });
        let timer = plan(&c).timer.unwrap();
        assert!(
            timer.ends_with("[Timer]\nOnCalendar=\nOnCalendar=*-*-* 02:05:00\n"),
            "{timer}"
        );
    }

    #[test]
    fn all_ip_literals_give_an_address_allow_list() {
        let service = plan(&config(&["10.0.0.2", "10.0.0.1", "::1", "10.0.0.1"]))
            .service
            .unwrap();
        assert!(
            service.contains("IPAddressDeny=any\nIPAddressAllow=10.0.0.1 10.0.0.2 ::1\n"),
            "{service}"
        );
    }

    #[test]
    fn one_host_name_means_no_allow_list() {
        assert_eq!(plan(&config(&["10.0.0.1", "rsu.example"])).service, None);
    }

    #[test]
    fn moved_data_directory_is_made_writable_quoted() {
        let mut c = config(&["rsu.example"]);
        c.data_directory = "/srv/v2x data/100%".into();
        let service = plan(&c).service.unwrap();
        assert!(
            service.contains("ReadWritePaths=\"-/srv/v2x data/100%%\"\n"),
            "{service}"
        );
    }

    #[test]
    fn data_directory_under_home_is_bound_into_a_tmpfs_home() {
        let mut c = config(&["rsu.example"]);
        c.data_directory = "/home/ops/v2x".into();
        let service = plan(&c).service.unwrap();
        assert!(
            service.contains("ProtectHome=tmpfs\nBindPaths=\"-/home/ops/v2x\"\n"),
            "{service}"
        );
    }

    #[test]
    fn control_characters_are_refused_not_written() {
        let mut c = config(&["rsu.example"]);
        c.data_directory = "/srv/a\nExecStart=/bin/sh".into();
        let plan = plan(&c);
        assert_eq!(plan.service, None);
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn dropin_names_sort_before_systemctl_edit_override() {
        assert!(TIMER_DROPIN < "override.conf");
        assert!(SERVICE_DROPIN < "override.conf");
    }

    #[test]
    fn missing_config_writes_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate(&dir.path().join("absent.toml"), dir.path()).unwrap_err();
        assert!(err.contains("absent.toml"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn main_without_arguments_is_a_usage_error() {
        // (With arguments, main logs to the journal or /dev/kmsg: not run
        // here; `generate` above covers that path without logging.)
        assert_eq!(main(&[OsString::from(NAME)]), 2);
    }
}
