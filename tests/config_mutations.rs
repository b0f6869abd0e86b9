//! Issue 5.8, the command-line half: every malformed config gets exit 2 and
//! a message naming the problem (file, key, line), never a panic, never the
//! password. Generated from one valid config by mutating each key in turn
//! (a typo in its name, a value of the wrong type or shape, the key
//! removed), then by random byte edits. The parsers themselves are fuzzed
//! in tests/fuzz (tests/fuzz/run).

mod common;

use std::path::Path;

use common::*;

const SECRET: &str = "pw-Mutation-Secret-7";

/// A valid config using every key; `{kh}` is an existing known_hosts file.
fn template(kh: &Path) -> Vec<String> {
    format!(
        "data_directory = \"/tmp/v2x-mutations/data\"\n\
         known_hosts = {:?}\n\
         state_directory = \"/tmp/v2x-mutations/state\"\n\
         start_time = \"01:30\"\n\
         \n\
         [transfer]\n\
         parallel_intersections = 2\n\
         connect_timeout = \"20s\"\n\
         io_timeout = \"60s\"\n\
         intersection_deadline = \"4h\"\n\
         retries = 3\n\
         retry_backoff = \"5s\"\n\
         min_age = \"2m\"\n\
         min_free_space = \"1GiB\"\n\
         \n\
         [[intersections]]\n\
         name = \"a\"\n\
         host = \"127.0.0.1\"\n\
         port = 22\n\
         username = \"u\"\n\
         password = \"{SECRET}\"\n\
         v2x_data_location = \"/x\"\n\
         compression = false\n",
        kh.display().to_string()
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The dotted key of line `i` (`transfer.io_timeout`, `intersections[0].port`).
fn key_of(lines: &[String], i: usize) -> Option<String> {
    let (key, _) = lines[i].split_once(" = ")?;
    let table = lines[..i]
        .iter()
        .rev()
        .find(|l| l.starts_with('['))
        .map(String::as_str);
    Some(match table {
        Some("[transfer]") => format!("transfer.{key}"),
        Some("[[intersections]]") => format!("intersections[0].{key}"),
        _ => key.to_string(),
    })
}

/// A value of the wrong type (or, for keys with a format, the wrong shape)
/// for key `name` whose valid value is `v`.
fn wrong_value(name: &str, v: &str, rng: &mut Rng) -> String {
    let shaped = match name {
        "connect_timeout"
        | "io_timeout"
        | "intersection_deadline"
        | "retry_backoff"
        | "min_age" => Some("\"soon\""),
        "min_free_space" => Some("\"12 furlongs\""),
        "start_time" => Some("\"25:61\""),
        "data_directory" | "state_directory" => Some("\"relative/dir\""),
        "name" => Some("\"../up\""),
        "port" => Some("70000"),
        "parallel_intersections" => Some("0"),
        _ => None,
    };
    if let Some(s) = shaped
        && rng.below(2) == 0
    {
        return s.to_string();
    }
    if v.starts_with('"') && name == "min_free_space" {
        // A whole number of bytes is a valid size too.
        rng.pick(&["[\"x\"]", "{ a = 1 }", "true"]).to_string()
    } else if v.starts_with('"') {
        rng.pick(&["5", "[\"x\"]", "{ a = 1 }", "true"]).to_string()
    } else if v == "true" || v == "false" {
        rng.pick(&["\"yes\"", "1"]).to_string()
    } else {
        rng.pick(&["\"five\"", "1.5", "[1]"]).to_string()
    }
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn check_config(dir: &Path, name: &str, text: &str) -> Outcome {
    let p = write_file(dir, name, text);
    let out = run_bin(&p, &["check-config"]);
    Outcome {
        code: out.status.code(),
        stderr: stderr(&out),
    }
}

#[test]
fn the_template_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let o = check_config(dir.path(), "c.toml", &(template(&kh).join("\n") + "\n"));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

/// Each key in turn: misspelt, given a wrong value, removed. A misspelt
/// key and a wrong value must be named with their line; a removed key is
/// either optional (exit 0) or named as missing.
#[test]
fn every_key_misspelt_mistyped_or_removed_gets_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let base = template(&kh);
    let seed = campaign_seed();
    let mut rng = Rng::new(seed);
    let mut problems = Vec::new();
    let mut cases = 0;
    for i in 0..base.len() {
        let Some(key) = key_of(&base, i) else {
            continue;
        };
        let (name, value) = base[i].split_once(" = ").unwrap();
        let line = i + 1;
        // 1. misspelt: a letter doubled, or an underscore dropped.
        let typo = if name.contains('_') {
            name.replacen('_', "", 1)
        } else {
            format!("{name}{}", &name[name.len() - 1..])
        };
        let typo_key = key.replace(name, &typo);
        // 2. a value of the wrong type or shape.
        let wrong = wrong_value(name, value, &mut rng);
        for (what, replacement, needles) in [
            (
                "typo",
                Some(format!("{typo} = {value}")),
                vec![typo_key.clone(), format!(":{line}")],
            ),
            (
                "wrong value",
                Some(format!("{name} = {wrong}")),
                vec![key.clone()],
            ),
            ("removed", None, vec![name.to_string()]),
        ] {
            let mut lines = base.clone();
            match &replacement {
                Some(r) => lines[i] = r.clone(),
                None => {
                    lines.remove(i);
                }
            }
            let text = lines.join("\n") + "\n";
            cases += 1;
            let o = check_config(dir.path(), &format!("case-{cases}.toml"), &text);
            let label = format!("{what} {key} ({:?})", replacement.as_deref().unwrap_or(""));
            if o.stderr.contains("panicked") {
                problems.push(format!("{label}: panic: {}", o.stderr));
                continue;
            }
            if o.stderr.contains(SECRET) && !(what == "wrong value" && key.ends_with("password")) {
                problems.push(format!("{label}: the password was printed: {}", o.stderr));
            }
            match (o.code, what) {
                (Some(2), _) => {
                    for n in &needles {
                        if !o.stderr.contains(n.as_str()) {
                            problems.push(format!("{label}: {n:?} not in: {}", o.stderr.trim()));
                        }
                    }
                    if !o.stderr.contains(&format!("case-{cases}.toml")) {
                        problems.push(format!("{label}: file not named: {}", o.stderr.trim()));
                    }
                }
                // Optional keys may go.
                (Some(0), "removed") => {}
                (code, _) => problems.push(format!("{label}: exit {code:?}: {}", o.stderr.trim())),
            }
        }
    }
    assert!(cases >= 50, "{cases}");
    assert!(
        problems.is_empty(),
        "{} of {cases} cases (V2X_SEED={seed}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Random byte edits of the valid config (flip, insert, delete, truncate,
/// duplicate a line): exit 0 or 2, never a panic, an error always says
/// "config error" with the file's name, and never prints the password.
#[test]
fn random_edits_never_panic_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let kh = empty_known_hosts(dir.path());
    let base = template(&kh).join("\n") + "\n";
    let seed = campaign_seed();
    let mut rng = Rng::new(seed);
    let n = trials(200);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..n {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..rng.range(1, 4) {
            let at = rng.below(bytes.len() as u64) as usize;
            match rng.below(6) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes.insert(at, *rng.pick(b"=\"[]{}#\n\\ \x00\xff.,'")),
                2 => {
                    bytes.remove(at);
                }
                3 => bytes.truncate(at),
                4 => {
                    let line_start = bytes[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    let line_end = bytes[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |p| at + p + 1);
                    let line = bytes[line_start..line_end].to_vec();
                    bytes.splice(line_end..line_end, line);
                }
                _ => bytes[at] = rng.below(256) as u8,
            }
            if bytes.is_empty() {
                break;
            }
        }
        let name = format!("edit-{case}.toml");
        let p = write_file(dir.path(), &name, &bytes);
        let out = run_bin(&p, &["check-config"]);
        let err = stderr(&out);
        let label = format!(
            "case {case} (V2X_SEED={seed}): {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(!err.contains("panicked"), "{label}\n{err}");
        match out.status.code() {
            Some(0) => valid += 1,
            Some(2) => {
                invalid += 1;
                assert!(err.contains("config error"), "{label}\n{err}");
                assert!(err.contains(&name), "{label}\n{err}");
            }
            other => panic!("{label}: exit {other:?}\n{err}"),
        }
        // The password may only appear when an edit broke its own line so
        // that the parser quotes it back as text (it then is no password).
        if err.contains(SECRET) {
            let line = String::from_utf8_lossy(&bytes)
                .lines()
                .find(|l| l.contains(SECRET))
                .map(str::to_string)
                .unwrap_or_default();
            assert!(
                !line.starts_with(&format!("password = \"{SECRET}\"")),
                "{label}: the password was printed\n{err}"
            );
        }
    }
    println!("config edits: {n} cases, {valid} still valid, {invalid} rejected with exit 2");
}
