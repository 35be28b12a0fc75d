//! The HTTP server under the API: the accept loop, what one connection may cost, and the
//! graceful stop.
//!
//! A client that is slow or never finishes (one byte a second, or nothing at all) must not
//! take the file descriptors that scheduled jobs and authorised requests need. So:
//! - every connection must send a request's head within the configuration's `header_timeout`
//!   (hyper's header-read timeout; it also closes a keep-alive connection idle that long), and
//!   its body within as long again (`api`'s body reader);
//! - at most [`max_connections`] connections are open at once, a number kept well below the
//!   process's descriptor limit. A new connection beyond it closes the oldest open connection
//!   that is not answering an authorised request, one that never sent a valid token first:
//!   a client that is really there sends its request at once and is served long before a flood
//!   reaches it. Only when every connection is answering an authorised request is the new one
//!   refused (503 and closed).
//!
//! It never stops on a failed accept (out of descriptors, a connection reset before it was
//! taken): it waits a moment and goes on. On stop it accepts no more, lets each connection
//! finish the request it is answering, and returns when all are closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::shared::{now, Shared};

/// The most connections open at once, whatever the descriptor limit.
const MOST_CONNECTIONS: usize = 512;

/// Descriptors left to everything but connections: the runtime, the state file, and for each
/// job that may run (`max_parallel`) its database, journal files, archive and temp files, and
/// an S3 client's sockets.
fn reserved_descriptors(max_parallel: usize) -> usize {
    64 + 32 * max_parallel
}

/// How many connections may be open at once: what the descriptor limit (`RLIMIT_NOFILE`)
/// leaves once jobs have their share, at least 8 and at most [`MOST_CONNECTIONS`].
pub(crate) fn max_connections(max_parallel: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    soft.saturating_sub(reserved_descriptors(max_parallel))
        .clamp(8, MOST_CONNECTIONS)
}

/// One open connection, as the cap sees it. The API's token check finds it in each request's
/// extensions ([`Connection::authorised`]).
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    /// Authorised requests being answered on it now: it is not closed for a newcomer then.
    answering: AtomicUsize,
    /// A request on it carried a valid token (or no token is configured).
    ever_authorised: AtomicBool,
    /// Wakes its task to close it.
    close: Notify,
}

impl Connection {
    /// Marks an authorised request in progress on this connection until the guard is dropped.
    pub(crate) fn authorised(self: &Arc<Self>) -> Answering {
        self.ever_authorised.store(true, Ordering::SeqCst);
        self.answering.fetch_add(1, Ordering::SeqCst);
        Answering(self.clone())
    }
}

/// An authorised request being answered (see [`Connection::authorised`]).
pub(crate) struct Answering(Arc<Connection>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, oldest first.
struct Table {
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    max: usize,
    /// One permit per socket a connection may hold; a connection's task gives its permit back
    /// only once its socket is closed, so the accept loop never holds more than `max` (and
    /// the one it is deciding about) however fast a flood comes.
    sockets: Arc<Semaphore>,
    /// Connections closed or refused for the cap.
    shed: Warning,
    /// Failed accepts.
    failed: Warning,
}

/// A warning about something that happens in floods, logged at most every 10 s with how many
/// times it happened since it was last logged.
#[derive(Default)]
struct Warning {
    count: AtomicUsize,
    logged_at: AtomicI64,
}

impl Warning {
    /// Counts one; returns how many to log now, if it is time.
    fn count(&self) -> Option<usize> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let (t, last) = (now(), self.logged_at.load(Ordering::Relaxed));
        let due = t - last >= 10
            && self
                .logged_at
                .compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        due.then(|| {
            self.count.fetch_sub(n, Ordering::Relaxed);
            n
        })
    }
}

/// What [`Table::admit`] decided.
enum Admission {
    /// Room for it (after closing another, if it says so).
    Open(Arc<Connection>, Option<Arc<Connection>>),
    /// Every connection is answering an authorised request.
    Refused,
}

