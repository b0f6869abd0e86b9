//! Validation, shared by both formats: a [`Draft`] becomes a [`Config`] or
//! the list of every problem found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Upper bounds keep later `Instant + Duration` arithmetic from overflowing
/// and catch unit slips ("60h" for "60s").
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_MIN_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_NAME_BYTES: usize = 128;

/// Collects problems instead of stopping at the first.
struct Report<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn at<T>(&mut self, item: &Item<T>, message: impl Into<String>) {
        self.key(&item.key, item.line, message);
    }

    fn key(&mut self, key: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(
            self.file,
            Some(key.to_string()),
            line,
            message,
        ));
    }
}

/// Turns a draft into a [`Config`], reporting every problem found.
///
/// # Errors
/// Every invalid, missing or conflicting value (two ways to authenticate,
/// duplicate names), each with its key and line; with
/// `checks.known_hosts_exists`, a known_hosts file that is not there.
pub(crate) fn validate(
    file: &Path,
    draft: Draft,
    checks: Checks,
) -> Result<Config, Vec<ConfigError>> {
    let mut draft = draft;
    let format = draft.format;
    let mut r = Report {
        file,
        errors: std::mem::take(&mut draft.errors),
    };

    let data_directory = match &draft.data_directory {
        None => {
            r.key(
                format.key("data_directory"),
                None,
                "missing; add `data_directory = \"/var/lib/v2x-data-sftp-client/data\"`, \
                 the absolute folder pulled files land in",
            );
            None
        }
        Some(item) => absolute_path(&mut r, item),
    };
    let state_directory = match &draft.state_directory {
        None => Some(PathBuf::from(DEFAULT_STATE_DIRECTORY)),
        Some(item) => absolute_path(&mut r, item),
    };
    let elements = match &draft.elements {
        None => Some(DEFAULT_ELEMENTS.iter().map(|e| e.to_string()).collect()),
        Some(item) => elements(&mut r, item),
    };
    let start_time = match &draft.start_time {
        None => Some(None),
        Some(item) => start_time(&mut r, item).map(Some),
    };
    let transfer = transfer(&mut r, &draft.transfer);
    let intersections = intersections(&mut r, format, &draft.intersections, transfer.max_rate);
    let known_hosts = known_hosts(&mut r, &draft, checks);
    let stale_after = match &draft.stale_after {
        None => Some(DEFAULT_STALE_AFTER),
        Some(item) => duration(
            &mut r,
            item,
            false,
            MAX_MIN_AGE,
            "every intersection would always be stale",
        ),
    };
    let no_data_after = match &draft.no_data_after {
        None => Some(DEFAULT_NO_DATA_AFTER),
        Some(item) => duration(
            &mut r,
            item,
            false,
            MAX_MIN_AGE,
            "every intersection would always show NO DATA",
        ),
    };
    let remote_min_free = match &draft.remote_min_free {
        None => Some(DEFAULT_REMOTE_MIN_FREE),
        Some(item) => remote_min_free(&mut r, item),
    };
    let metrics_textfile = match &draft.metrics_textfile {
        None => Some(None),
        Some(item) => metrics_textfile(&mut r, item).map(Some),
    };

    if !r.errors.is_empty() {
        // File order; errors without a line (a missing key) go last.
        r.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        return Err(r.errors);
    }
    match (
        data_directory,
        state_directory,
        known_hosts,
        elements,
        start_time,
        intersections,
        stale_after,
        metrics_textfile,
        no_data_after,
        remote_min_free,
    ) {
        (
            Some(data_directory),
            Some(state_directory),
            Some(known_hosts),
            Some(elements),
            Some(start_time),
            Some(intersections),
            Some(stale_after),
            Some(metrics_textfile),
            Some(no_data_after),
            Some(remote_min_free),
        ) => Ok(Config {
            source: file.to_path_buf(),
            data_directory,
            state_directory,
            known_hosts,
            elements,
            start_time,
            transfer,
            intersections,
            stale_after,
            metrics_textfile,
            no_data_after,
            remote_min_free,
        }),
        // Every `None` above comes with an error, so this is unreachable;
        // still, never hand out a half-validated config.
        _ => Err(vec![ConfigError::new(
            file,
            None,
            None,
            "could not be validated (internal error); please report it",
        )]),
    }
}

