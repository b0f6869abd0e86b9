//! One engine run against a scripted server, with the defaults of a
//! shipped config except where a test says otherwise.
//! Test support, built only for tests and the `fault-injection` feature.

use std::path::PathBuf;

use crate::common::secret::Secret;
use crate::config::{Auth, Config, DEFAULT_ELEMENTS, DEFAULT_STALE_AFTER, Intersection, Transfer};
use crate::error::Disposition;
use crate::landing::Lander;
use crate::ledger::Ledger;
use crate::report::IntersectionReport;
use crate::report::progress::Progress;
use crate::transfer::Control;
use crate::transfer::engine::{Ctx, Engine};

use crate::ssh::sftp::scripted::Scripted;

/// Where `archive/` is on the scripted server.
pub const LOCATION: &str = "/v2x";
pub const ARCHIVE: &str = "/v2x/archive";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub control: Control,
    /// Kept across runs, as a pass keeps it across reconnects.
    pub lander: Lander,
    /// Under the state directory, as a pass opens it.
    pub ledger: Ledger,
    /// The pass id records get; a test may change it between runs.
    pub pass: String,
}

/// How a run ended: `Ok`, or the stop's text.
pub struct Outcome {
    pub result: Result<(), String>,
    pub report: IntersectionReport,
}

impl Harness {
    /// A data folder under the build's target folder (a disk, like the
    /// one files land on), the shipped `[transfer]` defaults but
    /// `min_free_space` (a test machine's disk may be small).
    pub fn new() -> Harness {
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        let _ = std::fs::create_dir_all(&target);
        let dir = tempfile::Builder::new()
            .prefix("engine-")
            .tempdir_in(&target)
            .or_else(|_| tempfile::tempdir())
            .unwrap_or_else(|e| panic!("a temporary folder: {e}"));
        let ix = Intersection {
            name: "ix".into(),
            host: "127.0.0.1".into(),
            port: 22,
            username: "u".into(),
            auth: Auth::Password(Secret::new("not used".into())),
            v2x_data_location: LOCATION.into(),
            compression: None,
        };
        let config = Config {
            source: dir.path().join("config.toml"),
            data_directory: dir.path().join("data"),
            state_directory: dir.path().join("state"),
            known_hosts: dir.path().join("known_hosts"),
            elements: DEFAULT_ELEMENTS.iter().map(|s| s.to_string()).collect(),
            start_time: None,
            transfer: Transfer {
                min_free_bytes: 0,
                ..Transfer::default()
            },
            intersections: vec![ix],
            stale_after: DEFAULT_STALE_AFTER,
            metrics_textfile: None,
        };
        let ledger = Ledger::open(&config.state_directory)
            .unwrap_or_else(|e| panic!("the ledger of a test: {e}"));
        Harness {
            dir,
            config,
            control: Control::new(),
            lander: Lander::new(),
            ledger,
            pass: "test-pass-1".into(),
        }
    }

    /// `<data_directory>/ix`.
    pub fn data_root(&self) -> PathBuf {
        self.config.data_directory.join("ix")
    }

    pub fn run(&mut self, server: &mut Scripted) -> Outcome {
        let ix = &self.config.intersections[0];
        let mut report = IntersectionReport::new(ix);
        let data_root = self.data_root();
        // As the pass does before it hands a session to the engine.
        for el in self.config.elements.iter().map(String::as_str).chain([""]) {
            let _ = std::fs::create_dir_all(data_root.join(el));
        }
        let progress = Progress::default();
        let ctx = Ctx {
            ix,
            config: &self.config,
            control: &self.control,
            progress: &progress,
            data_root: &data_root,
            ledger: &self.ledger,
            pass: &self.pass,
        };
        let result = Engine::new(&ctx, server, &mut self.lander, &mut report)
            .run()
            .map_err(|s| match s.disposition {
                _ if s.is_cancelled() => "cancelled".into(),
                Disposition::Reconnect => format!("reconnect: {s}"),
                _ => format!("fatal: {s}"),
            });
        Outcome { result, report }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
