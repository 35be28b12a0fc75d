//! What the daemon knows about each database: the last backup, failure and drill (kept in
//! `state.json` in the state directory, so a restart still knows whether the last drill
//! passed), and counters and the running job (in memory only).

use std::collections::BTreeMap;
use std::path::Path;

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorReport};
use crate::fsutil::AtomicFile;

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
    /// A restore of it is being planned (it holds the database, as a job would).
    #[serde(skip)]
    pub(crate) planning: bool,
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

/// Writes `dir/state.json` atomically: a temp file of its own (two writers never share one),
/// fsynced, renamed over the old file, the directory fsynced ([`AtomicFile`]).
pub(crate) fn save(dir: &Path, states: &BTreeMap<String, DbState>) -> crate::error::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join("state.json");
    let bytes = serde_json::to_vec_pretty(states)
        .map_err(|e| Error::io("serialize", &path, std::io::Error::other(e)))?;
    let mut file = AtomicFile::create(&path, 0o644)?;
    file.file()
        .write_all(&bytes)
        .map_err(|e| Error::io("write", &path, e))?;
    file.commit_replace()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs that finish at once save at once: every save succeeds and leaves no temp file.
    #[test]
    fn concurrent_saves_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let mut states = BTreeMap::new();
        states.insert("app".to_string(), DbState::default());
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..40).filter_map(|_| save(dir.path(), &states).err()).count()))
                .collect();
            let failed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            assert_eq!(failed, 0, "saves failed");
        });
        assert!(load(dir.path()).contains_key("app"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }
}
