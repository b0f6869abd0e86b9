//! A wrapper that keeps secrets out of logs, errors and reports.
//!
//! Every password or passphrase the program holds lives in a [`Secret`]. Its
//! `Debug` and `Display` print a placeholder, so a `{:?}` of a config, an
//! error or a report can never leak it; the value is reachable only through
//! [`Secret::expose`], which is called at the single place where it is handed
//! to libssh2.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A password or passphrase file is read whole; anything larger is not one.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Opens a file that holds a secret (password, passphrase, private key).
///
/// A FIFO at that path would block `open` until some process writes to it,
/// and no deadline can interrupt a blocked `open`: the whole pass would
/// hang. `O_NONBLOCK` makes `open` return at once (it changes nothing for
/// a regular file's reads), and then only a regular file is accepted.
///
/// # Errors
/// The file cannot be opened or stat'ed (missing, permission denied), or
/// it is not a regular file (`InvalidInput`, naming what it is instead).
pub fn open_secret_file(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file; point it at a plain file"),
    ))
}

/// The first line of a password or passphrase file, without its line
/// ending (the way `echo secret > file` writes it).
///
/// # Errors
/// As [`open_secret_file`]; also when reading fails, the text is not UTF-8
/// (`InvalidData`), or the file is larger than 64 KiB (`InvalidData`).
pub fn read_secret_line(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    open_secret_file(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {MAX_SECRET_FILE} bytes; it should hold one line"),
        ));
    }
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself. Call only to hand it to the authentication layer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_files_are_read_only_when_they_are_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("pw");
        std::fs::write(&plain, "hunter2\nsecond line\n").unwrap();
        assert_eq!(read_secret_line(&plain).unwrap(), "hunter2");

        // A FIFO nobody writes to: refused at once instead of blocking.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_secret_line(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let e = read_secret_line(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        assert!(read_secret_line(&big).is_err());
    }
}
