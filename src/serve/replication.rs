//! The replicators the daemon runs (`replicate = "1s"` per database), all of them on a few
//! threads: up to [`POLLERS`] polling threads each take their share of the replicators in turn
//! (each when its pause is over: a couple of milliseconds while its database is written, up to
//! 100 ms when idle), and the process's shipping pool ([`crate::ops::replicate`]) writes what
//! they hand over. A hundred databases cost a few threads, not two hundred. A replicator is
//! kept across reloads while its database's path, location and interval stay, restarted when
//! they change, and stopped with a last shipment (on a thread of its own, all at once at
//! shutdown). Their status feeds `/api/backup/status`, `/metrics` and `/healthz`.
//!
//! A poller reads one replicator at a time: a base copied for one database (4 MiB between two
//! looks at its WAL) delays the looks at the others sharing that poller by as long.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::{Config, DatabaseConfig};
use super::log::LogFormat;
use crate::ops::replicate::{now_ms, ReplicateOptions, ReplicateStatus, Replicator};

/// The most polling threads the daemon runs.
pub(crate) const POLLERS: usize = 2;

/// How long a replicator that could not open its database waits before it tries again (the
/// database may come back, or appear).
const RETRY_OPEN: Duration = Duration::from_secs(5);

/// What identifies a replicator: a change restarts it.
type Key = (PathBuf, PathBuf, Duration);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a replicator shares with the API and with whoever stops it.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    status: Mutex<Option<Arc<Mutex<ReplicateStatus>>>>,
    error: Mutex<Option<String>>,
    /// Set (and told) once it has stopped, its last shipment made.
    done: Mutex<bool>,
    done_cv: Condvar,
}

impl Shared {
    fn set_error(&self, e: Option<String>) {
        *lock(&self.error) = e;
    }

    fn set_done(&self) {
        *lock(&self.done) = true;
        self.done_cv.notify_all();
    }

    fn wait_done(&self) {
        let mut done = lock(&self.done);
        while !*done {
            done = self.done_cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Running {
    key: Key,
    shared: Arc<Shared>,
    started: i64,
}

/// One database's replication, as the API shows it.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) status: Option<ReplicateStatus>,
    pub(crate) error: Option<String>,
    pub(crate) lag_secs: f64,
    /// Seconds since the replicator started (a first base may take a while).
    pub(crate) running_secs: i64,
}

impl View {
    pub(crate) fn json(&self) -> Value {
        serde_json::json!({
            "lag_seconds": self.lag_secs,
            "error": self.error,
            "status": self.status,
        })
    }
}

/// A replicator in a poller's hands.
struct Slot {
    db: DatabaseConfig,
    interval: Duration,
    ctx: crate::ops::Context,
    log: LogFormat,
    shared: Arc<Shared>,
    /// `None` until its database could be opened.
    rep: Option<Replicator>,
    /// When it is to be looked at again.
    next: Instant,
}

impl Slot {
    /// Opens the database (when it is not yet) or takes one step of replication.
    fn step(&mut self) {
        let now = Instant::now();
        if let Some(rep) = self.rep.as_mut() {
            let (log, name) = (self.log, &self.db.name);
            let pause = rep.tick(&mut |e| {
                log.write(
                    "warn",
                    "replicate.error",
                    &[("database", name.clone().into()), ("error", e.into())],
                );
            });
            self.next = Instant::now() + pause;
            return;
        }
        let mut opts = ReplicateOptions::new(&self.db.location);
        opts.name = Some(self.db.name.clone());
        opts.interval = self.interval;
        opts.encrypt = self.db.encrypt.clone();
        match Replicator::new(&self.ctx, &self.db.path, opts) {
            Ok(rep) => {
                *lock(&self.shared.status) = Some(rep.status_handle());
                self.shared.set_error(None);
                self.log.write(
                    "info",
                    "replicate.start",
                    &[
                        ("database", self.db.name.clone().into()),
                        ("location", rep.status().location.into()),
                    ],
                );
                self.rep = Some(rep);
                self.next = now;
            }
            Err(e) => {
                self.failed(&e.to_string());
                self.next = now + RETRY_OPEN;
            }
        }
    }

    fn failed(&self, e: &str) {
        self.log.write(
            "error",
            "replicate.failed",
            &[("database", self.db.name.clone().into()), ("error", e.into())],
        );
        self.shared.set_error(Some(e.to_string()));
    }

    /// Stops it: reads and ships what was committed last (within the replicator's own 30 s) on
    /// a thread of its own, so that the poller goes on with the others.
    fn finish(self) {
        let Some(rep) = self.rep else {
            self.shared.set_done();
            return;
        };
        let cell = Arc::new(Mutex::new(Some(rep)));
        let (theirs, db, log, shared) = (cell.clone(), self.db.clone(), self.log, self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name("replicate-stop".into())
            .spawn(move || {
                if let Some(rep) = lock(&theirs).take() {
                    last_shipment(rep, &db, log, &shared);
                }
            });
        if spawned.is_err() {
            // No thread to be had: here (the others of this poller wait meanwhile).
            if let Some(rep) = lock(&cell).take() {
                last_shipment(rep, &self.db, self.log, &self.shared);
            }
        }
    }
}

/// A replicator's last shipment, then it is done (even when that panics: a stop must end).
fn last_shipment(mut rep: Replicator, db: &DatabaseConfig, log: LogFormat, shared: &Shared) {
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rep.finish(Duration::from_secs(30))
    }))
    .unwrap_or_else(|_| {
        Err(crate::error::Error::InvalidOption(
            "the last shipment stopped on an internal error (a bug)".into(),
        ))
    });
    match finished {
        Ok(status) => log.write(
            "info",
            "replicate.stop",
            &[
                ("database", db.name.clone().into()),
                ("shipped", status.shipped.into()),
                ("pending", status.pending.into()),
                ("gaps", status.gaps.into()),
            ],
        ),
        Err(e) => {
            log.write(
                "error",
                "replicate.failed",
                &[
                    ("database", db.name.clone().into()),
                    ("error", e.to_string().into()),
                ],
            );
            shared.set_error(Some(e.to_string()));
        }
    }
    shared.set_done();
}

