//! Shipping: what the pollers of every [`super::Replicator`] in the process hand over (bases
//! and sealed segments) is written to the locations by one small pool of threads.
//!
//! Each replicator has a [`Shipper`]: a queue of its shipments, written in order, one at a time
//! (a stream's segments continue its base). The pool's threads take whole queues in turn (a
//! few shipments each, then the next queue): a process replicating a hundred databases needs a
//! few shipping threads, not a hundred. A shipment the location refuses stays first in its
//! queue and is tried again after the replicator's retry pause, without holding a thread
//! meanwhile; one given up (too much waiting, or told to at the end of a run) drops its stream
//! whole (its sequence would have a hole) and sets `lost`: the poller takes a new base.
//!
//! The threads are started as they are needed, at most [`WORKERS`], and run at background
//! priority: the pollers must read the WAL before it moves on; shipping can wait.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::status::ReplicateStatus;
use crate::error::{Error, Result};
use crate::format::segment;
use crate::location::Location;
use crate::ops::backup::{self, BackupOptions};
use crate::ops::Context;
use crate::progress::NoProgress;

/// The most shipping threads the process runs (each writes one queue at a time).
pub(super) const WORKERS: usize = 8;

/// Shipments taken from one queue before the thread moves to the next.
const TURN: usize = 8;

/// Which stream the shipper writes, and which it gave up.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// The stream being written and its base's name.
    pub(super) current: Option<(u64, String)>,
    /// A stream given up (its sequence would have a hole).
    pub(super) dropped: Option<u64>,
}

/// What the poller hands the shipper, in order.
pub(super) enum Shipment {
    /// A stream's base.
    Base { stream: u64, base: NewBase },
    /// A segment of the stream whose base came last.
    Segment(Sealed),
}

/// A stream's base, as the shipper gets it.
pub(super) enum NewBase {
    /// Written already (under the poller's read transaction): its archive's name.
    Written(String),
    /// A private copy of the database at one transaction, to be backed up as the base.
    Copy {
        /// The copy's directory, removed once it is backed up (or given up).
        _dir: tempfile::TempDir,
        path: PathBuf,
        of: backup::CopyOf,
    },
}

/// A segment sealed by the poller, waiting for the shipper.
pub(super) struct Sealed {
    pub(super) builder: segment::Builder,
    pub(super) stream: u64,
    pub(super) seq: u64,
    pub(super) page_size: u32,
    pub(super) prefix: bool,
    pub(super) transactions: u64,
}

/// What the poller and the shipper tell each other.
#[derive(Default)]
pub(super) struct ShipFlags {
    /// Bytes sealed and not written yet.
    pub(super) waiting: AtomicUsize,
    /// Copied bases handed over and not written (or given up) yet.
    pub(super) bases: AtomicUsize,
    /// Set when waiting segments were dropped (the location failed too long): a gap.
    pub(super) lost: AtomicBool,
    /// Set to make the shipper give up retrying (at the end of a run, after a deadline).
    pub(super) give_up: AtomicBool,
    /// Set when a copied base could not be backed up: the next base is taken the slow way
    /// (under a read transaction), whose error the poller sees.
    pub(super) copy_failed: AtomicBool,
}

impl ShipFlags {
    /// Something handed over is not written yet.
    pub(super) fn busy(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0 || self.bases.load(Ordering::SeqCst) > 0
    }
}

/// What writing a replicator's shipments needs.
pub(super) struct Job {
    pub(super) ctx: Context,
    pub(super) loc: Arc<dyn Location>,
    pub(super) name: String,
    pub(super) status: Arc<Mutex<ReplicateStatus>>,
    pub(super) written: Arc<Mutex<Written>>,
    /// Bytes waiting past which the waiting stream is given up.
    pub(super) max: usize,
    pub(super) enc: Option<crate::format::crypt::Encryption>,
    pub(super) base_opts: BackupOptions,
    pub(super) retry: Duration,
}

/// One replicator's queue of shipments, written in order by the pool.
pub(super) struct Shipper {
    queue: Arc<Queue>,
    /// Shared with the poller.
    pub(super) flags: Arc<ShipFlags>,
}