/// Rejects what could not be used as an absolute local path.
fn absolute_path(r: &mut Report<'_>, item: &Item<PathBuf>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = &item.value;
    if path.as_os_str().is_empty() {
        r.at(item, "is empty; give an absolute path");
        None
    } else if path.as_os_str().as_bytes().contains(&0) {
        r.at(item, "contains a NUL character; give an absolute path");
        None
    } else if !path.is_absolute() {
        r.at(
            item,
            format!(
                "{path:?} is relative; give an absolute path (a relative one would depend on \
                 the service's working directory)"
            ),
        );
        None
    } else {
        Some(path.clone())
    }
}

/// node_exporter's textfile collector reads only `*.prom` files, and only
/// from its one folder: a typo here would silence monitoring quietly.
fn metrics_textfile(r: &mut Report<'_>, item: &Item<PathBuf>) -> Option<PathBuf> {
    let path = absolute_path(r, item)?;
    if path.extension().and_then(|e| e.to_str()) != Some("prom") {
        r.at(
            item,
            format!(
                "{path:?} does not end in .prom, so node_exporter's textfile collector would \
                 never read it; e.g. \"/var/lib/prometheus/node-exporter/v2x_data_sftp_client.prom\""
            ),
        );
        return None;
    }
    Some(path)
}

