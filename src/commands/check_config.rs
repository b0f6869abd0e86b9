//! `check-config --connect`: tries every intersection the way a pass would
//! (reachability, host key, authentication, the archive folder) without
//! reading or deleting a file, and says for each what to fix.
//!
//! Intersections are probed in parallel, each bounded by the configured
//! connect and I/O timeouts, so one dead coprocessor costs one
//! `connect_timeout`, not one per intersection.

use crate::cli::Cli;
use crate::commands::{Exit, load, select};
use crate::common::scoped::each_intersection;
use std::path::Path;

use crate::commands::trust;
use crate::config::{self, Config, Intersection};
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::ssh::session::{self, Kind, RemoteError};

/// How many intersections are probed at once.
const PROBE_PARALLEL: usize = 32;

/// The step a probe got stuck at, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reach,
    HostKey,
    Auth,
    Sftp,
    Archive,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reach => "reachability",
            Step::HostKey => "host key",
            Step::Auth => "authentication",
            Step::Sftp => "SFTP",
            Step::Archive => "archive folder",
        }
    }
}

/// One intersection's result: `Ok(summary)` or the failed step, what went
/// wrong and what to do about it.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    /// `host:port` as known_hosts names it.
    pub addr: String,
    pub result: Result<String, (Step, String)>,
}

/// Probes every intersection (in parallel), results in config order.
pub fn probe_all(
    config: &Config,
    known: &KnownHosts,
    intersections: &[Intersection],
) -> Vec<Probe> {
    each_intersection(
        intersections,
        PROBE_PARALLEL,
        |ix| &ix.name,
        |ix| probe(config, known, ix),
        |ix| Probe {
            name: ix.name.clone(),
            addr: known_hosts::host_port_name(&ix.host, ix.port),
            result: Err((Step::Reach, "the probe panicked (a bug)".into())),
        },
    )
}

fn probe(config: &Config, known: &KnownHosts, ix: &Intersection) -> Probe {
    Probe {
        name: ix.name.clone(),
        addr: known_hosts::host_port_name(&ix.host, ix.port),
        result: steps(config, known, ix),
    }
}

fn steps(config: &Config, known: &KnownHosts, ix: &Intersection) -> Result<String, (Step, String)> {
    let t = &config.transfer;
    // Handshake only, to judge the key before any credential is offered.
    let key = session::fetch_host_key(ix, &known.key_types_for(&ix.host, ix.port), t)
        .map_err(|e| reach_error(&e))?;
    let fingerprint = known_hosts::fingerprint_sha256(&key.blob);
    let file = config.known_hosts.display();
    match known.check(&ix.host, ix.port, key.key_type, &key.blob) {
        Verdict::Match => {}
        Verdict::Unknown => {
            return Err((
                Step::HostKey,
                format!(
                    "{} {fingerprint} is not in {file}; check the fingerprint on the coprocessor \
                     and run `v2x-data-sftp-client trust {}`",
                    key.key_type, ix.name
                ),
            ));
        }
        Verdict::Mismatch { known_types } => {
            return Err((
                Step::HostKey,
                format!(
                    "CHANGED: it offers {} {fingerprint}, {file} lists another key ({}); a \
                     reinstalled coprocessor or a man-in-the-middle. Once confirmed on the \
                     coprocessor: {} then `v2x-data-sftp-client trust {}`",
                    key.key_type,
                    known_types.join(", "),
                    trust::removal_command(&ix.host, ix.port, &config.known_hosts),
                    ix.name
                ),
            ));
        }
        Verdict::Revoked => {
            return Err((
                Step::HostKey,
                format!(
                    "{} {fingerprint} is marked @revoked in {file}; the coprocessor needs new host keys",
                    key.key_type
                ),
            ));
        }
    }
    let mut session = session::connect(ix, known, t, &|_| {}).map_err(|e| match e {
        RemoteError::HostKey(m) => (Step::HostKey, m),
        RemoteError::Auth { .. } | RemoteError::SecretFile { .. } | RemoteError::Credential(_) => {
            (Step::Auth, e.to_string())
        }
        RemoteError::Session(_) | RemoteError::Refused { .. } => (
            Step::Sftp,
            format!("{e} (is `Subsystem sftp` enabled in the coprocessor's sshd_config?)"),
        ),
        other => reach_error(&other),
    })?;
    let archive = Path::new(&ix.v2x_data_location).join("archive");
    let entries = session.list(&archive).map_err(|e| {
        (
            Step::Archive,
            format!(
                "{e}; check v2x_data_location ({:?}): it must hold an archive/ folder that {} can read",
                ix.v2x_data_location, ix.username
            ),
        )
    })?;
    let dirs = entries.iter().filter(|e| e.kind == Kind::Dir).count();
    let files = entries.iter().filter(|e| e.kind == Kind::File).count();
    let other = entries.len() - dirs - files;
    let mut summary = format!(
        "reachable, host key {} {fingerprint} trusted, {}, authenticated as {}, {} lists {} folder(s) and {} file(s)",
        key.key_type,
        session.negotiated(),
        ix.username,
        archive.display(),
        dirs,
        files
    );
    if other > 0 {
        summary.push_str(&format!(
            " and {other} other entr{} that a pass leaves alone",
            if other == 1 { "y" } else { "ies" }
        ));
    }
    Ok(summary)
}

fn reach_error(e: &RemoteError) -> (Step, String) {
    let fix = match e {
        RemoteError::Resolve { .. } => "check the intersection's host",
        RemoteError::Handshake { .. } => "is an SSH server listening on that port?",
        _ => "",
    };
    let msg = if fix.is_empty() {
        e.to_string()
    } else {
        format!("{e}; {fix}")
    };
    (Step::Reach, msg)
}

/// The report: one line per intersection.
pub fn render(probes: &[Probe]) -> String {
    let name_w = probes
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0);
    let addr_w = probes
        .iter()
        .map(|p| p.addr.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for p in probes {
        let text = match &p.result {
            Ok(summary) => format!("ok      {summary}"),
            Err((step, why)) => format!("FAILED  {}: {why}", step.as_str()),
        };
        out.push_str(&format!(
            "{:<name_w$}  {:<addr_w$}  {text}\n",
            p.name, p.addr
        ));
    }
    out
}

/// `check-config [--connect]`.
///
/// # Errors
/// The early [`Exit`] of a config or usage error.
pub fn command(cli: &Cli, connect: bool, only: &[String]) -> Result<Exit, Exit> {
    let (config, known) = load(cli)?;
    let secrets = config::check_secret_files(&config);
    if !secrets.errors.is_empty() {
        for p in &secrets.errors {
            eprintln!("config error: {p}");
        }
        return Err(Exit::Config);
    }
    println!(
        "{}: OK, {} intersection(s), data lands in {}",
        config.source.display(),
        config.intersections.len(),
        config.data_directory.display()
    );
    // Not errors: outside the unit, credentials are invisible by design.
    for note in &secrets.unseen_credentials {
        println!("note: {note}");
    }
    if !connect {
        return Ok(Exit::Ok);
    }
    let selected = select(&config, only, "--only ")?;
    let probes = probe_all(&config, &known, &selected);
    print!("{}", render(&probes));
    Ok(Exit::ok_if(probes.iter().all(|p| p.result.is_ok())))
}
