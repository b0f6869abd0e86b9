//! Which SSH algorithms a session offers, in which order: the measured
//! defaults and the `transfer.ciphers` / `macs` / `kex_algorithms` lists
//! that replace them. [`crate::ssh::algorithms`] applies them to a session
//! and reads what was negotiated.
//!
//! For each kind, an SSH server takes the first algorithm of the *client's*
//! list that it also supports (RFC 4253, 7.1), so the order here decides what
//! an untouched coprocessor (OpenSSH 8.2 on Ubuntu 20.04, 9.x on Debian 12
//! and Ubuntu 22.04/24.04) negotiates with us. libssh2's own order puts
//! `chacha20-poly1305@openssh.com` first, which it runs in portable C, one
//! 64-byte block at a time. AES-GCM and AES-CTR go through OpenSSL in one
//! call per packet thanks to the vendored bulk-decryption patches
//! (`vendor/libssh2-sys/PATCHES.md`); GCM carries its own MAC (GHASH, on
//! the CPU's carry-less multiply), so it costs both ends less than AES-CTR
//! with HMAC-SHA-256 even where SHA-256 runs on the CPU's SHA extensions.
//! The measurements behind this order are in `docs/performance.md`.
//!
//! Every list keeps only what OpenSSH still offers by default and libssh2
//! builds here: no CBC, no SHA-1 MACs or key exchanges, no 1024-bit groups.
//! `transfer.ciphers`, `transfer.macs` and `transfer.kex_algorithms` replace
//! a list; their names are checked against what this build of libssh2
//! supports ([`supported`]).

use ssh2::{MethodType, Session};

/// Server-to-client and client-to-server ciphers, fastest first.
pub const DEFAULT_CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "aes192-ctr",
    "chacha20-poly1305@openssh.com",
];

/// MACs for the CTR ciphers, where a server offers no AES-GCM (AEAD
/// ciphers carry their own). Encrypt-then-MAC
/// first: the MAC is checked before anything is decrypted.
pub const DEFAULT_MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// Key exchanges: X25519 first (the cheapest for both ends, which counts
/// when a pass opens a thousand sessions), then the NIST curves, then the
/// large finite-field groups for old or hardened servers.
pub const DEFAULT_KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// One kind of algorithm a config key chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cipher,
    Mac,
    Kex,
}

impl Kind {
    /// The `[transfer]` key that overrides this kind's list.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Cipher => "ciphers",
            Kind::Mac => "macs",
            Kind::Kex => "kex_algorithms",
        }
    }

    /// The shipped default list of this kind.
    pub fn defaults(self) -> &'static [&'static str] {
        match self {
            Kind::Cipher => DEFAULT_CIPHERS,
            Kind::Mac => DEFAULT_MACS,
            Kind::Kex => DEFAULT_KEX,
        }
    }

    /// libssh2's name for this kind (server to client; we offer the same
    /// list both ways).
    pub fn method(self) -> MethodType {
        match self {
            Kind::Cipher => MethodType::CryptSc,
            Kind::Mac => MethodType::MacSc,
            Kind::Kex => MethodType::Kex,
        }
    }
}

/// What a session offers: ordered lists, each non-empty and supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub kex: Vec<String>,
}

impl Default for Algorithms {
    fn default() -> Self {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Algorithms {
            ciphers: own(DEFAULT_CIPHERS),
            macs: own(DEFAULT_MACS),
            kex: own(DEFAULT_KEX),
        }
    }
}

/// The algorithms this build of libssh2 can negotiate for `kind`, or `None`
/// if libssh2 cannot say (it then checks the names itself at connect time).
pub fn supported(kind: Kind) -> Option<Vec<&'static str>> {
    let session = Session::new().ok()?;
    session.supported_algs(kind.method()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A default this libssh2 cannot negotiate would be dropped silently by
    /// `method_pref`, and the measured order would no longer be what runs.
    #[test]
    fn every_default_algorithm_is_supported_by_the_linked_libssh2() {
        for kind in [Kind::Cipher, Kind::Mac, Kind::Kex] {
            let supported = supported(kind).expect("libssh2 lists its algorithms");
            for name in kind.defaults() {
                assert!(
                    supported.contains(name),
                    "{name} ({}) is not supported: {supported:?}",
                    kind.key()
                );
            }
        }
    }

    /// The commented example in the shipped config shows the real defaults.
    #[test]
    fn shipped_config_example_lists_the_defaults() {
        let shipped = include_str!("../../packaging/config.example.toml");
        for kind in [Kind::Cipher, Kind::Mac, Kind::Kex] {
            let quoted: Vec<String> = kind.defaults().iter().map(|d| format!("{d:?}")).collect();
            let line = format!("#{} = [{}]", kind.key(), quoted.join(", "));
            assert!(
                shipped.contains(&line),
                "packaging/config.example.toml lacks: {line}"
            );
        }
    }
}
