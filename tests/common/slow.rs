//! A bandwidth-limited TCP proxy: keeps a download mid-file long enough for
//! a test to change the remote file under it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    bytes_down: AtomicU64,
    socks: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Proxy on 127.0.0.1:<free port> to `target` forwarding server→client at
/// most `bytes_per_sec` (client→server at full speed), every connection.
pub struct SlowProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl SlowProxy {
    pub fn start(target: SocketAddr, bytes_per_sec: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind slow proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut s = sh.socks.lock().expect("lock");
                    s.push(client.try_clone().expect("clone"));
                    s.push(server.try_clone().expect("clone"));
                }
                let up = {
                    let (c, s) = (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    );
                    std::thread::spawn(move || pump(c, s, None, None))
                };
                let sh2 = sh.clone();
                let down = std::thread::spawn(move || {
                    pump(server, client, Some(bytes_per_sec), Some(&sh2))
                });
                let mut t = sh.threads.lock().expect("lock");
                t.push(up);
                t.push(down);
            }
        });
        SlowProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>, sh: Option<&Shared>) {
    let chunk = rate.map_or(64 * 1024, |r| (r / 20).clamp(1, 64 * 1024) as usize);
    let mut buf = vec![0u8; chunk];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        if sh.is_some_and(|s| s.stop.load(Ordering::SeqCst)) {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        if let Some(r) = rate {
            // Sleep until `sent + n` bytes are due at `r` bytes per second.
            let due = Duration::from_secs_f64((sent + n as u64) as f64 / r as f64);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        sent += n as u64;
        if let Some(s) = sh {
            s.bytes_down.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.shared.socks.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = self
            .shared
            .threads
            .lock()
            .expect("lock")
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}
