//! The daemon's jobs as data: what a job is ([`Kind`], [`Work`]), how far it got ([`JobState`],
//! [`JobProgress`]) and the table of recent jobs ([`Table`]). Running them is `jobs`' work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ErrorReport;
use crate::location::format_time;
use crate::ops::restore::RestoreOptions;
use crate::progress::Progress;

/// Finished jobs kept for `GET /api/jobs/{id}`.
const KEEP_FINISHED: usize = 500;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Backup,
    Restore,
    Verify,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Restore => "restore",
            Kind::Verify => "verify",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

/// The work of a job, with what it needs.
pub(crate) enum Work {
    /// A backup; with labels besides the configuration's (the API's request).
    Backup {
        labels: crate::model::labels::Labels,
    },
    /// A restore drill: of the replicated history for a replicated database, else of the
    /// newest archive.
    Verify,
    /// A drill of the newest archive (a replicated database with nothing replicated yet).
    VerifyArchive,
    Restore {
        archive: PathBuf,
        opts: RestoreOptions,
    },
}

/// A job's progress, updated by the library through [`Progress`].
#[derive(Default)]
pub(crate) struct JobProgress {
    pub(crate) phase: Mutex<String>,
    pub(crate) done: AtomicU64,
    pub(crate) total: AtomicU64,
}

impl Progress for JobProgress {
    fn begin(&self, phase: &str, total: Option<u64>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase.to_string();
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl JobProgress {
    pub(crate) fn view(&self) -> Value {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        json!({
            "phase": if phase.is_empty() { Value::Null } else { phase.into() },
            "done_bytes": done,
            "total_bytes": if total == 0 { Value::Null } else { total.into() },
            "percent": if total == 0 { Value::Null } else { (((done.min(total) as f64) * 1000.0 / total as f64).round() / 10.0).into() },
        })
    }
}

/// One job.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) database: String,
    pub(crate) kind: Kind,
    /// "schedule" or "api".
    pub(crate) trigger: &'static str,
    pub(crate) state: JobState,
    pub(crate) created: i64,
    pub(crate) started: Option<i64>,
    /// For the duration: when it started running.
    pub(crate) started_at: Option<std::time::Instant>,
    pub(crate) finished: Option<i64>,
    pub(crate) progress: Arc<JobProgress>,
    pub(crate) report: Option<Value>,
    pub(crate) prune: Option<Value>,
    pub(crate) error: Option<ErrorReport>,
}

impl Job {
    /// The job as `GET /api/jobs/{id}` answers it.
    pub(crate) fn view(&self) -> Value {
        json!({
            "id": self.id,
            "database": self.database,
            "kind": self.kind,
            "trigger": self.trigger,
            "state": self.state,
            "created": format_time(self.created),
            "started": self.started.map(format_time),
            "finished": self.finished.map(format_time),
            "progress": self.progress.view(),
            "report": self.report,
            "prune": self.prune,
            "error": self.error,
        })
    }
}

/// Every job of this run: the unfinished ones and the latest finished ones.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) jobs: BTreeMap<u64, Job>,
    pub(crate) next_id: u64,
}

impl Table {
    pub(crate) fn trim(&mut self) {
        let finished: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Done | JobState::Failed))
            .map(|j| j.id)
            .collect();
        for id in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED)) {
            self.jobs.remove(id);
        }
    }

    /// Jobs not finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .count()
    }
}
