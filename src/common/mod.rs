//! Mechanisms every layer uses and that know nothing of the data flow.
//!
//! | module | owns |
//! | --- | --- |
//! | [`clock`] | the one clock (Unix seconds) and UTC formatting |
//! | [`text`] | remote names made safe to print; sizes and ages in human units |
//! | [`durable`] | replacing a small file so a crash leaves the old or the new |
//! | [`secret`] | passwords and passphrases that never print |
//! | [`credentials`] | systemd credentials: where `$CREDENTIALS_DIRECTORY` puts a named secret |
//! | [`fault`] | crash points for the fault campaign (inert in a shipped build) |
//! | [`scoped`] | work on several intersections at once, each in its span |
//! | [`memory`] | how many malloc arenas the process keeps |
pub mod clock;
pub mod credentials;
pub mod durable;
pub mod fault;
pub mod memory;
pub mod scoped;
pub mod secret;
pub mod text;
