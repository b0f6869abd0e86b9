//! Text for people: remote names made safe to print, sizes and ages in
//! human units.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Printable form of a remote name: control characters and invalid UTF-8
/// escaped, so a hostile name cannot forge log lines.
pub fn escape(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes())
        .escape_debug()
        .to_string()
}

/// Human units for bytes, powers of 1024.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in the two largest units, e.g. `1d 4h`, `3h 12m`, `40s`.
pub fn human_age(secs: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, unit) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.len() == 2 && parts[1].starts_with('0') {
        parts.pop();
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn human_age_shows_two_units() {
        assert_eq!(human_age(0), "0s");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(3_600), "1h");
        assert_eq!(human_age(36 * 3_600), "1d 12h");
        assert_eq!(human_age(3 * 3_600 + 12 * 60 + 5), "3h 12m");
    }
}
