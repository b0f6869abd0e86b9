//! Entry point: parse the command line, start logging, run one command
//! ([`v2x_data_sftp_client::commands`]), exit with its status.

use std::process::ExitCode;

use clap::Parser;

use v2x_data_sftp_client::cli::Cli;
use v2x_data_sftp_client::common::memory;
use v2x_data_sftp_client::{commands, logging};

fn main() -> ExitCode {
    memory::limit_arenas();
    let cli = Cli::parse();
    logging::init(cli.verbose);
    ExitCode::from(commands::dispatch(&cli).code())
}
