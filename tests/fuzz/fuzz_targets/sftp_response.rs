//! Any bytes as one SFTP answer packet, through the parser `recv` uses:
//! never a panic and never a read past the packet; an error is a protocol
//! error that names SFTP; what parses holds no more than the packet
//! carried, describes itself, and parses back to itself once re-encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use v2x_data_sftp_client::ssh::sftp::{Attrs, Response, SftpError, parse_packet};

fuzz_target!(|data: &[u8]| {
    check(data);
    // A mutated length prefix rarely matches its packet, so also try the
    // bytes with a true one: that keeps the fuzzer in the body parsers.
    if data.len() >= 4 {
        let mut framed = data.to_vec();
        framed[..4].copy_from_slice(&((data.len() - 4) as u32).to_be_bytes());
        check(&framed);
    }
});

fn check(packet: &[u8]) {
    let (id, response) = match parse_packet(packet) {
        Ok(answer) => answer,
        Err(e) => {
            assert!(matches!(e, SftpError::Protocol(_)), "{e}");
            assert!(e.to_string().contains("SFTP"), "{e}");
            return;
        }
    };
    let _ = response.describe();
    // Length, type and id take 9 bytes; what follows bounds what was kept.
    let room = packet.len() - 9;
    match &response {
        Response::Data(d) => assert!(d.len() + 4 <= room),
        Response::Handle(h) => assert!(h.len() + 4 <= room),
        Response::Name(entries) => assert!(4 + entries.len() * 12 <= room),
        Response::Status { .. } | Response::Attrs(_) => {}
    }
    let again = encode(id, &response);
    if again.len() <= 1 << 20 {
        assert_eq!(parse_packet(&again).ok(), Some((id, response)));
    }
}

/// The packet a server would send for what we understood.
fn encode(id: u32, response: &Response) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match response {
        Response::Status { code, message } => {
            body.extend_from_slice(&code.to_be_bytes());
            string(&mut body, message.as_bytes());
            string(&mut body, b"en");
            101
        }
        Response::Handle(h) => {
            string(&mut body, h);
            102
        }
        Response::Data(d) => {
            string(&mut body, d);
            103
        }
        Response::Name(entries) => {
            body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                string(&mut body, &e.name);
                string(&mut body, b"");
                attrs(&mut body, &e.attrs);
            }
            104
        }
        Response::Attrs(a) => {
            attrs(&mut body, a);
            105
        }
    };
    let mut packet = ((body.len() + 5) as u32).to_be_bytes().to_vec();
    packet.push(kind);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend(body);
    packet
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn attrs(out: &mut Vec<u8>, a: &Attrs) {
    let flags: u32 = if a.size.is_some() { 0x1 } else { 0 }
        | if a.perm.is_some() { 0x4 } else { 0 }
        | if a.mtime.is_some() { 0x8 } else { 0 };
    out.extend_from_slice(&flags.to_be_bytes());
    if let Some(size) = a.size {
        out.extend_from_slice(&size.to_be_bytes());
    }
    if let Some(perm) = a.perm {
        out.extend_from_slice(&perm.to_be_bytes());
    }
    if let Some(mtime) = a.mtime {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&mtime.to_be_bytes());
    }
}
