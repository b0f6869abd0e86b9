//! systemd credentials: secrets that systemd hands to one unit only.
//!
//! `LoadCredential=NAME:PATH` or `LoadCredentialEncrypted=NAME:PATH` (sealed
//! with `systemd-creds encrypt`, so the file at rest is useless on another
//! machine) in the unit makes systemd place the secret, decrypted, in a
//! private folder named by `$CREDENTIALS_DIRECTORY`, readable by the unit
//! alone and gone when it stops. A config names a credential, never a path:
//! `password_credential`, `passphrase_credential`, `private_key_credential`.
//!
//! Outside the unit (`check-config` in a shell) there is no such folder. That
//! is expected, not an error: check-config says which credentials it cannot
//! see and why, and `run` started by hand fails only the intersections that
//! need one, naming it.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The variable systemd sets for a unit that loads credentials.
pub const DIRECTORY_VARIABLE: &str = "CREDENTIALS_DIRECTORY";

/// The unit that should load them, for messages.
const UNIT: &str = "v2x-data-sftp-client.service";

/// Why a credential cannot be read where this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No `$CREDENTIALS_DIRECTORY`: not started by a unit that loads
    /// credentials (a shell, cron, a unit without `LoadCredential*=`).
    NoDirectory,
    /// The folder exists, but the unit does not load this name.
    NotLoaded { directory: PathBuf },
}

/// A credential that cannot be read here. `Display` says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError {
    pub name: String,
    pub why: Unavailable,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.why {
            Unavailable::NoDirectory => write!(
                f,
                "credential {name:?} is not available: ${DIRECTORY_VARIABLE} is not set, since \
                 systemd hands credentials only to a unit that loads them (run this as \
                 {UNIT}, or with `systemd-run -p LoadCredentialEncrypted={name}:PATH`)"
            ),
            Unavailable::NotLoaded { directory } => write!(
                f,
                "credential {name:?} is not in ${DIRECTORY_VARIABLE} ({}): the unit does not \
                 load it; add `LoadCredentialEncrypted={name}:PATH` to {UNIT} with `systemctl \
                 edit {UNIT}` (the name before the colon must be {name:?})",
                directory.display()
            ),
        }
    }
}

impl std::error::Error for CredentialError {}

/// Checks a credential name as systemd does: a single file name (no `/`,
/// not `.` or `..`, no NUL) of at most 255 bytes. `Err` says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "is empty; give the credential's name, as in LoadCredentialEncrypted=NAME:PATH".into(),
        );
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "{name:?} is not a credential name: it must be a plain file name (no '/', not '.' or '..')"
        ));
    }
    if name.len() > 255 {
        return Err(format!(
            "is {} bytes long; systemd credential names have at most 255",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(
            "contains a control character; systemd credential names are plain file names".into(),
        );
    }
    Ok(())
}

/// Where credential `name` is for this process, if systemd handed it over.
pub fn path(name: &str) -> Result<PathBuf, CredentialError> {
    path_in(std::env::var_os(DIRECTORY_VARIABLE), name)
}

/// [`path`] with the variable's value given, for tests.
pub fn path_in(directory: Option<OsString>, name: &str) -> Result<PathBuf, CredentialError> {
    let error = |why| CredentialError {
        name: name.to_string(),
        why,
    };
    let directory = match directory {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => return Err(error(Unavailable::NoDirectory)),
    };
    let path = directory.join(name);
    // symlink_metadata: systemd places regular files there; whatever else
    // is met is reported by the reader that opens it, with its path.
    if Path::new(&path).symlink_metadata().is_err() {
        return Err(error(Unavailable::NotLoaded { directory }));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        assert!(check_name("speedway-campbell.password").is_ok());
        for bad in ["", ".", "..", "a/b", "x\ny"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"n".repeat(255)).is_ok());
        assert!(check_name(&"n".repeat(256)).is_err());
    }

    #[test]
    fn outside_a_unit_the_message_says_why_and_how() {
        let e = path_in(None, "sim-1-password").unwrap_err();
        assert_eq!(e.why, Unavailable::NoDirectory);
        let text = e.to_string();
        assert!(text.contains("\"sim-1-password\""), "{text}");
        assert!(text.contains("$CREDENTIALS_DIRECTORY is not set"), "{text}");
        assert!(
            text.contains("LoadCredentialEncrypted=sim-1-password:PATH"),
            "{text}"
        );
        assert_eq!(
            path_in(Some(OsString::new()), "x").unwrap_err().why,
            Unavailable::NoDirectory
        );
    }

    #[test]
    fn a_credential_the_unit_does_not_load_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loaded"), "pw\n").unwrap();
        let d = Some(dir.path().as_os_str().to_owned());
        assert_eq!(
            path_in(d.clone(), "loaded").unwrap(),
            dir.path().join("loaded")
        );
        let e = path_in(d, "other").unwrap_err();
        assert!(matches!(e.why, Unavailable::NotLoaded { .. }));
        let text = e.to_string();
        assert!(text.contains("the unit does not load it"), "{text}");
        assert!(
            text.contains("systemctl edit v2x-data-sftp-client.service"),
            "{text}"
        );
    }
}
