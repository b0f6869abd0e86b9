//! The systemd generator binary, installed as
//! `/usr/lib/systemd/system-generators/v2x-data-sftp-client-generator`.
//! All logic lives in [`v2x_data_sftp_client::systemd::generator`]; see there for why
//! this is a separate binary.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(v2x_data_sftp_client::systemd::generator::main(&args));
}
