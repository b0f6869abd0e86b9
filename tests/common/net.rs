//! Network faults on loopback, with std threads and sockets only.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An address on 127.0.0.1 where nothing listens (connect: refused). The port
/// was bound and released a moment ago, so another process taking it is
/// possible but unlikely.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
}

/// A listener that accepts TCP connections and never sends a byte (an SSH
/// client waits forever for the server banner). Connections stay open until drop.
pub struct BlackHole {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    /// Listen on 127.0.0.1:<free port>.
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind black hole");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (s, a, c) = (stop.clone(), accepted.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    a.fetch_add(1, Ordering::SeqCst);
                    c.lock().expect("lock").push(stream);
                }
            }
        });
        BlackHole {
            addr,
            stop,
            accepted,
            conns,
            thread: Some(thread),
        }
    }

    /// Listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Slow delivery: after `after_bytes_down` bytes server→client, forward one
/// byte per `byte_delay`.
#[derive(Clone, Copy, Debug)]
pub struct Trickle {
    /// Bytes forwarded at full speed first.
    pub after_bytes_down: u64,
    /// Delay before each later byte.
    pub byte_delay: Duration,
}

/// What a [`CutProxy`] does to the first `affected_connections` connections
/// (later ones pass through untouched). Thresholds count server→client bytes
/// of that connection. If several are set, the lowest threshold acts first
/// (cut and stall end the connection's forwarding).
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// After exactly N bytes down: close both sockets (client sees EOF/reset).
    pub cut_after_bytes_down: Option<u64>,
    /// After exactly N bytes down: stop forwarding both ways, keep sockets open.
    pub stall_after_bytes_down: Option<u64>,
    /// Trickle mode (see [`Trickle`]).
    pub trickle: Option<Trickle>,
    /// How many connections (in accept order) get the fault; default 1.
    pub affected_connections: usize,
    /// Server→client bandwidth cap in bytes per second, on every connection
    /// (keeps a download mid-file long enough to change the file under it).
    pub rate_down: Option<u64>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            cut_after_bytes_down: None,
            stall_after_bytes_down: None,
            trickle: None,
            affected_connections: 1,
            rate_down: None,
        }
    }
}

#[derive(Default)]
struct ProxyShared {
    stop: AtomicBool,
    accepted: AtomicUsize,
    faults: AtomicUsize,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    socks: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// TCP proxy on 127.0.0.1:<free port> to `target` that cuts, stalls or
/// trickles the server→client stream of its first connection(s).
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// Proxy with a cut and/or a stall threshold for the first connection.
    pub fn start(
        target: SocketAddr,
        cut_after_bytes_down: Option<u64>,
        stall_after_bytes_down: Option<u64>,
    ) -> CutProxy {
        CutProxy::start_with(
            target,
            ProxyOptions {
                cut_after_bytes_down,
                stall_after_bytes_down,
                ..ProxyOptions::default()
            },
        )
    }

    /// Plain pass-through proxy (counts connections and bytes).
    pub fn passthrough(target: SocketAddr) -> CutProxy {
        CutProxy::start_with(
            target,
            ProxyOptions {
                affected_connections: 0,
                ..ProxyOptions::default()
            },
        )
    }

    /// Proxy that forwards server→client at most `bytes_per_sec` on every
    /// connection, with no fault.
    pub fn throttled(target: SocketAddr, bytes_per_sec: u64) -> CutProxy {
        CutProxy::start_with(
            target,
            ProxyOptions {
                affected_connections: 0,
                rate_down: Some(bytes_per_sec),
                ..ProxyOptions::default()
            },
        )
    }

    /// Proxy with full options.
    pub fn start_with(target: SocketAddr, opts: ProxyOptions) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(ProxyShared::default());
        let sh = shared.clone();
        let accept_thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let idx = sh.accepted.fetch_add(1, Ordering::SeqCst);
                let faulty = idx < opts.affected_connections;
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut socks = sh.socks.lock().expect("lock");
                    socks.push(client.try_clone().expect("clone"));
                    socks.push(server.try_clone().expect("clone"));
                }
                let stalled = Arc::new(AtomicBool::new(false));
                let up = {
                    let (c, s, sh, st) = (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                        sh.clone(),
                        stalled.clone(),
                    );
                    std::thread::spawn(move || pump_up(c, s, &sh, &st))
                };
                let o = opts.clone();
                let sh2 = sh.clone();
                let down = std::thread::spawn(move || {
                    pump_down(
                        server,
                        client,
                        &sh2,
                        &stalled,
                        faulty.then_some(&o),
                        o.rate_down,
                    )
                });
                let mut threads = sh.threads.lock().expect("lock");
                threads.push(up);
                threads.push(down);
            }
        });
        CutProxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Listen address (give this to the client instead of the target).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many cuts/stalls/trickles have started.
    pub fn faults_fired(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }

    /// Total bytes forwarded server→client.
    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    /// Total bytes forwarded client→server.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        shut_down_proxy(
            &self.shared.stop,
            self.addr,
            self.accept_thread.take(),
            &self.shared.socks,
            &self.shared.threads,
        );
    }
}