impl Table {
    /// Makes room for a new connection: `full` says no socket permit is free.
    fn admit(&self, full: bool) -> Admission {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = None;
        if full || open.len() >= self.max {
            // The oldest that is not answering an authorised request, never-authorised first.
            let idle = |c: &&Arc<Connection>| c.answering.load(Ordering::SeqCst) == 0;
            let victim = open
                .values()
                .filter(idle)
                .find(|c| !c.ever_authorised.load(Ordering::SeqCst))
                .or_else(|| open.values().find(idle))
                .map(|c| c.id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(c) => closed = Some(c),
                None => return Admission::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Connection {
            id,
            answering: AtomicUsize::new(0),
            ever_authorised: AtomicBool::new(false),
            close: Notify::new(),
        });
        open.insert(id, c.clone());
        Admission::Open(c, closed)
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Counts a connection shed for the cap, and warns about it (at most every 10 s).
    fn shed(&self, shared: &Shared) {
        if let Some(n) = self.shed.count() {
            shared.log.write(
                "warn",
                "serve.connections_full",
                &[
                    ("max_connections", self.max.into()),
                    ("shed", n.into()),
                    (
                        "detail",
                        "connections closed or refused: the oldest without an authorised request make room for new ones"
                            .into(),
                    ),
                ],
            );
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets the open connections
/// finish what they answer and returns when they are all closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let max = max_connections(shared.config().max_parallel);
    let table = Arc::new(Table {
        open: Mutex::default(),
        next_id: AtomicU64::new(0),
        max,
        sockets: Arc::new(Semaphore::new(max)),
        shed: Warning::default(),
        failed: Warning::default(),
    });
    let service = TowerToHyperService::new(router);
    // Each connection's task holds a sender: when all are dropped, every connection is closed.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let stream = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&shared, &table.failed, &e).await;
                    continue;
                }
            },
        };
        let free = table.sockets.clone().try_acquire_owned().ok();
        let (conn, closed) = match table.admit(free.is_none()) {
            Admission::Open(conn, closed) => (conn, closed),
            Admission::Refused => {
                table.shed(&shared);
                refuse(stream);
                continue;
            }
        };
        if let Some(c) = closed {
            table.shed(&shared);
            c.close.notify_one();
        }
        // No socket is accepted past the cap until the one closed for this one is gone: a
        // flood cannot outrun the closing and take the descriptors jobs need.
        let permit = match free {
            Some(permit) => permit,
            None => tokio::select! {
                _ = stopped(&mut stop) => break,
                permit = table.sockets.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            },
        };
        // Read per connection, so a reload's new timeout applies to the next ones.
        let timeout = shared.config().header_timeout();
        tokio::spawn(connection(
            stream,
            conn,
            service.clone(),
            timeout,
            table.clone(),
            stop.clone(),
            (alive.clone(), permit),
        ));
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Serves one connection until it ends, is closed for a newcomer, or the stop lets its
/// request finish.
async fn connection(
    stream: TcpStream,
    conn: Arc<Connection>,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    table: Arc<Table>,
    mut stop: watch::Receiver<bool>,
    held: (mpsc::Sender<()>, OwnedSemaphorePermit),
) {
    let marked = conn.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(marked.clone());
        hyper::service::Service::call(&service, req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Boxed so that it can be dropped (its socket closed) before the permit goes back.
    let mut served = Box::pin(builder.serve_connection(TokioIo::new(stream), service));
    let mut stopping = false;
    loop {
        tokio::select! {
            // An error here is the client's (a timeout, a reset, a malformed request): the
            // connection is over either way.
            _ = served.as_mut() => break,
            // Dropping the connection closes its socket.
            _ = conn.close.notified() => break,
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    // The socket is closed before its permit goes back.
    drop(served);
    table.remove(conn.id);
    drop(held);
}

/// Completes when the daemon stops (or whoever would tell it is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Answers a connection there is no room for, without waiting for it, and closes it.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"error":"too many connections: every one is answering an authorised request; retry in a moment","class":"busy"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    // A new socket's send buffer takes this whole; if not, the client gets only the close.
    let _ = stream.try_write(answer.as_bytes());
}

/// After a failed accept: a connection reset before it was taken is nothing; out of
/// descriptors (jobs took more than their share) waits a moment rather than spinning.
async fn accept_failed(shared: &Shared, warning: &Warning, e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    if let Some(n) = warning.count() {
        shared.log.write(
            "warn",
            "serve.accept_failed",
            &[("error", e.to_string().into()), ("times", n.into())],
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}
