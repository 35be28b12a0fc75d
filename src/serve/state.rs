//! What the daemon knows about each database: the last backup, failure and drill (kept in
//! `state.json` in the state directory, so a restart still knows whether the last drill
//! passed), and counters and the running job (in memory only).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ErrorReport;

/// The last successful backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BackupRecord {
    /// When it finished (seconds since the epoch).
    pub(crate) time: i64,
    /// Its object name in the location.
    pub(crate) archive: String,
    pub(crate) size: u64,
    pub(crate) duration_ms: u64,
    /// "full", "incremental" or "sql".
    pub(crate) kind: String,
}

/// The last failed job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FailureRecord {
    pub(crate) time: i64,
    pub(crate) job: u64,
    /// "backup", "restore" or "verify".
    pub(crate) kind: String,
    pub(crate) error: ErrorReport,
}

/// The last restore drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VerifyRecord {
    pub(crate) time: i64,
    pub(crate) ok: bool,
    /// The archive it restored.
    pub(crate) archive: Option<String>,
    /// Why it failed.
    pub(crate) error: Option<ErrorReport>,
}

/// Counts since the daemon started.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) backups_ok: u64,
    pub(crate) backups_failed: u64,
    pub(crate) verifies_ok: u64,
    pub(crate) verifies_failed: u64,
    pub(crate) restores_ok: u64,
    pub(crate) restores_failed: u64,
    /// Seconds the last successful backup took.
    pub(crate) last_duration: Option<f64>,
}

/// One database's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DbState {
    pub(crate) last_success: Option<BackupRecord>,
    pub(crate) last_failure: Option<FailureRecord>,
    pub(crate) last_verify: Option<VerifyRecord>,
    /// When a drill last passed.
    pub(crate) last_verify_success: Option<i64>,
    #[serde(skip)]
    pub(crate) counters: Counters,
    /// The job holding the database (queued or running).
    #[serde(skip)]
    pub(crate) busy: Option<u64>,
    #[serde(skip)]
    pub(crate) next_backup: Option<i64>,
    #[serde(skip)]
    pub(crate) next_verify: Option<i64>,
}

/// Reads `dir/state.json` (empty when missing or unreadable: the daemon then learns the last
/// backup from the locations).
pub(crate) fn load(dir: &Path) -> BTreeMap<String, DbState> {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `dir/state.json` atomically (a temp file renamed over it).
pub(crate) fn save(dir: &Path, states: &BTreeMap<String, DbState>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".state.json.tmp");
    let bytes = serde_json::to_vec_pretty(states).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("state.json"))
}
