//! `litevault serve`: a daemon that backs up databases on schedules, applies retention after
//! each backup, runs restore drills, and answers an HTTP API with Prometheus metrics.
//!
//! The library owns the whole daemon; the binary only reads the configuration, binds the
//! listener and turns signals into a shutdown future and reloads (the mini-redis shape), so
//! tests bind port 0 and stop it cleanly:
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let config = litevault::serve::Config::load("litevault.toml".as_ref()).expect("a valid configuration");
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! litevault::serve::run(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Files: [`config`] (the TOML file), `scheduler` (when jobs run), `jobs` (one job per
//! database at a time, the library calls on their own threads), `http` (the accept loop, the
//! connection cap and timeouts), `api` (routes, token check), [`requests`] (request bodies),
//! `metrics` (the text format), `state` (what is remembered), `log` (one line per event).

mod api;
pub mod config;
mod http;
mod jobs;
mod log;
mod metrics;
mod replication;
pub mod requests;
mod scheduler;
mod shared;
mod state;
mod table;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

pub use api::OPENAPI;
pub use config::{Config, ConfigError, DatabaseConfig, Schedule};
pub use log::LogFormat;
pub(crate) use shared::Shared;

/// What the caller of [`run_with`] controls besides the shutdown.
#[derive(Debug, Default)]
pub struct Control {
    /// New configurations to switch to (SIGHUP in the binary): the databases, schedules,
    /// retention, drills and token change at once; running jobs finish with the old settings.
    /// `listen` and `max_parallel` need a restart.
    pub reloads: Option<mpsc::UnboundedReceiver<Config>>,
    /// How the log is written.
    pub log_format: LogFormat,
}

/// Runs the daemon on `listener` until `shutdown` completes, with a text log and no reloads.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(listener, config, shutdown, Control::default()).await
}

/// Runs the daemon on `listener` until `shutdown` completes.
///
/// On shutdown it stops accepting connections and starting jobs, lets running jobs finish for
/// the configuration's `shutdown_grace` (8 s by default), then cancels what still runs: S3
/// uploads are aborted and temp files removed (nothing partial is ever published; a restore cut
/// short is rolled back by SQLite's journal when the process exits), and returns.
pub async fn run_with(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut control: Control,
) -> std::io::Result<()> {
    let log = control.log_format;
    let addr = listener.local_addr()?;
    let persisted = state::load(&config.state_dir);
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(config.max_parallel)),
        dbs: Mutex::new(persisted),
        jobs: Mutex::default(),
        config: RwLock::new(Arc::new(config)),
        log,
        changed: Notify::new(),
        stopping: AtomicBool::new(false),
        saving: Mutex::new(()),
        replicas: Default::default(),
    });
    let config = shared.config();
    log.write(
        "info",
        "serve.start",
        &[
            ("listen", addr.to_string().into()),
            (
                "databases",
                config
                    .databases
                    .iter()
                    .map(|d| d.name.clone())
                    .collect::<Vec<_>>()
                    .into(),
            ),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
    if config.token.is_none() {
        log.write(
            "warn",
            "serve.no_token",
            &[("detail", "no token: the API is open to every user of this machine (set $LITEVAULT_TOKEN or token_file)".into())],
        );
    }

    shared.replicas.apply(&config, log);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut schedules = spawn_schedules(&shared, &config, &stop_rx);
    let app = api::router(shared.clone());
    let mut server = tokio::spawn(http::serve(listener, app, shared.clone(), stop_rx.clone()));

    tokio::pin!(shutdown);
    let mut rescan = discovery_clock(config.discover_every).await;
    // What discovery left out, logged once each (not at every look).
    let mut noted: std::collections::HashSet<String> = Default::default();
    let served = loop {
        tokio::select! {
            _ = &mut shutdown => break None,
            r = &mut server => break Some(r),
            Some(new) = next_reload(&mut control.reloads) => {
                reload(&shared, new);
                schedules = restart(&shared, schedules, &stop_rx, log).await;
                rescan = discovery_clock(shared.config().discover_every).await;
            }
            _ = rescan.tick(), if !shared.config().patterns.is_empty() => {
                let current = shared.config();
                let looked = tokio::task::spawn_blocking(move || {
                    let mut new = (*current).clone();
                    let notes = new.discover();
                    (new, notes)
                })
                .await;
                let Ok((new, notes)) = looked else { continue };
                for note in notes {
                    if noted.insert(note.clone()) {
                        log.write("warn", "serve.discovery", &[("detail", note.into())]);
                    }
                }
                if let Some((added, gone)) = discovered(&shared, new) {
                    // Only the databases that came and went: a schedule started again would
                    // find its database's backup due at once while a queued one has not run.
                    schedules.retain(|(name, handle)| {
                        let keep = !gone.contains(name);
                        if !keep {
                            handle.abort();
                        }
                        keep
                    });
                    let config = apply_replicas(&shared, log).await;
                    for db in config.databases.iter().filter(|d| added.contains(&d.name)) {
                        schedules.push((db.name.clone(), scheduler::spawn(shared.clone(), db.clone(), stop_rx.clone())));
                    }
                }
            }
        }
    };

    // Stop: no new connections, jobs or schedules.
    shared.stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    for (_, s) in schedules {
        s.abort();
    }
    let running = shared.jobs().unfinished();
    log.write("info", "serve.stopping", &[("running_jobs", running.into())]);
    let grace = Duration::from_secs(shared.config().shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    while shared.jobs().unfinished() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fields: Vec<(&str, Value)> = Vec::new();
    if shared.jobs().unfinished() > 0 {
        // Aborting uploads blocks on the S3 client's own runtime: not on this one's threads.
        let (aborted, removed) = tokio::task::spawn_blocking(|| {
            (
                crate::location::abort_active_uploads(),
                crate::fsutil::remove_own_temps(),
            )
        })
        .await
        .unwrap_or((0, 0));
        let cancelled = jobs::cancel_all(&shared);
        fields.extend([
            ("cancelled_jobs", cancelled.into()),
            ("aborted_uploads", aborted.into()),
            ("removed_temp_files", removed.into()),
        ]);
    }
    // The replicators ship what they read last.
    let replicas = shared.clone();
    let _ = tokio::task::spawn_blocking(move || replicas.replicas.stop_all()).await;
    if served.is_none() {
        // Connections still open get a moment to finish their answers.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
    }
    shared.save_state();
    log.write("info", "serve.stopped", &fields);
    match served {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(std::io::Error::other(e)),
        None => Ok(()),
    }
}

async fn next_reload(reloads: &mut Option<mpsc::UnboundedReceiver<Config>>) -> Option<Config> {
    match reloads {
        Some(r) => match r.recv().await {
            Some(c) => Some(c),
            None => {
                *reloads = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

fn spawn_schedules(
    shared: &Arc<Shared>,
    config: &Config,
    stop: &watch::Receiver<bool>,
) -> Vec<(String, tokio::task::JoinHandle<()>)> {
    config
        .databases
        .iter()
        .map(|db| {
            (
                db.name.clone(),
                scheduler::spawn(shared.clone(), db.clone(), stop.clone()),
            )
        })
        .collect()
}

/// Starts what the running configuration now says: replicators kept, started or stopped, and
/// the schedules anew.
async fn restart(
    shared: &Arc<Shared>,
    old: Vec<(String, tokio::task::JoinHandle<()>)>,
    stop_rx: &watch::Receiver<bool>,
    log: LogFormat,
) -> Vec<(String, tokio::task::JoinHandle<()>)> {
    for (_, s) in old {
        s.abort();
    }
    let config = apply_replicas(shared, log).await;
    spawn_schedules(shared, &config, stop_rx)
}

/// Keeps, starts and stops replicators as the running configuration says; returns it.
async fn apply_replicas(shared: &Arc<Shared>, log: LogFormat) -> Arc<Config> {
    let config = shared.config();
    let (replicas, cfg) = (shared.clone(), config.clone());
    let _ = tokio::task::spawn_blocking(move || replicas.replicas.apply(&cfg, log)).await;
    config
}

/// The clock of pattern discovery: a tick every `every` (late ticks delayed, not bunched),
/// the first one (immediate) already taken.
async fn discovery_clock(every: Duration) -> tokio::time::Interval {
    let mut clock = tokio::time::interval(every);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    clock.tick().await;
    clock
}

/// Takes `new` (the running configuration with its patterns looked at again) when it found
/// other databases, logging which came and went; returns those (a database whose file
/// changed under the same name is both).
fn discovered(shared: &Shared, new: Config) -> Option<(Vec<String>, Vec<String>)> {
    let old = shared.config();
    let key = |c: &Config| -> Vec<(String, PathBuf)> {
        c.databases
            .iter()
            .map(|d| (d.name.clone(), d.path.clone()))
            .collect()
    };
    let (before, after) = (key(&old), key(&new));
    if before == after {
        return None;
    }
    let added: Vec<String> = after
        .iter()
        .filter(|d| !before.contains(d))
        .map(|d| d.0.clone())
        .collect();
    let gone: Vec<String> = before
        .iter()
        .filter(|d| !after.contains(d))
        .map(|d| d.0.clone())
        .collect();
    let names: Vec<String> = after.into_iter().map(|d| d.0).collect();
    *shared.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    shared.log.write(
        "info",
        "serve.discovered",
        &[
            ("added", added.clone().into()),
            ("gone", gone.clone().into()),
            ("databases", names.into()),
        ],
    );
    Some((added, gone))
}

fn reload(shared: &Shared, new: Config) {
    let old = shared.config();
    let mut fields: Vec<(&str, Value)> = vec![(
        "databases",
        new.databases
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
            .into(),
    )];
    if new.listen != old.listen {
        fields.push(("listen_unchanged", "a new listen address needs a restart".into()));
    }
    if new.max_parallel != old.max_parallel {
        fields.push((
            "max_parallel_unchanged",
            "a new max_parallel needs a restart".into(),
        ));
    }
    *shared.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    shared.log.write("info", "serve.reloaded", &fields);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    /// The library shape the binary and tests rely on: bind port 0, run, stop through the
    /// shutdown future; the first backup runs at start.
    #[test]
    fn run_serves_on_port_0_and_stops_when_shutdown_completes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let text = "state_dir = \"state\"\n[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"b\"\nschedule = \"every 1h\"\n";
        let config = super::Config::parse(text, dir.path(), None).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(super::run(listener, config, async {
                let _ = stopped.await;
            }));
            let get = move |path: &'static str| {
                tokio::task::spawn_blocking(move || {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out
                })
            };
            let mut healthy = false;
            for _ in 0..200 {
                if get("/healthz").await.unwrap().starts_with("HTTP/1.1 200") {
                    healthy = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(healthy, "the first backup never made it healthy");
            let status = get("/api/backup/status").await.unwrap();
            assert!(status.contains("\"last_success\":{"), "{status}");
            stop.send(()).unwrap();
            let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), server).await;
            assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        });
        assert!(std::fs::read_dir(dir.path().join("b")).unwrap().count() == 1);
        assert!(dir.path().join("state/state.json").is_file());
    }
}