fn known_hosts(r: &mut Report<'_>, draft: &Draft, checks: Checks) -> Option<PathBuf> {
    let (path, key, line) = match &draft.known_hosts {
        None => (PathBuf::from(DEFAULT_KNOWN_HOSTS), "known_hosts", None),
        Some(item) => (absolute_path(r, item)?, item.key.as_str(), item.line),
    };
    if !checks.known_hosts_exists {
        return Some(path);
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            r.key(
                key,
                line,
                format!(
                    "{} is a directory; point known_hosts at an OpenSSH known_hosts file",
                    path.display()
                ),
            );
            None
        }
        Ok(_) => Some(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Taken from the draft so the advice is complete even when an
            // intersection has other problems.
            let mut hosts: Vec<&str> = Vec::new();
            for i in draft.intersections.iter().flat_map(|l| &l.value) {
                if let Some(h) = &i.host
                    && !h.value.is_empty()
                    && !h.value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !hosts.contains(&h.value.as_str())
                {
                    hosts.push(&h.value);
                }
            }
            let hosts = if hosts.is_empty() {
                "HOST...".to_string()
            } else {
                hosts.join(" ")
            };
            r.key(
                key,
                line,
                format!(
                    "{} does not exist; every host key is checked against it, so create it with \
                     `ssh-keyscan {hosts} > {}` (add `-p PORT` for hosts not on port 22) and \
                     compare the fingerprints with the coprocessors' own",
                    path.display(),
                    path.display()
                ),
            );
            None
        }
        Err(e) => {
            r.key(
                key,
                line,
                format!(
                    "{} cannot be checked ({e}); make it readable by the service user",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Why `name` cannot be a folder of its own under the data directory, if it cannot.
fn unsafe_component(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.len() > MAX_NAME_BYTES {
        Some(format!("is longer than {MAX_NAME_BYTES} bytes"))
    } else if name.contains('/') {
        Some(format!("{name:?} contains '/'"))
    } else if name.chars().any(char::is_control) {
        Some(format!("{name:?} contains a control character"))
    } else if name.starts_with('.') {
        Some(format!(
            "{name:?} starts with '.' (such names are reserved for temporary files, and \
             \".\" or \"..\" would leave the data folder)"
        ))
    } else {
        None
    }
}

fn elements(r: &mut Report<'_>, item: &Item<Vec<Item<String>>>) -> Option<Vec<String>> {
    if item.value.is_empty() {
        r.at(
            item,
            "is empty; list at least one element, or remove the key to use the five defaults",
        );
        return None;
    }
    distinct(r, item, |name| {
        unsafe_component(name).map(|why| {
            format!("{why}; an element name must be a plain folder name such as \"spat\"")
        })
    })
}

/// A list's names, each accepted by `check` (which says why not) and none
/// listed twice; every problem is reported, with its line.
fn distinct(
    r: &mut Report<'_>,
    item: &Item<Vec<Item<String>>>,
    check: impl Fn(&str) -> Option<String>,
) -> Option<Vec<String>> {
    let mut ok = true;
    let mut seen: HashMap<&str, Option<usize>> = HashMap::new();
    for e in &item.value {
        if let Some(why) = check(&e.value) {
            r.at(e, why);
            ok = false;
        } else if let Some(first) = seen.get(e.value.as_str()) {
            r.at(
                e,
                format!(
                    "{:?} is listed twice{}; remove one",
                    e.value,
                    first
                        .map(|l| format!(" (first on line {l})"))
                        .unwrap_or_default()
                ),
            );
            ok = false;
        } else {
            seen.insert(&e.value, e.line);
        }
    }
    ok.then(|| item.value.iter().map(|e| e.value.clone()).collect())
}

/// `"HH:MM"` on the 24-hour clock.
fn time_of_day(text: &str) -> Option<StartTime> {
    text.split_once(':').and_then(|(h, m)| {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
            return None;
        }
        let hour: u8 = h.parse().ok()?;
        let minute: u8 = m.parse().ok()?;
        (hour <= 23 && minute <= 59).then_some(StartTime { hour, minute })
    })
}

fn start_time(r: &mut Report<'_>, item: &Item<StartInput>) -> Option<StartTime> {
    match &item.value {
        StartInput::Text(text) => {
            let parsed = time_of_day(text);
            if parsed.is_none() {
                r.at(
                    item,
                    format!(
                        "{text:?} is not a time of day; write \"HH:MM\" on the 24-hour clock, \
                         e.g. \"00:00\" or \"23:30\""
                    ),
                );
            }
            parsed
        }
        StartInput::HourMinute { hour, minute } => {
            let mut part = |part: &Option<Item<i64>>, name: &str, max: i64| match part {
                None => {
                    r.key(
                        &format!("{}.{name}", item.key),
                        item.line,
                        format!("missing; add \"{name}\": a number from 0 to {max}"),
                    );
                    None
                }
                Some(p) if !(0..=max).contains(&p.value) => {
                    r.at(
                        p,
                        format!("{} is out of range; give a number from 0 to {max}", p.value),
                    );
                    None
                }
                Some(p) => u8::try_from(p.value).ok(),
            };
            let hour = part(hour, "hour", 23);
            let minute = part(minute, "minute", 59);
            Some(StartTime {
                hour: hour?,
                minute: minute?,
            })
        }
    }
}

fn int_in(r: &mut Report<'_>, item: &Item<i64>, min: i64, max: i64, why: &str) -> Option<i64> {
    if (min..=max).contains(&item.value) {
        Some(item.value)
    } else {
        r.at(
            item,
            format!(
                "{} is out of range; give a number from {min} to {max} ({why})",
                item.value
            ),
        );
        None
    }
}

/// Parses a humantime duration, at most `max`; zero only when `zero_allowed`.
fn duration(
    r: &mut Report<'_>,
    item: &Item<String>,
    zero_allowed: bool,
    max: Duration,
    why_zero: &str,
) -> Option<Duration> {
    let d = match humantime::parse_duration(item.value.trim()) {
        Ok(d) => d,
        Err(e) => {
            r.at(
                item,
                format!(
                    "{:?} is not a duration ({e}); write a number with a unit, e.g. \"30s\", \
                     \"2m\" or \"4h\"",
                    item.value
                ),
            );
            return None;
        }
    };
    if d.is_zero() && !zero_allowed {
        r.at(item, format!("must be longer than 0s ({why_zero})"));
        None
    } else if d > max {
        r.at(
            item,
            format!(
                "{:?} is too long; give at most {}",
                item.value,
                humantime::format_duration(max)
            ),
        );
        None
    } else {
        Some(d)
    }
}

/// Bytes from an integer or a string such as `"1GiB"` or `"500 MB"`.
///
/// # Errors
/// A text that is not a number with a known unit, or that overflows 64 bits.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}")),
    };
    if number.is_empty() {
        return Err("no number".into());
    }
    if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        let bytes = (value * multiplier as f64).round();
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast in range.
        if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
            Ok(bytes as u64)
        } else {
            Err("too large".into())
        }
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a whole number"))?;
        value
            .checked_mul(multiplier)
            .ok_or_else(|| "too large".to_string())
    }
}

