//! `man`: the man page in roff, generated from the same clap definition the
//! parser uses ([`crate::cli::man`]), so it cannot go stale.

use crate::cli::man;
use crate::commands::Exit;

pub fn command() -> Exit {
    let mut out = std::io::stdout().lock();
    match man::render(&mut out) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: cannot write the man page to stdout: {e}");
            Exit::Failed
        }
    }
}
