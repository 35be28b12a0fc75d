//! A loopback TCP proxy that injects faults between a client (litevault) and a server (the S3
//! test server): connection resets, `503 Slow Down` answers, answers cut off part-way, a dead
//! server, and a bandwidth cap per connection (a far-away server).
//!
//! Faults are injected per CONNECTION, not per request: an HTTP client keeps connections alive
//! and sends many requests over one, so "the next connection" is the next one the client opens,
//! which may be several requests later (or, with a warm pool, not at all). A test that wants a
//! fault on a particular request must make sure the client opens a new connection for it (e.g. a
//! new process, or after [`FaultProxy::break_all`], which also cuts the connections already open).
//! The plan is decided in accept order, and with this precedence: `break_all`, then `reset_next`,
//! then `fail_next_503`; anything else is forwarded untouched (bytes are copied as they are, so
//! SigV4 signatures, which cover the `Host` header, stay valid: the client signs for the proxy's
//! address and the server checks what it receives).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most request-body bytes a 503 answer reads and discards (beyond it, it just closes).
const MAX_DISCARD: u64 = 64 << 20;
/// The most bytes of a request head read before a 503 answer.
const MAX_HEAD: usize = 64 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy; stops (and cuts every connection through it) when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:port`, where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    plan: Mutex<Plan>,
    accepted: AtomicUsize,
    injected: AtomicUsize,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Connections being forwarded: (client side, upstream side), so they can be cut.
    live: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

#[derive(Default)]
struct Plan {
    reset: usize,
    fail_503: usize,
    /// Connections still to cut, and after how many bytes of the server's answer.
    cut: usize,
    cut_after: u64,
    broken: bool,
    /// Bytes a second of each connection's answers (0: no cap).
    rate: u64,
}

#[derive(Clone, Copy)]
enum Action {
    /// Forward, the answers at most `rate` bytes a second (0: as fast as they come) and cut
    /// off with a reset after `limit` bytes (`None`: whole).
    Forward {
        rate: u64,
        limit: Option<u64>,
    },
    Reset,
    SlowDown,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards each accepted connection to `upstream` (bidirectional
    /// copy, two threads per connection), in a background thread that stops when the proxy is
    /// dropped.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::new(Plan::default()),
            accepted: AtomicUsize::new(0),
            injected: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        });
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("faultproxy-{}", addr.port()))
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn fault proxy thread");
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The next `n` accepted connections are reset: accept, read a little, then close with
    /// SO_LINGER 0 (a TCP RST) without forwarding. Adds to any resets still planned.
    pub fn reset_next(&self, n: usize) {
        self.plan().reset += n;
    }

    /// The next `n` accepted connections get `HTTP/1.1 503 Slow Down` with an S3 XML error body
    /// (`<Error><Code>SlowDown</Code>...`) and `Connection: close`, without forwarding. The request
    /// head is read first, and the body too when it has a `Content-Length` of at most 64 MiB (not
    /// when the client waits for `100 Continue`: then it gets the 503 instead), and the proxy reads
    /// until the client closes, so the client sees the answer rather than a broken pipe.
    pub fn fail_next_503(&self, n: usize) {
        self.plan().fail_503 += n;
    }

    /// From now on every new connection is reset (a dead server) until [`FaultProxy::heal`]; the
    /// connections already being forwarded are cut at once.
    pub fn break_all(&self) {
        self.plan().broken = true;
        self.shared.cut_live();
    }

    /// The next `n` forwarded connections get `bytes` of the server's answers, then a reset
    /// (an answer cut off part-way: its head arrived, its body breaks). Counted as injected.
    pub fn cut_next_after(&self, n: usize, bytes: u64) {
        let mut p = self.plan();
        p.cut += n;
        p.cut_after = bytes;
    }

    /// Caps the answers of every connection accepted from now on at `bytes_per_sec` (0: none),
    /// as a far-away server does: a client reading one stream at a time gets that much.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.plan().rate = bytes_per_sec;
    }

    /// Undoes [`FaultProxy::break_all`] (resets and 503s planned with `*_next` stay planned).
    pub fn heal(&self) {
        self.plan().broken = false;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections that got a fault (reset or 503) instead of being forwarded.
    pub fn injected(&self) -> usize {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.shared.plan.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        self.shared.cut_live();
    }
}

impl Shared {
    fn cut_live(&self) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (client, upstream) in live.values() {
            set_linger_zero(client);
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }

    fn decide(&self) -> Action {
        let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let action = if plan.broken {
            Action::Reset
        } else if plan.reset > 0 {
            plan.reset -= 1;
            Action::Reset
        } else if plan.fail_503 > 0 {
            plan.fail_503 -= 1;
            Action::SlowDown
        } else if plan.cut > 0 {
            plan.cut -= 1;
            Action::Forward {
                rate: plan.rate,
                limit: Some(plan.cut_after),
            }
        } else {
            Action::Forward {
                rate: plan.rate,
                limit: None,
            }
        };
        if !matches!(action, Action::Forward { limit: None, .. }) {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        action
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = conn else {
            // EMFILE and the like: back off a little instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        // Decided here, in accept order, before the client can see anything.
        let action = shared.decide();
        let sh = Arc::clone(&shared);
        let _ = std::thread::Builder::new()
            .name("faultproxy-conn".into())
            .spawn(move || match action {
                Action::Reset => reset(client),
                Action::SlowDown => slow_down(client),
                Action::Forward { rate, limit } => forward(client, &sh, rate, limit),
            });
    }
}

/// Reads a little (waiting up to 1 s for the request to arrive), then closes with a RST.
fn reset(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 256];
    let _ = client.read(&mut buf);
    set_linger_zero(&client);
    drop(client);
}

fn slow_down(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if buf.len() >= MAX_HEAD {
            break None;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => break None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end.unwrap_or(buf.len())]).into_owned();
    let method = head.split(' ').next().unwrap_or_default().to_string();
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            content_length = value.trim().parse().ok();
        } else if name == "expect" && value.trim().eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        }
    }
    if let (Some(end), Some(len), false) = (head_end, content_length, expect_continue) {
        if len <= MAX_DISCARD {
            let already = (buf.len() - end) as u64;
            if len > already {
                let _ = std::io::copy(&mut (&client).take(len - already), &mut std::io::sink());
            }
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message>\
                <RequestId>faultproxy</RequestId></Error>";
    let mut resp = format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: faultproxy\r\nRetry-After: 0\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        resp.push_str(body);
    }
    if client
        .write_all(resp.as_bytes())
        .and_then(|()| client.flush())
        .is_err()
    {
        return;
    }
    let _ = client.shutdown(Shutdown::Write);
    // Lingering close: whatever the client still sends (a body we did not read) is read and
    // dropped until it closes, so the kernel does not answer it with a RST that could destroy
    // the 503 before the client reads it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut drained: u64 = 0;
    while Instant::now() < deadline && drained <= MAX_DISCARD {
        match client.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => drained += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn forward(client: TcpStream, shared: &Arc<Shared>, rate: u64, limit: Option<u64>) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) else {
        // Upstream down: the client sees what it would see from a dead server.
        set_linger_zero(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (c2, u2));
    // The proxy may have been broken or dropped between the decision and the registration.
    if shared.stopping.load(Ordering::SeqCst) || shared.plan.lock().map(|p| p.broken).unwrap_or(false) {
        set_linger_zero(&client);
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }
    let (Ok(client_r), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("faultproxy-down".into())
        .spawn(move || {
            if rate == 0 && limit.is_none() {
                pipe(upstream, client)
            } else {
                pipe_shaped(upstream, client, rate, limit)
            }
        })
        .ok();
    pipe(client_r, upstream_w);
    if let Some(t) = back {
        let _ = t.join();
    }
    shared.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Copies `from` to `to` until EOF (then half-closes `to`) or an error (then closes both).
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    match std::io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` at most `rate` bytes a second (0: no cap); after `limit` bytes (if
/// any) both are cut with a reset.
fn pipe_shaped(mut from: TcpStream, mut to: TcpStream, rate: u64, limit: Option<u64>) {
    // When the link is free again: idle time earns no burst.
    let mut free_at = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let room = limit.map_or(buf.len() as u64, |l| (l - sent).min(buf.len() as u64));
        if room == 0 {
            set_linger_zero(&to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        let n = match from.read(&mut buf[..room as usize]) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if rate > 0 {
            free_at = free_at.max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = free_at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// SO_LINGER {on, 0}: closing the socket then sends a RST instead of a FIN.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
))]
fn set_linger_zero(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
    }
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        not(any(target_arch = "mips", target_arch = "mips64", target_arch = "sparc64"))
    ))]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (1, 13);
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        not(any(target_arch = "mips", target_arch = "mips64", target_arch = "sparc64"))
    )))]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (0xffff, 0x80);
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid open socket and a pointer to a properly sized `struct linger` that lives
    // across the call.
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET_SO_LINGER.0,
            SOL_SOCKET_SO_LINGER.1,
            &linger as *const Linger as *const std::ffi::c_void,
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

/// Elsewhere a close only sends a RST when unread data is left in the socket.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
)))]
fn set_linger_zero(_s: &TcpStream) {}