/// Stops a test proxy: no new connection is accepted (the listener is woken
/// so its accept loop sees `stop`), every open socket is shut down, and
/// every forwarding thread is joined.
pub fn shut_down_proxy(
    stop: &AtomicBool,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    socks: &Mutex<Vec<TcpStream>>,
    threads: &Mutex<Vec<JoinHandle<()>>>,
) {
    stop.store(true, Ordering::SeqCst);
    wake(addr);
    if let Some(t) = accept {
        let _ = t.join();
    }
    for s in socks.lock().expect("lock").drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
    let threads: Vec<_> = threads.lock().expect("lock").drain(..).collect();
    for t in threads {
        let _ = t.join();
    }
}

fn idle_until_stop(sh: &ProxyShared) {
    while !sh.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pump_up(mut client: TcpStream, mut server: TcpStream, sh: &ProxyShared, stalled: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
        };
        if stalled.load(Ordering::SeqCst) {
            // swallow and hold: nothing reaches the server any more
            idle_until_stop(sh);
            return;
        }
        if server.write_all(&buf[..n]).is_err() {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        sh.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
    }
}

enum Fault {
    Cut,
    Stall,
    Trickle(Duration),
}

/// Act on a fault; `Some(delay)` means go on trickling, `None` means stop pumping.
fn fire(
    fault: Fault,
    server: &TcpStream,
    client: &TcpStream,
    sh: &ProxyShared,
    stalled: &AtomicBool,
) -> Option<Duration> {
    sh.faults.fetch_add(1, Ordering::SeqCst);
    match fault {
        Fault::Cut => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            None
        }
        Fault::Stall => {
            stalled.store(true, Ordering::SeqCst);
            idle_until_stop(sh);
            None
        }
        Fault::Trickle(d) => Some(d),
    }
}

fn pump_down(
    mut server: TcpStream,
    mut client: TcpStream,
    sh: &ProxyShared,
    stalled: &AtomicBool,
    opts: Option<&ProxyOptions>,
    rate: Option<u64>,
) {
    let mut plan: Vec<(u64, Fault)> = Vec::new();
    if let Some(o) = opts {
        if let Some(n) = o.cut_after_bytes_down {
            plan.push((n, Fault::Cut));
        }
        if let Some(n) = o.stall_after_bytes_down {
            plan.push((n, Fault::Stall));
        }
        if let Some(t) = o.trickle {
            plan.push((t.after_bytes_down, Fault::Trickle(t.byte_delay)));
        }
    }
    plan.sort_by_key(|(n, _)| *n);
    let mut plan = plan.into_iter();
    let mut next = plan.next();
    let mut sent: u64 = 0;
    let mut trickle: Option<Duration> = None;
    // Under a rate cap, small reads keep the pace smooth.
    let mut buf = vec![0u8; rate.map_or(64 * 1024, |r| (r / 20).clamp(1, 64 * 1024) as usize)];
    let started = Instant::now();
    // buf[pos..end] is read but not yet forwarded
    let (mut pos, mut end) = (0usize, 0usize);
    loop {
        // act on every threshold reached
        while next.as_ref().is_some_and(|(at, _)| sent >= *at) {
            let (_, fault) = next.take().expect("fault");
            match fire(fault, &server, &client, sh, stalled) {
                Some(d) => trickle = Some(d),
                None => return,
            }
            next = plan.next();
        }
        if pos == end {
            let n = match server.read(&mut buf) {
                Ok(0) => {
                    let _ = client.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                }
            };
            (pos, end) = (0, n);
        }
        // forward at most up to the next threshold
        let room = next.as_ref().map_or(u64::MAX, |(at, _)| at - sent);
        let take = (end - pos).min(usize::try_from(room).unwrap_or(usize::MAX));
        let head = &buf[pos..pos + take];
        let ok = match trickle {
            Some(d) => trickle_out(&mut client, head, d, sh),
            None => {
                if let Some(r) = rate {
                    // Wait until `sent + take` bytes are due at `r` bytes per second.
                    let due = Duration::from_secs_f64((sent + take as u64) as f64 / r as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let ok = client.write_all(head).is_ok();
                if ok {
                    sh.bytes_down.fetch_add(head.len() as u64, Ordering::SeqCst);
                }
                ok
            }
        };
        if !ok {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        sent += take as u64;
        pos += take;
    }
}

fn trickle_out(client: &mut TcpStream, data: &[u8], delay: Duration, sh: &ProxyShared) -> bool {
    for b in data {
        if sh.stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(delay);
        if client.write_all(std::slice::from_ref(b)).is_err() {
            return false;
        }
        sh.bytes_down.fetch_add(1, Ordering::SeqCst);
    }
    true
}