/// A polling thread's mailbox: the replicators given to it, and a poke (one of its replicators
/// was told to stop).
#[derive(Default)]
struct Inbox {
    new: Vec<Slot>,
    poked: bool,
}

/// A polling thread, as the daemon sees it.
#[derive(Default)]
struct Poller {
    inbox: Mutex<Inbox>,
    wake: Condvar,
    /// Replicators it runs.
    count: AtomicUsize,
}

impl Poller {
    fn poke(&self) {
        lock(&self.inbox).poked = true;
        self.wake.notify_one();
    }

    /// Runs its replicators, each when its pause is over, forever.
    fn run(&self) {
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            let now = Instant::now();
            let mut i = 0;
            while i < slots.len() {
                if slots[i].shared.stop.load(Ordering::SeqCst) {
                    let slot = slots.swap_remove(i);
                    self.count.fetch_sub(1, Ordering::SeqCst);
                    slot.finish();
                    continue;
                }
                if slots[i].next <= now {
                    let slot = &mut slots[i];
                    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.step()));
                    if stepped.is_err() {
                        // A bug, not the database's doing: this replicator starts over (a new
                        // base) after a pause; the others go on.
                        slot.rep = None;
                        slot.failed("the replicator stopped on an internal error (a bug); starting over");
                        slot.next = Instant::now() + RETRY_OPEN;
                    }
                }
                i += 1;
            }
            let wait = slots
                .iter()
                .map(|s| s.next.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(3600));
            let mut inbox = lock(&self.inbox);
            if inbox.new.is_empty() && !inbox.poked && !wait.is_zero() {
                inbox = self
                    .wake
                    .wait_timeout(inbox, wait)
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            inbox.poked = false;
            slots.append(&mut inbox.new);
        }
    }
}

/// The daemon's replicators, by database name, and the threads that poll them.
#[derive(Default)]
pub(crate) struct Replicas {
    running: Mutex<BTreeMap<String, Running>>,
    /// Started as replicators are added, at most [`POLLERS`].
    pollers: Mutex<Vec<Arc<Poller>>>,
}

