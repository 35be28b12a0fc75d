//! What every part of the daemon shares: the configuration, each database's state, the job
//! table, the job permits and the log ([`Shared`]); and the clock ([`now`], from `log`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{Notify, Semaphore};

use super::config::Config;
pub(crate) use super::log::now;
use super::log::LogFormat;
use super::state;
use super::table::Table;

/// The daemon's shared state.
pub(crate) struct Shared {
    pub(crate) config: RwLock<Arc<Config>>,
    pub(crate) dbs: Mutex<BTreeMap<String, state::DbState>>,
    pub(crate) jobs: Mutex<Table>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) log: LogFormat,
    /// A job finished (a schedule waiting for its database tries again).
    pub(crate) changed: Notify,
    pub(crate) stopping: AtomicBool,
    /// Held while the state file is written: one writer at a time, each writing the state as
    /// it is when its turn comes, so the file never goes back to an older state.
    pub(crate) saving: Mutex<()>,
    /// The replicators (`replicate = "1s"`).
    pub(crate) replicas: super::replication::Replicas,
}

impl Shared {
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn dbs(&self) -> MutexGuard<'_, BTreeMap<String, state::DbState>> {
        self.dbs.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn jobs(&self) -> MutexGuard<'_, Table> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
    /// Writes the state file (a failure is logged: only the drills' history is at stake).
    pub(crate) fn save_state(&self) {
        let _one_writer = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.config().state_dir.clone();
        let snapshot = self.dbs().clone();
        if let Err(e) = state::save(&dir, &snapshot) {
            self.log.write(
                "warn",
                "state.unsaved",
                &[
                    ("dir", dir.display().to_string().into()),
                    ("error", e.to_string().into()),
                ],
            );
        }
    }
}
