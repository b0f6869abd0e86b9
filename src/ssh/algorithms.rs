//! The SSH algorithms of one session: the configured preferences
//! ([`crate::config::algorithms`], measured order) set before the
//! handshake, and what the server and we negotiated, for the debug log and
//! `check-config --connect`.

use std::fmt;

use ssh2::{MethodType, Session};

use crate::config::algorithms::Algorithms;

/// Sets the preferences on a session before its handshake, both directions
/// alike.
pub fn apply(algorithms: &Algorithms, session: &Session) -> Result<(), ssh2::Error> {
    let ciphers = algorithms.ciphers.join(",");
    let macs = algorithms.macs.join(",");
    session.method_pref(MethodType::Kex, &algorithms.kex.join(","))?;
    session.method_pref(MethodType::CryptSc, &ciphers)?;
    session.method_pref(MethodType::CryptCs, &ciphers)?;
    session.method_pref(MethodType::MacSc, &macs)?;
    session.method_pref(MethodType::MacCs, &macs)?;
    Ok(())
}

/// What one session negotiated, for the debug log and `check-config --connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub kex: String,
    /// Server to client: the direction the data comes.
    pub cipher: String,
    /// `None` for an AEAD cipher, whose MAC is part of it.
    pub mac: Option<String>,
    pub compression: bool,
}

impl Negotiated {
    /// Reads the negotiated methods of a session after its handshake.
    /// Compression is what the server chose for its data to us, not what
    /// we asked: a server may offer none.
    pub fn of(session: &Session) -> Negotiated {
        let get = |m| session.methods(m).unwrap_or("?").to_string();
        let compression = !matches!(session.methods(MethodType::CompSc), None | Some("none"));
        let cipher = get(MethodType::CryptSc);
        let aead = cipher.contains("gcm") || cipher.starts_with("chacha20-poly1305");
        Negotiated {
            kex: get(MethodType::Kex),
            mac: (!aead).then(|| get(MethodType::MacSc)),
            cipher,
            compression,
        }
    }
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cipher)?;
        if let Some(mac) = &self.mac {
            write!(f, " + {mac}")?;
        }
        write!(f, ", kex {}", self.kex)?;
        if self.compression {
            write!(f, ", zlib compression")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_a_session() {
        let session = Session::new().expect("session");
        apply(&Algorithms::default(), &session).expect("apply");
    }
}
