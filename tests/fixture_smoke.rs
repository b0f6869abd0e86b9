//! Proves the fixture library works, using the ssh2 crate directly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn connect(addr: SocketAddr, timeout_ms: u32) -> ssh2::Session {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("tcp connect");
    let mut s = ssh2::Session::new().expect("session");
    s.set_tcp_stream(tcp);
    s.set_timeout(timeout_ms);
    s.handshake().expect("handshake");
    s
}

fn known_blobs(known_hosts: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    known_hosts
        .lines()
        .map(|l| {
            let b64 = l.split_whitespace().nth(2).expect("blob field");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        })
        .collect()
}

#[test]
fn sshd_tree_sftp_roundtrip() {
    let t0 = Instant::now();
    let sshd = Sshd::start(SshdOptions::default().host_keys(&[KeyType::Ed25519, KeyType::Ecdsa]));
    let mut tree = RemoteTree::new();
    let a = tree.add_session(DEFAULT_COPROC_NAME, stamp(6, 9), 1, 2_000..=6_000);
    let b = tree.add_session(
        DEFAULT_COPROC_NAME,
        Stamp::new(2021, 6, 10, 0, 1, 2),
        2,
        1_000..=3_000,
    );
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 10);
    assert_eq!(tree.manifest().len(), 15);
    assert!(a.iter().all(|e| e.element.is_some()));
    assert!(
        a.iter()
            .any(|e| e.element == Some("msgCount") && e.rel.contains("_msgCountsLog_"))
    );

    // known_hosts lines look like ssh-keyscan's and hold the key the server shows
    let kh = sshd.known_hosts_lines();
    assert_eq!(kh.lines().count(), 2);
    for l in kh.lines() {
        assert!(
            l.starts_with(&format!("[127.0.0.1]:{} ", sshd.port())),
            "{l}"
        );
    }
    let sess = connect(sshd.addr(), 5000);
    let (key, _kind) = sess.host_key().expect("host key");
    assert!(
        known_blobs(&kh).iter().any(|b| b == key),
        "host key not in known_hosts"
    );

    sess.userauth_password(TEST_USER, TEST_PASSWORD)
        .expect("password auth");
    assert!(sess.authenticated());
    let sftp = sess.sftp().expect("sftp");
    let archive = tree.archive_dir();
    let mut listed: Vec<String> = sftp
        .readdir(&archive)
        .expect("readdir archive")
        .into_iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "SpatzAve-Ssmith_06092021_000000".to_owned(),
            "SpatzAve-Ssmith_06102021_000102".to_owned()
        ]
    );
    let e = &b[3];
    let mut buf = Vec::new();
    sftp.open(tree.path(&e.rel))
        .expect("open")
        .read_to_end(&mut buf)
        .expect("read");
    assert_eq!(buf.len() as u64, e.size);
    assert_eq!(sha256_bytes(&buf), e.sha256);
    assert!(buf.starts_with(csv_header(e.element.unwrap()).as_bytes()));
    // mtimes are an hour old
    let st = sftp.stat(&tree.path(&e.rel)).expect("stat");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - st.mtime.unwrap() >= 3590, "mtime not old");
    sftp.unlink(&tree.path(&e.rel)).expect("unlink as v2xtest");
    assert!(!tree.remaining_files().contains(&e.rel));
    assert_eq!(tree.remaining_files().len(), 14);
    // and a now-empty dir can be removed too
    sftp.mkdir(&tree.path("scratch"), 0o755).expect("mkdir");
    sftp.rmdir(&tree.path("scratch")).expect("rmdir");
    drop(sftp);
    drop(sess);
    assert!(sshd.wait_for_log(
        &format!("Accepted password for {TEST_USER} from 127.0.0.1"),
        Duration::from_secs(2)
    ));

    // wrong password: rejected and logged
    let sess = connect(sshd.addr(), 5000);
    assert!(sess.userauth_password(TEST_USER, "wrong-password").is_err());
    assert!(!sess.authenticated());
    drop(sess);
    assert!(sshd.wait_for_log(
        &format!("Failed password for {TEST_USER} from 127.0.0.1"),
        Duration::from_secs(2)
    ));

    // public key auth from files (the sshd's own key, and an extra passphrase key)
    let sess = connect(sshd.addr(), 5000);
    let k = sshd.client_key();
    sess.userauth_pubkey_file(TEST_USER, Some(k.public_path()), k.private_path(), None)
        .expect("pubkey auth");
    assert!(sess.authenticated());
    assert!(sshd.wait_for_log("Accepted publickey for v2xtest", Duration::from_secs(2)));

    tree.assert_current_session_untouched();
    eprintln!("roundtrip: {:?}", t0.elapsed());
}