struct Queue {
    job: Job,
    flags: Arc<ShipFlags>,
    state: Mutex<QueueState>,
    /// Told when the queue is empty and no thread holds it.
    settled: Condvar,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Shipment>,
    /// The queue is in the pool's lists or in a thread's hands.
    scheduled: bool,
    /// Writing one of its shipments panicked: it takes nothing more.
    dead: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shipper {
    /// A new, empty queue writing with `job`.
    pub(super) fn new(job: Job) -> Shipper {
        let flags = Arc::new(ShipFlags::default());
        Shipper {
            queue: Arc::new(Queue {
                job,
                flags: flags.clone(),
                state: Mutex::default(),
                settled: Condvar::new(),
            }),
            flags,
        }
    }

    /// Hands `shipment` over (it is written after everything handed over before it).
    pub(super) fn send(&self, shipment: Shipment) -> Result<()> {
        let mut st = lock(&self.queue.state);
        if st.dead {
            return Err(Error::InvalidOption("the shipping thread stopped".into()));
        }
        st.items.push_back(shipment);
        if !st.scheduled {
            st.scheduled = true;
            drop(st);
            pool().schedule(self.queue.clone());
        }
        Ok(())
    }

    /// Writing a shipment failed in a way that stops this queue (a bug): nothing more is
    /// written through it.
    pub(super) fn dead(&self) -> bool {
        lock(&self.queue.state).dead
    }

    /// Waits until everything handed over is written or given up (after `give_up`, each
    /// shipment the location refuses is given up at its next try).
    pub(super) fn wait_settled(&self) {
        let mut st = lock(&self.queue.state);
        while st.scheduled || !st.items.is_empty() {
            st = self
                .queue
                .settled
                .wait_timeout(st, Duration::from_millis(100))
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }
}

impl Queue {
    /// Writes a few shipments; returns when the queue wants a thread again (`None`: it is empty
    /// and no longer scheduled).
    fn turn(&self) -> Option<Instant> {
        for _ in 0..TURN {
            let item = {
                let mut st = lock(&self.state);
                match st.items.pop_front() {
                    Some(item) => item,
                    None => {
                        st.scheduled = false;
                        self.settled.notify_all();
                        return None;
                    }
                }
            };
            let tried = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.job.attempt(item, &self.flags)
            }));
            match tried {
                Ok(None) => {}
                Ok(Some(again)) => {
                    lock(&self.state).items.push_front(again);
                    return Some(Instant::now() + self.job.retry);
                }
                Err(_) => {
                    let mut st = lock(&self.state);
                    st.dead = true;
                    st.scheduled = false;
                    let left: Vec<Shipment> = st.items.drain(..).collect();
                    drop(st);
                    for item in left {
                        if let Shipment::Segment(seg) = item {
                            self.job.forget(seg.transactions);
                        }
                    }
                    self.flags.waiting.store(0, Ordering::SeqCst);
                    self.flags.bases.store(0, Ordering::SeqCst);
                    self.flags.lost.store(true, Ordering::SeqCst);
                    self.job
                        .update(|s| s.last_error = Some("the shipping thread stopped (a bug)".into()));
                    self.settled.notify_all();
                    return None;
                }
            }
        }
        Some(Instant::now())
    }
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut ReplicateStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn written(&self, f: impl FnOnce(&mut Written)) {
        if let Ok(mut w) = self.written.lock() {
            f(&mut w);
        }
    }

    /// Transactions that will not be shipped are no longer waiting.
    fn forget(&self, transactions: u64) {
        self.update(|s| {
            s.pending = s.pending.saturating_sub(transactions);
            if s.pending == 0 {
                s.oldest_pending_ms = None;
            }
        });
    }

    /// Writes `item` once. `Some(item)`: the location refused it and it is to be tried again;
    /// `None`: written, or given up (then its stream is dropped and `lost` set).
    fn attempt(&self, item: Shipment, flags: &ShipFlags) -> Option<Shipment> {
        let over = || flags.waiting.load(Ordering::SeqCst) > self.max || flags.give_up.load(Ordering::SeqCst);
        match item {
            Shipment::Base {
                stream,
                base: NewBase::Written(name),
            } => {
                self.written(|w| w.current = Some((stream, name)));
                None
            }
            Shipment::Base {
                stream,
                base: NewBase::Copy { _dir, path, of },
            } => {
                let name = match backup::backup_as(&self.ctx, &path, Some(&of), &self.base_opts, &NoProgress)
                {
                    Ok(report) => {
                        let name = report
                            .archive
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        self.update(|s| {
                            s.bases += 1;
                            s.base = Some(name.clone());
                            s.last_error = None;
                        });
                        Some(name)
                    }
                    Err(e) => {
                        self.update(|s| s.last_error = Some(e.to_string()));
                        // Only the location's failures are waited out; anything else (damage, a
                        // copy that cannot be read) is not cured by waiting: the next base is
                        // taken the slow way, where the poller sees the error.
                        let location =
                            matches!(e, Error::Remote { .. } | Error::Io { .. } | Error::NoSpace { .. });
                        if location && !over() {
                            return Some(Shipment::Base {
                                stream,
                                base: NewBase::Copy { _dir, path, of },
                            });
                        }
                        flags.copy_failed.store(true, Ordering::SeqCst);
                        None
                    }
                };
                if name.is_none() {
                    flags.lost.store(true, Ordering::SeqCst);
                }
                // The copy is removed before the poller may start the next one beside it.
                drop(_dir);
                self.written(|w| match name {
                    Some(name) => w.current = Some((stream, name)),
                    None => {
                        w.current = None;
                        w.dropped = Some(stream);
                    }
                });
                // Last: the poller may take the next base once this one is settled.
                flags.bases.fetch_sub(1, Ordering::SeqCst);
                None
            }
            Shipment::Segment(mut seg) => {
                let bytes = seg.builder.bytes();
                let mut base = None;
                self.written(|w| {
                    base = w
                        .current
                        .as_ref()
                        .filter(|(id, _)| *id == seg.stream && w.dropped != Some(seg.stream))
                        .map(|(_, name)| name.clone());
                });
                match base {
                    Some(base) => match self.write(&mut seg, &base) {
                        Ok(()) => {}
                        Err(e) => {
                            self.update(|s| s.last_error = Some(e.to_string()));
                            if !over() {
                                return Some(Shipment::Segment(seg));
                            }
                            self.written(|w| w.dropped = Some(seg.stream));
                            flags.lost.store(true, Ordering::SeqCst);
                            self.forget(seg.transactions);
                        }
                    },
                    None => self.forget(seg.transactions),
                }
                flags.waiting.fetch_sub(bytes, Ordering::SeqCst);
                None
            }
        }
    }

    /// Writes one segment (once) and counts it.
    fn write(&self, seg: &mut Sealed, base: &str) -> Result<()> {
        let bytes = seg.builder.bytes();
        let last = seg.builder.last().cloned();
        seg.builder.write(
            self.loc.as_ref(),
            &self.name,
            base,
            seg.seq,
            seg.page_size,
            seg.prefix,
            self.enc.as_ref(),
        )?;
        self.update(|s| {
            if let Some(c) = &last {
                s.last_txid = c.txid;
                s.last_shipped_ms = Some(c.time_ms);
            }
            s.shipped += seg.transactions;
            s.pending = s.pending.saturating_sub(seg.transactions);
            // What still waits was read after this segment's last.
            s.oldest_pending_ms = (s.pending > 0).then(|| last.as_ref().map_or(0, |c| c.time_ms));
            s.segments += 1;
            s.bytes += bytes as u64;
            s.last_error = None;
        });
        Ok(())
    }
}