impl Replicas {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Running>> {
        lock(&self.running)
    }

    /// Starts the replicators `config` asks for and stops the others (each stop ships what
    /// was read, within the replicator's own 30 s).
    pub(crate) fn apply(&self, config: &Config, log: LogFormat) {
        let wanted: BTreeMap<String, (Key, DatabaseConfig)> = config
            .databases
            .iter()
            .filter_map(|d| {
                d.replicate.map(|i| {
                    (
                        d.name.clone(),
                        ((d.path.clone(), d.location.clone(), i), d.clone()),
                    )
                })
            })
            .collect();
        let stale: Vec<Running> = {
            let mut running = self.lock();
            let names: Vec<String> = running
                .iter()
                .filter(|(name, r)| wanted.get(*name).is_none_or(|(k, _)| *k != r.key))
                .map(|(n, _)| n.clone())
                .collect();
            names.iter().filter_map(|n| running.remove(n)).collect()
        };
        self.stop(stale);
        for (name, (key, db)) in wanted {
            if self.lock().contains_key(&name) {
                continue;
            }
            let shared = Arc::new(Shared::default());
            let slot = Slot {
                interval: key.2,
                db,
                ctx: config.context(),
                log,
                shared: shared.clone(),
                rep: None,
                next: Instant::now(),
            };
            self.give(slot);
            self.lock().insert(
                name,
                Running {
                    key,
                    shared,
                    started: now_ms(),
                },
            );
        }
    }

    /// Gives `slot` to the poller with the fewest replicators (a new one while there are
    /// fewer than [`POLLERS`] and each has some).
    fn give(&self, slot: Slot) {
        let mut pollers = lock(&self.pollers);
        let least = pollers
            .iter()
            .min_by_key(|p| p.count.load(Ordering::SeqCst))
            .filter(|p| p.count.load(Ordering::SeqCst) == 0 || pollers.len() >= POLLERS)
            .cloned();
        let poller = match least {
            Some(p) => p,
            None => {
                let p = Arc::new(Poller::default());
                let theirs = p.clone();
                // Not background priority: a poller must keep up with the application's WAL
                // (the shipping threads lower their own).
                let started = std::thread::Builder::new()
                    .name("replicate-poll".into())
                    .spawn(move || theirs.run());
                match started {
                    Ok(_) => {
                        pollers.push(p.clone());
                        p
                    }
                    Err(e) => match pollers.first() {
                        Some(p) => p.clone(),
                        None => {
                            slot.failed(&format!("no thread to poll with: {e}"));
                            slot.shared.set_done();
                            return;
                        }
                    },
                }
            }
        };
        poller.count.fetch_add(1, Ordering::SeqCst);
        lock(&poller.inbox).new.push(slot);
        poller.wake.notify_one();
    }

    /// Tells `these` to stop and waits until each has made its last shipment.
    fn stop(&self, these: Vec<Running>) {
        if these.is_empty() {
            return;
        }
        for r in &these {
            r.shared.stop.store(true, Ordering::SeqCst);
        }
        for p in lock(&self.pollers).iter() {
            p.poke();
        }
        for r in &these {
            r.shared.wait_done();
        }
    }

    /// Stops every replicator, each shipping what it read (within its own 30 s), all at once.
    pub(crate) fn stop_all(&self) {
        let all: Vec<Running> = std::mem::take(&mut *self.lock()).into_values().collect();
        self.stop(all);
    }

    /// The replication of database `name`, if it replicates.
    pub(crate) fn view(&self, name: &str) -> Option<View> {
        let (shared, started) = {
            let all = self.lock();
            let r = all.get(name)?;
            (r.shared.clone(), r.started)
        };
        let handle = lock(&shared.status).clone();
        let status = handle.and_then(|h| h.lock().ok().map(|s| s.clone()));
        let error = lock(&shared.error).clone();
        let now = now_ms();
        Some(View {
            lag_secs: status.as_ref().map_or(0.0, |s| s.lag_secs(now)),
            status,
            error,
            running_secs: (now - started) / 1000,
        })
    }
}
