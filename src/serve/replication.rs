//! The replicators the daemon runs (`replicate = "1s"` per database): one thread each, started
//! with the daemon, kept across reloads while a database's path, location and interval stay,
//! restarted when they change, stopped (with a last shipment) at shutdown. Their status feeds
//! `/api/backup/status`, `/metrics` and `/healthz`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::config::Config;
use super::log::LogFormat;
use crate::ops::replicate::{now_ms, ReplicateOptions, ReplicateStatus, Replicator};

/// What identifies a replicator: a change restarts it.
type Key = (PathBuf, PathBuf, Duration);

struct Running {
    key: Key,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Option<Arc<Mutex<ReplicateStatus>>>>>,
    error: Arc<Mutex<Option<String>>>,
    started: i64,
    thread: Option<std::thread::JoinHandle<()>>,
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

/// The daemon's replicators, by database name.
#[derive(Default)]
pub(crate) struct Replicas {
    running: Mutex<BTreeMap<String, Running>>,
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the replicators `config` asks for and stops the others (each stop ships what
    /// was read, within the replicator's own 30 s).
    pub(crate) fn apply(&self, config: &Config, log: LogFormat) {
        let wanted: BTreeMap<String, (Key, super::config::DatabaseConfig)> = config
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
        let stale: Vec<String> = self
            .lock()
            .iter()
            .filter(|(name, r)| wanted.get(*name).is_none_or(|(k, _)| *k != r.key))
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            let taken = self.lock().remove(&name);
            if let Some(r) = taken {
                stop(r);
            }
        }
        for (name, (key, db)) in wanted {
            if self.lock().contains_key(&name) {
                continue;
            }
            // Not background priority: the poller must keep up with the application's WAL (the
            // shipping thread lowers its own priority).
            let running = start(key, db, config.context(), log);
            self.lock().insert(name, running);
        }
    }

    /// Stops every replicator, each shipping what it read (within its own 30 s), all at once.
    pub(crate) fn stop_all(&self) {
        let all: Vec<Running> = std::mem::take(&mut *self.lock()).into_values().collect();
        let threads: Vec<_> = all
            .into_iter()
            .map(|r| std::thread::spawn(move || stop(r)))
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// The replication of database `name`, if it replicates.
    pub(crate) fn view(&self, name: &str) -> Option<View> {
        let all = self.lock();
        let r = all.get(name)?;
        let status = r
            .status
            .lock()
            .ok()
            .and_then(|s| s.as_ref().and_then(|h| h.lock().ok().map(|s| s.clone())));
        let now = now_ms();
        Some(View {
            lag_secs: status.as_ref().map_or(0.0, |s| s.lag_secs(now)),
            status,
            error: r.error.lock().ok().and_then(|e| e.clone()),
            running_secs: (now - r.started) / 1000,
        })
    }
}

fn stop(mut r: Running) {
    r.stop.store(true, Ordering::SeqCst);
    if let Some(t) = r.thread.take() {
        let _ = t.join();
    }
}

/// Starts the thread replicating `db`: it opens the database (again and again while that
/// fails: the database may not exist yet), runs until told to stop, and starts over after an
/// error reading the database.
fn start(key: Key, db: super::config::DatabaseConfig, ctx: crate::ops::Context, log: LogFormat) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let status: Arc<Mutex<Option<Arc<Mutex<ReplicateStatus>>>>> = Arc::default();
    let error: Arc<Mutex<Option<String>>> = Arc::default();
    let (s, st, err) = (stop.clone(), status.clone(), error.clone());
    let interval = key.2;
    let thread = std::thread::Builder::new()
        .name(format!("replicate-{}", db.name))
        .spawn(move || {
            let set_error = |e: Option<String>| {
                if let Ok(mut slot) = err.lock() {
                    *slot = e;
                }
            };
            while !s.load(Ordering::SeqCst) {
                let mut opts = ReplicateOptions::new(&db.location);
                opts.name = Some(db.name.clone());
                opts.interval = interval;
                opts.encrypt = db.encrypt.clone();
                let result = Replicator::new(&ctx, &db.path, opts).and_then(|mut rep| {
                    if let Ok(mut slot) = st.lock() {
                        *slot = Some(rep.status_handle());
                    }
                    log.write(
                        "info",
                        "replicate.start",
                        &[
                            ("database", db.name.clone().into()),
                            ("location", rep.status().location.into()),
                        ],
                    );
                    let name = db.name.clone();
                    let status = rep.run(&s, Duration::from_secs(30), &mut |e| {
                        log.write(
                            "warn",
                            "replicate.error",
                            &[("database", name.clone().into()), ("error", e.into())],
                        );
                    })?;
                    log.write(
                        "info",
                        "replicate.stop",
                        &[
                            ("database", db.name.clone().into()),
                            ("shipped", status.shipped.into()),
                            ("pending", status.pending.into()),
                            ("gaps", status.gaps.into()),
                        ],
                    );
                    Ok(())
                });
                match result {
                    Ok(()) => set_error(None),
                    Err(e) => {
                        log.write(
                            "error",
                            "replicate.failed",
                            &[
                                ("database", db.name.clone().into()),
                                ("error", e.to_string().into()),
                            ],
                        );
                        set_error(Some(e.to_string()));
                        // Try again in a while (the database may come back, or appear).
                        for _ in 0..50 {
                            if s.load(Ordering::SeqCst) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
        })
        .ok();
    Running {
        key,
        stop,
        status,
        error,
        started: now_ms(),
        thread,
    }
}