fn transfer(r: &mut Report<'_>, t: &TransferDraft) -> Transfer {
    let mut out = Transfer::default();
    if let Some(item) = &t.parallel_intersections
        && let Some(v) = int_in(
            r,
            item,
            1,
            64,
            "each worker holds an SSH session and a share of the disk bandwidth",
        )
    {
        out.parallel_intersections = v as usize;
    }
    if let Some(item) = &t.connect_timeout
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "a zero timeout would fail every connection",
        )
    {
        out.connect_timeout = d;
    }
    let mut io_ok = true;
    if let Some(item) = &t.io_timeout {
        match duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "a zero timeout would fail every call",
        ) {
            Some(d) => out.io_timeout = d,
            None => io_ok = false,
        }
    }
    if let Some(item) = &t.intersection_deadline
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_DEADLINE,
            "a zero deadline would fail every intersection",
        )
    {
        out.intersection_deadline = d;
    }
    if io_ok && out.intersection_deadline <= out.io_timeout {
        let key = t
            .intersection_deadline
            .as_ref()
            .map(|i| (i.key.clone(), i.line))
            .or_else(|| t.io_timeout.as_ref().map(|i| (i.key.clone(), i.line)));
        let (key, line) = key.unwrap_or_else(|| ("transfer.intersection_deadline".into(), None));
        r.key(
            &key,
            line,
            format!(
                "transfer.intersection_deadline ({}) must be longer than transfer.io_timeout \
                 ({}), or a single slow call would use it up; raise the deadline or lower \
                 the timeout",
                humantime::format_duration(out.intersection_deadline),
                humantime::format_duration(out.io_timeout)
            ),
        );
    }
    if let Some(item) = &t.retries
        && let Some(v) = int_in(
            r,
            item,
            0,
            20,
            "retries beyond that only wait out the intersection deadline",
        )
    {
        out.retries = v as u32;
    }
    if let Some(item) = &t.retry_backoff
        && let Some(d) = duration(
            r,
            item,
            false,
            MAX_TIMEOUT,
            "retrying at once gives a rebooting coprocessor no time to come back",
        )
    {
        out.retry_backoff = d;
    }
    if let Some(item) = &t.min_age
        && let Some(d) = duration(r, item, true, MAX_MIN_AGE, "")
    {
        out.min_age = d;
    }
    if let Some(item) = &t.max_listed_entries
        && let Some(v) = int_in(
            r,
            item,
            1_000,
            20_000_000,
            "a listing is held in memory, about 150 bytes a name",
        )
    {
        out.max_listed_entries = v as u64;
    }
    if let Some(item) = &t.end_time {
        match time_of_day(&item.value) {
            Some(t) => out.end_time = Some(t),
            None => r.at(
                item,
                format!(
                    "{:?} is not a time of day; write \"HH:MM\" on the 24-hour clock in the \
                     server's local time, e.g. \"05:30\": no file is started after it",
                    item.value
                ),
            ),
        }
    }
    if let Some(item) = &t.verify {
        match item.value.as_str() {
            "auto" => out.verify = Verify::Auto,
            "sha256" => out.verify = Verify::Sha256,
            "size" => out.verify = Verify::Size,
            other => r.at(
                item,
                format!(
                    "is {other:?}; give \"auto\" (sha256 where the coprocessor account may run \
                     sha256sum, size elsewhere), \"sha256\" or \"size\""
                ),
            ),
        }
    }
    if let Some(item) = &t.max_rate {
        out.max_rate = rate(r, item);
    }
    if let Some(item) = &t.max_rate_total {
        out.max_rate_total = rate(r, item);
    }
    if let Some(item) = &t.min_free_space {
        let parsed = match &item.value {
            SizeInput::Bytes(n) => u64::try_from(*n).map_err(|_| "negative".to_string()),
            SizeInput::Text(s) => parse_size(s),
        };
        match parsed {
            Ok(v) => out.min_free_bytes = v,
            Err(why) => r.at(
                item,
                format!(
                    "is not a size ({why}); give a whole number of bytes or a string such as \
                     \"1GiB\" or \"500MB\" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ),
            ),
        }
    }
    for (kind, item, slot) in [
        (
            algorithms::Kind::Cipher,
            &t.ciphers,
            &mut out.algorithms.ciphers,
        ),
        (algorithms::Kind::Mac, &t.macs, &mut out.algorithms.macs),
        (
            algorithms::Kind::Kex,
            &t.kex_algorithms,
            &mut out.algorithms.kex,
        ),
    ] {
        if let Some(item) = item
            && let Some(list) = algorithm_list(r, kind, item)
        {
            *slot = list;
        }
    }
    out
}

