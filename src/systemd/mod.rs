//! Living under systemd. Nothing here knows about transfers: the `run`
//! command wires these to the pass.
//!
//! | module | owns |
//! | --- | --- |
//! | [`notify`] | `STATUS=` and `EXTEND_TIMEOUT_USEC=` to the service manager |
//! | [`lock`] | one pass at a time (`<state>/lock`) |
//! | [`signals`] | SIGTERM/SIGINT: stop cleanly, then at once |
//! | [`generator`] | the configured start time → a timer drop-in, sandbox paths |
pub mod generator;
pub mod lock;
pub mod notify;
pub mod signals;