#[test]
fn passphrase_key_rsa_host_and_host_key_change() {
    let key = ClientKey::generate(Some("s3cret phrase"));
    let mut sshd = Sshd::start(
        SshdOptions::default()
            .address("127.0.0.3")
            .host_keys(&[KeyType::Rsa])
            .authorize(&key),
    );
    assert_eq!(sshd.host(), "127.0.0.3");
    let sess = connect(sshd.addr(), 5000);
    let (blob, _) = sess.host_key().expect("host key");
    assert_eq!(blob, sshd.host_key_blob(KeyType::Rsa).as_slice());
    assert!(
        sshd.host_key_public(KeyType::Rsa)
            .starts_with("ssh-rsa AAAA")
    );
    sess.userauth_pubkey_file(
        TEST_USER,
        Some(key.public_path()),
        key.private_path(),
        key.passphrase(),
    )
    .expect("passphrase key auth");
    assert!(sess.authenticated());
    drop(sess);

    // same address and port, new host key
    let old = sshd.known_hosts_lines();
    let port = sshd.port();
    let before = sshd.pids();
    assert!(!before.is_empty());
    sshd.restart_with_new_host_keys();
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.known_hosts_lines(), old);
    for p in &before {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "old sshd pid {p} still there"
        );
    }
    let sess = connect(sshd.addr(), 5000);
    let (blob, _) = sess.host_key().expect("host key");
    assert!(!known_blobs(&old).iter().any(|b| b == blob));
    assert!(
        known_blobs(&sshd.known_hosts_lines())
            .iter()
            .any(|b| b == blob)
    );
    drop(sess);

    // a second sshd has a different key
    let other = Sshd::start_default();
    assert_ne!(other.port(), sshd.port());
    assert_ne!(other.host_key_public(KeyType::Ed25519), "");
    sshd.stop();
    assert!(
        TcpStream::connect(sshd.addr()).is_err(),
        "stopped sshd still accepts"
    );
}

#[test]
fn remote_tree_generators() {
    let mut tree = RemoteTree::new();
    let s = Stamp::new(2021, 6, 9, 23, 59, 58);
    assert_eq!(s.mmitss(), "06092021_235958");
    assert_eq!(s.plus_secs(2).mmitss(), "06102021_000000");
    let z = tree.add_zip_session("Other_Name", s, 1000);
    assert_eq!(z.rel, "Other_Name_06092021_235958.zip");
    assert_eq!(z.element, None);
    assert!(
        std::fs::read(tree.path(&z.rel))
            .unwrap()
            .starts_with(b"PK\x03\x04")
    );
    let n = tree.add_file("Other_Name_06092021_235958x/notes.txt", b"hello\n");
    assert_eq!(n.element, None);
    let h = tree.add_file("Sess/Veh_hostBsmLog_06092021_000000.csv", b"x\n");
    assert_eq!(h.element, None);
    let m = tree.add_file(
        "Sess/sub/srmLog_Street_msgCountsLog_06092021_000000.csv",
        b"y\n",
    );
    assert_eq!(m.element, Some("msgCount"));
    assert_eq!(
        m.landing_rel(),
        "msgCount/srmLog_Street_msgCountsLog_06092021_000000.csv"
    );
    let hostile = tree.add_hostile_entries("Hostile_06092021_000000");
    assert_eq!(hostile.odd_files.len(), 8);
    assert!(hostile.odd_files.iter().any(|e| e.file_name().len() == 255));
    let fifo = std::fs::symlink_metadata(tree.path(&hostile.fifo)).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fifo.file_type().is_fifo());
    assert!(
        std::fs::symlink_metadata(tree.path(&hostile.symlink_to_dir))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    tree.make_fresh(&n.rel);
    let age = |rel: &str| {
        std::fs::symlink_metadata(tree.path(rel))
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap_or_default()
    };
    assert!(age(&n.rel) < Duration::from_secs(60));
    assert!(age("Sess") > Duration::from_secs(3000));
    assert!(age(&hostile.symlink_to_file) > Duration::from_secs(3000));
    // regular files only in the manifest; everything non-dir in remaining_files
    assert_eq!(tree.manifest().len(), 4 + 8);
    assert_eq!(tree.manifest_plain().len(), 4);
    assert_eq!(tree.remaining_files().len(), 4 + 8 + 4);
    // deterministic content
    let mut t2 = RemoteTree::new();
    let a1 = tree.add_session("X", s, 1, 500..=5_000);
    let a2 = t2.add_session("X", s, 1, 500..=5_000);
    assert_eq!(a1, a2);
    assert!(tree.outside_untouched());
    tree.assert_current_session_untouched();

    // local landing check
    let data = tempfile::tempdir().unwrap();
    let plain = tree.manifest_plain();
    for e in &plain {
        let dst = data.path().join("inter-1").join(e.landing_rel());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(tree.path(&e.rel), &dst).unwrap();
    }
    std::fs::write(data.path().join("inter-1/.state"), b"ignored").unwrap();
    assert_landed(data.path(), "inter-1", &plain);
    assert_eq!(
        walk_files(&data.path().join("inter-1")).len(),
        plain.len() + 1
    );
    std::fs::write(data.path().join("inter-1/extra.csv"), b"x").unwrap();
    let r = std::panic::catch_unwind(|| assert_landed(data.path(), "inter-1", &plain));
    assert!(r.is_err(), "extra file not detected");
}