/// Slower than this a night moves almost nothing: a slip of the unit
/// ("1KB/s" for "1MB/s"), not a wish.
const MIN_RATE: u64 = 1024;

/// A bandwidth cap: a whole number of bytes per second, or a size per
/// second such as `"2MiB/s"`, `"500KB/s"` or, as links are sold, `"8Mbit/s"`.
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let Some(size) = text.strip_suffix("/s") else {
        return Err("no \"/s\"".into());
    };
    let size = size.trim();
    let lower = size.to_ascii_lowercase();
    if let Some(bits) = lower.strip_suffix("bit") {
        // "8Mbit": the size parser's decimal units, then bits to bytes.
        let bytes = parse_size(&format!("{bits}B"))?;
        return Ok(bytes / 8);
    }
    parse_size(size)
}

fn rate(r: &mut Report<'_>, item: &Item<SizeInput>) -> Option<u64> {
    let parsed = match &item.value {
        SizeInput::Bytes(n) => u64::try_from(*n).map_err(|_| "negative".to_string()),
        SizeInput::Text(s) => parse_rate(s),
    };
    match parsed {
        Ok(v) if v >= MIN_RATE => Some(v),
        Ok(v) => {
            r.at(
                item,
                format!(
                    "{v} bytes per second is below the least allowed, 1KiB/s: a night would \
                     move almost nothing; leave the key out for no cap"
                ),
            );
            None
        }
        Err(why) => {
            r.at(
                item,
                format!(
                    "is not a rate ({why}); write a size per second such as \"2MiB/s\", \
                     \"500KB/s\" or \"8Mbit/s\", or a whole number of bytes per second"
                ),
            );
            None
        }
    }
}

fn remote_min_free(r: &mut Report<'_>, item: &Item<SizeInput>) -> Option<RemoteMinFree> {
    let parsed = match &item.value {
        SizeInput::Bytes(n) => u64::try_from(*n)
            .map(RemoteMinFree::Bytes)
            .map_err(|_| "negative".to_string()),
        SizeInput::Text(s) => match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(RemoteMinFree::Percent(p)),
                _ => Err(format!("{p:?} is not a percentage from 0 to 100")),
            },
            None => parse_size(s).map(RemoteMinFree::Bytes),
        },
    };
    match parsed {
        Ok(v) => Some(v),
        Err(why) => {
            r.at(
                item,
                format!(
                    "is not a share or a size ({why}); write a percentage of the \
                     coprocessor's filesystem such as \"10%\", or a size such as \"2GiB\""
                ),
            );
            None
        }
    }
}

/// An ordered list of SSH algorithm names, each one this build supports.
fn algorithm_list(
    r: &mut Report<'_>,
    kind: algorithms::Kind,
    item: &Item<Vec<Item<String>>>,
) -> Option<Vec<String>> {
    let defaults = kind.defaults();
    if item.value.is_empty() {
        r.at(
            item,
            format!(
                "is empty; list at least one, most preferred first, or remove the key to use \
                 the measured default ({})",
                defaults.join(", ")
            ),
        );
        return None;
    }
    let supported = algorithms::supported(kind);
    distinct(r, item, |name| {
        supported.as_ref().filter(|s| !s.contains(&name)).map(|s| {
            format!(
                "{name:?} is not an algorithm this client supports; it supports: {}",
                s.join(", ")
            )
        })
    })
}