/// The process's shipping threads and the queues waiting for them.
struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

#[derive(Default)]
struct PoolState {
    /// Queues with shipments to write now, in turn.
    ready: VecDeque<Arc<Queue>>,
    /// Queues whose first shipment is to be tried again at a time.
    later: Vec<(Instant, Arc<Queue>)>,
    /// Threads started.
    workers: usize,
    /// Threads waiting for a queue.
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::default(),
        wake: Condvar::new(),
    })
}

impl Pool {
    /// Puts `queue` in line; starts a thread when none is free for it.
    fn schedule(&'static self, queue: Arc<Queue>) {
        let mut st = lock(&self.state);
        st.ready.push_back(queue);
        if st.idle == 0 && st.workers < WORKERS {
            let started = std::thread::Builder::new()
                .name("replicate-ship".into())
                .spawn(move || self.work());
            if started.is_ok() {
                st.workers += 1;
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// A shipping thread: takes queues in turn, forever.
    fn work(&'static self) {
        crate::priority::lower();
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut i = 0;
            while i < st.later.len() {
                if st.later[i].0 <= now {
                    let (_, q) = st.later.swap_remove(i);
                    st.ready.push_back(q);
                } else {
                    i += 1;
                }
            }
            if let Some(queue) = st.ready.pop_front() {
                drop(st);
                let again = queue.turn();
                st = lock(&self.state);
                if let Some(at) = again {
                    if at > Instant::now() {
                        st.later.push((at, queue));
                        // An idle thread waits for the earliest retry.
                        self.wake.notify_one();
                    } else {
                        st.ready.push_back(queue);
                    }
                }
                continue;
            }
            let wait = st
                .later
                .iter()
                .map(|(at, _)| at.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(3600));
            st.idle += 1;
            st = self
                .wake
                .wait_timeout(st, wait)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
            st.idle -= 1;
        }
    }
}