#[test]
fn black_hole_and_closed_port() {
    let hole = BlackHole::start();
    let mut c = TcpStream::connect(hole.addr()).expect("connect black hole");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut b = [0u8; 1];
    let err = c.read(&mut b).expect_err("black hole must not send");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    // an SSH handshake against it times out
    let tcp = TcpStream::connect(hole.addr()).unwrap();
    let mut s = ssh2::Session::new().unwrap();
    s.set_tcp_stream(tcp);
    s.set_timeout(300);
    let t = Instant::now();
    assert!(s.handshake().is_err());
    assert!(t.elapsed() < Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(2);
    while hole.connections() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(hole.connections(), 2);

    let closed = closed_port();
    let e = TcpStream::connect(closed).expect_err("closed port accepted");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A server that sends `n` bytes (0, 1, 2, ...) to each connection, then closes.
fn byte_server(n: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut s, _)) = l.accept() else { return };
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let _ = s.write_all(&data);
        }
    });
    (addr, h)
}

fn read_all_timeout(addr: SocketAddr, timeout: Duration) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.kind())),
        }
    }
}

#[test]
fn cut_proxy_modes_on_plain_tcp() {
    // cut: exactly N bytes then EOF; second connection untouched
    let (srv, h) = byte_server(100_000);
    let p = CutProxy::start(srv, Some(1234), None);
    let (got, err) = read_all_timeout(p.addr(), Duration::from_secs(2));
    assert_eq!(got.len(), 1234, "{err:?}");
    let (got, err) = read_all_timeout(p.addr(), Duration::from_secs(2));
    assert_eq!((got.len(), err), (100_000, None));
    assert_eq!(p.connections(), 2);
    assert_eq!(p.faults_fired(), 1);
    drop(p);
    drop(h);

    // stall: N bytes, then silence with the socket open
    let (srv, _h) = byte_server(100_000);
    let p = CutProxy::start(srv, None, Some(777));
    let (got, err) = read_all_timeout(p.addr(), Duration::from_millis(300));
    assert_eq!(got.len(), 777);
    assert!(matches!(
        err,
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    ));
    drop(p);

    // trickle: after 10 bytes, 1 byte per 20 ms
    let (srv, _h) = byte_server(20);
    let p = CutProxy::start_with(
        srv,
        ProxyOptions {
            trickle: Some(Trickle {
                after_bytes_down: 10,
                byte_delay: Duration::from_millis(20),
            }),
            ..ProxyOptions::default()
        },
    );
    let t = Instant::now();
    let (got, err) = read_all_timeout(p.addr(), Duration::from_secs(2));
    assert_eq!((got.len(), err), (20, None));
    assert_eq!(got, (0..20u8).collect::<Vec<_>>());
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn cut_proxy_breaks_big_sftp_read() {
    let sshd = Sshd::start_default();
    let mut tree = RemoteTree::new();
    let big = tree.add_random_file(
        "Big_06092021_000000/Big_remoteBsmLog_06092021_000000.csv",
        4 << 20,
    );
    let proxy = CutProxy::start(sshd.addr(), Some(256 * 1024), None);

    let sess = connect(proxy.addr(), 5000);
    sess.userauth_password(TEST_USER, TEST_PASSWORD)
        .expect("auth through proxy");
    let sftp = sess.sftp().expect("sftp");
    let mut buf = Vec::new();
    let mut f = sftp.open(tree.path(&big.rel)).expect("open before the cut");
    let r = f.read_to_end(&mut buf);
    assert!(
        r.is_err(),
        "read of 4 MiB through a cut at 256 KiB succeeded"
    );
    drop(f);
    assert!(buf.len() < 4 << 20);
    assert_eq!(proxy.faults_fired(), 1);
    drop(sftp);
    drop(sess);

    // the next connection passes through untouched
    let sess = connect(proxy.addr(), 5000);
    sess.userauth_password(TEST_USER, TEST_PASSWORD)
        .expect("auth");
    let sftp = sess.sftp().expect("sftp");
    let mut buf = Vec::new();
    sftp.open(tree.path(&big.rel))
        .unwrap()
        .read_to_end(&mut buf)
        .expect("full read");
    assert_eq!(sha256_bytes(&buf), big.sha256);
    assert_eq!(proxy.connections(), 2);
}