/// A required key of an intersection, or an error naming it.
fn required<'a, T>(
    r: &mut Report<'_>,
    format: Format,
    d: &IntersectionDraft,
    item: &'a Option<Item<T>>,
    field: &'static str,
    what: &str,
) -> Option<&'a Item<T>> {
    if item.is_none() {
        r.key(
            &d.field(format.key(field)),
            d.line,
            format!("missing; add {}, {what}", format.key(field)),
        );
    }
    item.as_ref()
}

fn intersections(
    r: &mut Report<'_>,
    format: Format,
    list: &Option<Item<Vec<IntersectionDraft>>>,
    default_rate: Option<u64>,
) -> Option<Vec<Intersection>> {
    let how = match format {
        Format::Toml => {
            "add at least one [[intersections]] table with name, host, username, one of \
             password/password_file/private_key, and v2x_data_location"
        }
        Format::LegacyJson => "add at least one entry to \"intersections\"",
    };
    let list = match list {
        None => {
            r.key(
                "intersections",
                None,
                format!("no intersection is configured; {how}"),
            );
            return None;
        }
        Some(list) if list.value.is_empty() => {
            r.at(list, format!("is empty; {how}"));
            return None;
        }
        Some(list) => list,
    };
    let mut out = Vec::new();
    let mut all_ok = true;
    let mut names: HashMap<&str, (String, Option<usize>)> = HashMap::new();
    for d in &list.value {
        let name = match required(
            r,
            format,
            d,
            &d.name,
            "name",
            "the folder its data lands in",
        ) {
            None => None,
            Some(item) => {
                if let Some(why) = unsafe_component(&item.value) {
                    r.at(
                        item,
                        format!(
                            "{why}; use a plain folder name such as \"intersection-1\" (at most \
                             {MAX_NAME_BYTES} bytes, no '/', not starting with '.'), since \
                             its data lands in that folder"
                        ),
                    );
                    None
                } else if let Some((first, line)) = names.get(item.value.as_str()) {
                    r.at(
                        item,
                        format!(
                            "{:?} is already the name of {first}{}; names must be unique, \
                             since each is the folder that intersection's data lands in",
                            item.value,
                            line.map(|l| format!(" (line {l})")).unwrap_or_default()
                        ),
                    );
                    None
                } else {
                    names.insert(&item.value, (d.key.clone(), item.line));
                    Some(item.value.clone())
                }
            }
        };
        let host = match required(r, format, d, &d.host, "host", "the coprocessor's address") {
            None => None,
            Some(item) if item.value.is_empty() => {
                r.at(
                    item,
                    "is empty; give the coprocessor's IP address or host name",
                );
                None
            }
            Some(item)
                if item
                    .value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control()) =>
            {
                r.at(
                    item,
                    format!(
                        "{:?} contains whitespace; give only the IP address or host name",
                        item.value
                    ),
                );
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let port = match &d.port {
            None => Some(22),
            Some(item) => int_in(
                r,
                item,
                1,
                65535,
                "a TCP port; SSH listens on 22 by default",
            )
            .and_then(|p| u16::try_from(p).ok()),
        };
        let username = match required(
            r,
            format,
            d,
            &d.username,
            "username",
            "the account that may read and delete the archive",
        ) {
            None => None,
            Some(item) if item.value.is_empty() || item.value.chars().any(char::is_control) => {
                r.at(
                    item,
                    "is empty or contains control characters; give the SSH user name",
                );
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let auth = auth(r, d);
        let location = match required(
            r,
            format,
            d,
            &d.v2x_data_location,
            "v2x_data_location",
            "the coprocessor's v2x-data folder (its archive/ is pulled)",
        ) {
            None => None,
            Some(item) if item.value.trim().is_empty() => {
                r.at(
                    item,
                    "is empty; give the coprocessor's v2x-data folder, e.g. \
                     \"/home/ubuntu/intersection-1/bin/v2x_data\"",
                );
                None
            }
            Some(item) if item.value.chars().any(char::is_control) => {
                r.at(item, "contains a control character; fix the path");
                None
            }
            Some(item) => Some(item.value.clone()),
        };
        let compression = d.compression.as_ref().map(|c| c.value);
        let max_rate = match &d.max_rate {
            None => Some(default_rate),
            Some(item) => rate(r, item).map(Some),
        };
        match (name, host, port, username, auth, location, max_rate) {
            (
                Some(name),
                Some(host),
                Some(port),
                Some(username),
                Some(auth),
                Some(location),
                Some(max_rate),
            ) => out.push(Intersection {
                name,
                host,
                port,
                username,
                auth,
                v2x_data_location: location,
                compression,
                max_rate,
            }),
            _ => all_ok = false,
        }
    }
    all_ok.then_some(out)
}

fn auth(r: &mut Report<'_>, d: &IntersectionDraft) -> Option<Auth> {
    let mut given = Vec::new();
    for (set, key) in [
        (d.password.is_some(), "password"),
        (d.password_file.is_some(), "password_file"),
        (d.password_credential.is_some(), "password_credential"),
        (d.private_key.is_some(), "private_key"),
        (d.private_key_credential.is_some(), "private_key_credential"),
    ] {
        if set {
            given.push(key);
        }
    }
    let has_key = d.private_key.is_some() || d.private_key_credential.is_some();
    let mut ok = true;
    for (item, key) in [
        (
            d.passphrase_file.as_ref().map(|i| (i.key.as_str(), i.line)),
            "passphrase_file",
        ),
        (
            d.passphrase_credential
                .as_ref()
                .map(|i| (i.key.as_str(), i.line)),
            "passphrase_credential",
        ),
    ] {
        if let Some((at, line)) = item
            && !has_key
        {
            r.key(
                at,
                line,
                format!(
                    "{key} is set without private_key or private_key_credential; it only \
                     unlocks a private key, so add one or remove it"
                ),
            );
            ok = false;
        }
    }
    if d.passphrase_file.is_some() && d.passphrase_credential.is_some() {
        let item = d.passphrase_credential.as_ref();
        r.key(
            item.map_or(d.key.as_str(), |i| i.key.as_str()),
            item.and_then(|i| i.line),
            "give the passphrase once: passphrase_file or passphrase_credential, not both",
        );
        ok = false;
    }
    let mut path = |item: &Option<Item<PathBuf>>| match item {
        None => Some(None),
        Some(item) => match absolute_path(r, item) {
            Some(p) => Some(Some(p)),
            None => {
                ok = false;
                None
            }
        },
    };
    let password_file = path(&d.password_file);
    let private_key = path(&d.private_key);
    let passphrase_file = path(&d.passphrase_file);
    let mut credential = |item: &Option<Item<String>>| match item {
        None => None,
        Some(item) => match credentials::check_name(&item.value) {
            Ok(()) => Some(item.value.clone()),
            Err(why) => {
                r.at(item, why);
                ok = false;
                None
            }
        },
    };
    let password_credential = credential(&d.password_credential);
    let private_key_credential = credential(&d.private_key_credential);
    let passphrase_credential = credential(&d.passphrase_credential);
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none is set".to_string()
        } else {
            format!("found {}", given.join(" and "))
        };
        r.key(
            &d.key,
            d.line,
            format!(
                "needs exactly one way to authenticate: set one of password, password_file, \
                 password_credential, private_key or private_key_credential ({found})"
            ),
        );
        return None;
    }
    if let Some(item) = &d.password
        && item.value.expose().is_empty()
    {
        r.at(
            item,
            "is empty; give the password, or use password_file, password_credential or \
             private_key",
        );
        return None;
    }
    if !ok {
        return None;
    }
    let passphrase = match (passphrase_file, passphrase_credential) {
        (Some(Some(p)), _) => Some(SecretSource::File(p)),
        (_, Some(name)) => Some(SecretSource::Credential(name)),
        _ => None,
    };
    if let Some(item) = &d.password {
        return Some(Auth::Password(item.value.clone()));
    }
    if let Some(Some(p)) = password_file {
        return Some(Auth::PasswordFrom(SecretSource::File(p)));
    }
    if let Some(name) = password_credential {
        return Some(Auth::PasswordFrom(SecretSource::Credential(name)));
    }
    if let Some(Some(p)) = private_key {
        return Some(Auth::PrivateKey {
            key: SecretSource::File(p),
            passphrase,
        });
    }
    private_key_credential.map(|name| Auth::PrivateKey {
        key: SecretSource::Credential(name),
        passphrase,
    })
}
