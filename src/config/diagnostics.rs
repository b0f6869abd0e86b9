//! How a config problem is told: file, line, key, and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file. `Display` prints `FILE:LINE: KEY: MESSAGE`,
/// leaving out the parts that are unknown; the message says what to do.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Key path as the user wrote it, e.g. `intersections[2].password_file`.
    pub key: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        file: &Path,
        key: Option<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key,
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config file, in file order where known.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
