//! `completions SHELL`: the shell completion script, from the same clap
//! definition the parser uses, so it cannot go stale.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::commands::Exit;

pub fn command(shell: clap_complete::Shell) -> Exit {
    let mut cmd = Cli::command();
    clap_complete::generate(
        shell,
        &mut cmd,
        "v2x-data-sftp-client",
        &mut std::io::stdout(),
    );
    Exit::Ok
}
