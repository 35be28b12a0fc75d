//! Jobs: a backup (with the retention that follows it), a restore or a restore drill of one
//! database, from a schedule or an API request.
//!
//! At most one job holds a database at a time ([`reserve`] refuses a second one), and so does
//! a restore being planned ([`hold`]), which becomes a job only once accepted: job numbers are
//! given to accepted jobs alone, one after the other. Jobs of different databases run in
//! parallel up to `max_parallel` (a semaphore; a job waiting for it is "queued"). The work
//! itself is the blocking library call, run on a thread of its own so that the HTTP API stays
//! responsive and a shutdown never waits on the async runtime for it.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::config::DatabaseConfig;
use super::shared::{now, Shared};
use super::state::{BackupRecord, DbState, FailureRecord, VerifyRecord};
use crate::error::{Error, ErrorReport};
use crate::ops::backup::{BackupOptions, BackupReport};
use crate::progress::Progress;

pub(crate) use super::table::{Job, JobState, Kind, Table, Work};

/// The database is held by another job, or by a restore being planned (no job yet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Busy {
    pub(crate) job: Option<u64>,
    pub(crate) kind: Kind,
}

/// Takes `db` for a new job (queued, not started): refused while another job holds it.
pub(crate) fn reserve(shared: &Shared, db: &str, kind: Kind, trigger: &'static str) -> Result<u64, Busy> {
    let mut dbs = shared.dbs();
    let st = dbs.entry(db.to_string()).or_default();
    let mut jobs = shared.jobs();
    if let Some(busy) = holder(st, &jobs) {
        return Err(busy);
    }
    Ok(new_job(&mut jobs, st, db, kind, trigger))
}

/// What holds the database, if anything: a job, or a restore being planned.
fn holder(st: &DbState, jobs: &Table) -> Option<Busy> {
    if st.planning {
        return Some(Busy {
            job: None,
            kind: Kind::Restore,
        });
    }
    st.busy.map(|job| Busy {
        job: Some(job),
        kind: jobs.jobs.get(&job).map(|j| j.kind).unwrap_or(Kind::Backup),
    })
}

/// Enters a queued job for `db` in the table and makes it the database's holder.
fn new_job(jobs: &mut Table, st: &mut DbState, db: &str, kind: Kind, trigger: &'static str) -> u64 {
    jobs.next_id += 1;
    let id = jobs.next_id;
    st.busy = Some(id);
    jobs.jobs.insert(
        id,
        Job {
            id,
            database: db.to_string(),
            kind,
            trigger,
            state: JobState::Queued,
            created: now(),
            started: None,
            started_at: None,
            finished: None,
            progress: Arc::default(),
            report: None,
            prune: None,
            error: None,
        },
    );
    id
}

/// A database held while a restore of it is planned: no job (and no job number) yet. It
/// becomes a job with [`Hold::into_job`]; dropped (the plan was refused, or the client went
/// away and its request was dropped), it frees the database as if nothing had been asked.
pub(crate) struct Hold {
    shared: Arc<Shared>,
    db: String,
    held: bool,
}

/// Holds `db` for planning a restore: refused while a job holds it or another plan runs.
pub(crate) fn hold(shared: &Arc<Shared>, db: &str) -> Result<Hold, Busy> {
    let mut dbs = shared.dbs();
    let st = dbs.entry(db.to_string()).or_default();
    if let Some(busy) = holder(st, &shared.jobs()) {
        return Err(busy);
    }
    st.planning = true;
    Ok(Hold {
        shared: shared.clone(),
        db: db.to_string(),
        held: true,
    })
}

impl Hold {
    /// The plan was accepted: the database passes to a new queued job, whose number this is.
    pub(crate) fn into_job(mut self, kind: Kind, trigger: &'static str) -> u64 {
        let mut dbs = self.shared.dbs();
        let st = dbs.entry(self.db.clone()).or_default();
        st.planning = false;
        self.held = false;
        let mut jobs = self.shared.jobs();
        new_job(&mut jobs, st, &self.db, kind, trigger)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Some(st) = self.shared.dbs().get_mut(&self.db) {
            st.planning = false;
        }
        self.shared.changed.notify_waiters();
    }
}

/// Runs reserved job `id`: waits for a slot, does the work on its own thread, records the
/// outcome. The receiver fires when the job has finished.
pub(crate) fn launch(
    shared: &Arc<Shared>,
    id: u64,
    db: DatabaseConfig,
    work: Work,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let shared = shared.clone();
    tokio::spawn(async move {
        let permit = shared.permits.clone().acquire_owned().await;
        if shared.is_stopping() || permit.is_err() {
            finish(&shared, id, &db.name, Outcome::failed(cancelled()));
            let _ = done_tx.send(());
            return;
        }
        let (kind, progress, trigger) = {
            let mut jobs = shared.jobs();
            let Some(job) = jobs.jobs.get_mut(&id) else { return };
            if job.state != JobState::Queued {
                return; // cancelled by a shutdown meanwhile
            }
            job.state = JobState::Running;
            job.started = Some(now());
            job.started_at = Some(std::time::Instant::now());
            (job.kind, job.progress.clone(), job.trigger)
        };
        shared.log.write(
            "info",
            "job.start",
            &[
                ("job", id.into()),
                ("database", db.name.clone().into()),
                ("kind", kind.as_str().into()),
                ("trigger", trigger.into()),
            ],
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_db = db.clone();
        // Backups and drills are background work; a restore is what someone waits for.
        let ctx = match work {
            Work::Restore { .. } => shared.config().context(),
            _ => shared.config().context().in_background(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let mut outcome = execute(&ctx, &thread_db, &work, progress.as_ref());
                run_hook(&thread_db, &work, &mut outcome);
                let _ = tx.send(outcome);
            });
        let outcome = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Outcome::failed(internal("the job's thread ended without a result"))),
            Err(e) => Outcome::failed(internal(&format!("cannot start a thread: {e}"))),
        };
        drop(permit);
        // The state file's fsync stays off the runtime's threads (it can wait behind a
        // backup's I/O, and the API would wait with it).
        let done = shared.clone();
        let name = db.name.clone();
        let _ = tokio::task::spawn_blocking(move || finish(&done, id, &name, outcome)).await;
        let _ = done_tx.send(());
    });
    done_rx
}

/// What a job's work produced.
pub(crate) struct Outcome {
    report: Option<Value>,
    error: Option<ErrorReport>,
    prune: Option<Value>,
    backup: Option<BackupRecord>,
    /// For a drill: the archive it restored.
    drilled: Option<String>,
    /// The hook run after it, if one was.
    hook: Option<(String, crate::ops::hook::HookOutcome)>,
}

impl Outcome {
    fn failed(error: ErrorReport) -> Outcome {
        Outcome {
            report: None,
            error: Some(error),
            prune: None,
            backup: None,
            drilled: None,
            hook: None,
        }
    }
}

pub(crate) fn cancelled() -> ErrorReport {
    ErrorReport {
        error: "cancelled: the daemon is stopping".into(),
        class: "cancelled".into(),
        hint: Some("nothing was published or replaced; the job runs again at the next start".into()),
        exit_code: 1,
    }
}

fn internal(what: &str) -> ErrorReport {
    ErrorReport {
        error: what.to_string(),
        class: "error".into(),
        hint: None,
        exit_code: 1,
    }
}

fn object_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Does the work (blocking).
fn execute(ctx: &crate::ops::Context, db: &DatabaseConfig, work: &Work, progress: &dyn Progress) -> Outcome {
    match work {
        Work::Backup { labels } => {
            let mut all = db.labels.clone();
            all.extend(labels.clone());
            let opts = BackupOptions {
                destination: crate::ops::backup::Destination::dir(&db.location),
                name: Some(db.name.clone()),
                format: db.format.clone(),
                encrypt: db.encrypt.clone(),
                labels: all,
                ..Default::default()
            };
            match crate::ops::backup::backup(ctx, &db.path, &opts, progress) {
                Err(e) => Outcome::failed(ErrorReport::from(&e)),
                Ok(r) => {
                    let prune = db.keep.as_ref().map(|policy| {
                        let opts = crate::ops::prune::PruneOptions {
                            policy: policy.clone(),
                            name: Some(db.name.clone()),
                            dry_run: false,
                            force: false,
                        };
                        match crate::ops::prune::prune(ctx, &db.location, &opts) {
                            Ok(p) => to_value(&p),
                            Err(e) => json!({ "error": ErrorReport::from(&e) }),
                        }
                    });
                    Outcome {
                        backup: Some(record_of(&r)),
                        report: Some(to_value(&r)),
                        error: None,
                        prune,
                        drilled: None,
                        hook: None,
                    }
                }
            }
        }
        Work::Verify if db.replicate.is_some() => match drill_replica(ctx, db, progress) {
            Ok(Some(out)) => out,
            Ok(None) => execute(ctx, db, &Work::VerifyArchive, progress),
            Err(e) => {
                let mut out = Outcome::failed(ErrorReport::from(&e));
                out.drilled = Some("the replicated history".into());
                out
            }
        },
        Work::Verify | Work::VerifyArchive => {
            let found = crate::location::open(&db.location).and_then(|loc| {
                let newest = crate::ops::chain::latest_required(ctx, loc.as_ref(), &db.name, None)?;
                Ok(loc.object_path(&newest))
            });
            let archive = match found {
                Err(e) => return Outcome::failed(ErrorReport::from(&e)),
                Ok(a) => a,
            };
            let opts = crate::ops::verify::VerifyOptions::default();
            let mut out = match crate::ops::verify::verify(ctx, &archive, &opts, progress) {
                Err(e) => Outcome::failed(ErrorReport::from(&e)),
                Ok(r) => {
                    let error = Error::from_failed_checks(&archive, &r.checks).map(|e| ErrorReport::from(&e));
                    Outcome {
                        report: Some(to_value(&r)),
                        error,
                        prune: None,
                        backup: None,
                        drilled: None,
                        hook: None,
                    }
                }
            };
            out.drilled = Some(object_name(&archive));
            out
        }
        Work::Restore { archive, opts } => {
            match crate::ops::restore::restore(ctx, archive, &db.path, opts, progress) {
                // Someone asked for it through the API: hints in the API's words.
                Err(e) => Outcome::failed(report(&e)),
                Ok(r) => Outcome {
                    report: Some(to_value(&r)),
                    error: None,
                    prune: None,
                    backup: None,
                    drilled: None,
                    hook: None,
                },
            }
        }
    }
}

/// Runs the database's hook for what the job did, if it has one: `after_backup` and
/// `after_restore` after a success, `on_failure` after a failure (not a cancellation).
fn run_hook(db: &DatabaseConfig, work: &Work, outcome: &mut Outcome) {
    let failed = outcome.error.as_ref().filter(|e| e.class != "cancelled");
    let (event, hook) = match (work, failed, &outcome.error) {
        (_, Some(_), _) => ("on_failure", &db.hooks.on_failure),
        (Work::Backup { .. }, None, None) => ("after_backup", &db.hooks.after_backup),
        (Work::Restore { .. }, None, None) => ("after_restore", &db.hooks.after_restore),
        _ => return,
    };
    let Some(hook) = hook else { return };
    let archive = match work {
        Work::Restore { archive, .. } => Some(archive.clone()),
        _ => outcome
            .report
            .as_ref()
            .and_then(|r| r["archive"].as_str())
            .map(std::path::PathBuf::from)
            .or_else(|| outcome.drilled.as_ref().map(|a| db.location.join(a))),
    };
    let event = crate::ops::hook::HookEvent {
        event: event.into(),
        database: Some(db.path.clone()),
        archive,
        result: if failed.is_some() { "failed" } else { "ok" }.into(),
        error: failed.map(|e| e.error.clone()),
        report: match failed {
            Some(e) => to_value(e),
            None => outcome.report.clone().unwrap_or(Value::Null),
        },
    };
    let done = crate::ops::hook::run(hook, &event, None);
    if let Some(report) = outcome.report.as_mut().filter(|r| r.is_object()) {
        report["hook"] = to_value(&done);
    }
    outcome.hook = Some((event.event, done));
}

/// A drill of a replicated database: the newest replicated state (the last transaction
/// shipped) restored into a temp file with every check of a restore. `None` when nothing was
/// replicated yet, or an archive is at least as new (the newest archive is drilled instead).
fn drill_replica(
    ctx: &crate::ops::Context,
    db: &DatabaseConfig,
    progress: &dyn Progress,
) -> crate::error::Result<Option<Outcome>> {
    let loc = crate::location::open(&db.location)?;
    let Some(crate::ops::replica::Newest::Point(point)) =
        crate::ops::replica::newest_state(ctx, loc.as_ref(), &db.name, None)?
    else {
        return Ok(None);
    };
    let tmp =
        tempfile::tempdir().map_err(|e| Error::io("create a temp directory in", std::env::temp_dir(), e))?;
    let opts = crate::ops::restore::RestoreOptions {
        replay: Some(crate::ops::replica::Replay {
            location: db.location.clone(),
            point: point.clone(),
        }),
        ..Default::default()
    };
    let base = loc.object_path(&point.base);
    let drilled = format!(
        "{} + {} segment(s) to transaction {}",
        point.base,
        point.segments.len(),
        point.txid
    );
    Ok(Some(
        match crate::ops::restore::restore(ctx, &base, &tmp.path().join("drill.db"), &opts, progress) {
            Err(e) => {
                let mut out = Outcome::failed(ErrorReport::from(&e));
                out.drilled = Some(drilled);
                out
            }
            Ok(r) => Outcome {
                report: Some(to_value(&r)),
                error: None,
                prune: None,
                backup: None,
                drilled: Some(drilled),
                hook: None,
            },
        },
    ))
}

fn record_of(r: &BackupReport) -> BackupRecord {
    BackupRecord {
        time: now(),
        archive: object_name(&r.archive),
        size: r.archive_size,
        duration_ms: r.duration_ms,
        kind: r.kind.clone(),
    }
}

/// A report as the JSON value `--json` prints.
fn to_value<T: Serialize>(report: &T) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// Records a job's outcome in the job table and the database's state, logs it, and frees the
/// database. A job that a shutdown already marked cancelled stays so.
pub(crate) fn finish(shared: &Shared, id: u64, database: &str, outcome: Outcome) {
    let t = now();
    let (kind, duration_ms) = {
        let mut jobs = shared.jobs();
        let Some(job) = jobs.jobs.get_mut(&id) else { return };
        if matches!(job.state, JobState::Done | JobState::Failed) {
            return;
        }
        job.state = if outcome.error.is_none() {
            JobState::Done
        } else {
            JobState::Failed
        };
        job.finished = Some(t);
        job.report = outcome.report.clone();
        job.prune = outcome.prune.clone();
        job.error = outcome.error.clone();
        let ms = job.started_at.map(|s| s.elapsed().as_millis() as u64);
        let kind = job.kind;
        jobs.trim();
        (kind, ms)
    };
    {
        let mut dbs = shared.dbs();
        let st = dbs.entry(database.to_string()).or_default();
        if st.busy == Some(id) {
            st.busy = None;
        }
        let ok = outcome.error.is_none();
        let c = &mut st.counters;
        match (kind, ok) {
            (Kind::Backup, true) => c.backups_ok += 1,
            (Kind::Backup, false) => c.backups_failed += 1,
            (Kind::Verify, true) => c.verifies_ok += 1,
            (Kind::Verify, false) => c.verifies_failed += 1,
            (Kind::Restore, true) => c.restores_ok += 1,
            (Kind::Restore, false) => c.restores_failed += 1,
        }
        if let Some(b) = &outcome.backup {
            c.last_duration = Some(b.duration_ms as f64 / 1000.0);
            st.last_success = Some(b.clone());
        }
        if kind == Kind::Verify && outcome.error.as_ref().is_none_or(|e| e.class != "cancelled") {
            st.last_verify = Some(VerifyRecord {
                time: t,
                ok,
                archive: outcome.drilled.clone(),
                error: outcome.error.clone(),
            });
            if ok {
                st.last_verify_success = Some(t);
            }
        }
        if let Some(e) = &outcome.error {
            st.last_failure = Some(FailureRecord {
                time: t,
                job: id,
                kind: kind.as_str().into(),
                error: e.clone(),
            });
        }
    }
    let mut fields: Vec<(&str, Value)> = vec![
        ("job", id.into()),
        ("database", database.into()),
        ("kind", kind.as_str().into()),
    ];
    if let Some(ms) = duration_ms {
        fields.push(("duration_ms", ms.into()));
    }
    match &outcome.error {
        None => {
            if let Some(b) = &outcome.backup {
                fields.push(("archive", b.archive.clone().into()));
                fields.push(("size", b.size.into()));
                fields.push(("backup", b.kind.clone().into()));
            }
            if let Some(a) = &outcome.drilled {
                fields.push(("archive", a.clone().into()));
            }
            if let Some(p) = &outcome.prune {
                if let Some(e) = p.get("error") {
                    fields.push(("prune_error", e["error"].clone()));
                } else {
                    let deleted = p["deleted"].as_array().map_or(0, Vec::len);
                    fields.push(("pruned", deleted.into()));
                }
            }
            shared.log.write("info", "job.done", &fields);
        }
        Some(e) => {
            if let Some(a) = &outcome.drilled {
                fields.push(("archive", a.clone().into()));
            }
            fields.push(("error", e.error.clone().into()));
            fields.push(("class", e.class.clone().into()));
            shared.log.write("error", "job.failed", &fields);
        }
    }
    if let Some((event, h)) = &outcome.hook {
        let mut fields: Vec<(&str, Value)> = vec![
            ("job", id.into()),
            ("database", database.into()),
            ("event", event.clone().into()),
            ("command", h.argv.join(" ").into()),
            ("result", h.describe().into()),
        ];
        if !h.stdout_tail.is_empty() {
            fields.push(("stdout", h.stdout_tail.clone().into()));
        }
        if !h.stderr_tail.is_empty() {
            fields.push(("stderr", h.stderr_tail.clone().into()));
        }
        let (level, what) = if h.ok {
            ("info", "hook.done")
        } else {
            ("error", "hook.failed")
        };
        shared.log.write(level, what, &fields);
    }
    shared.save_state();
    shared.changed.notify_waiters();
}

/// Marks every unfinished job cancelled (a shutdown whose grace ran out) and frees its
/// database; returns how many.
pub(crate) fn cancel_all(shared: &Shared) -> usize {
    let ids: Vec<(u64, String)> = shared
        .jobs()
        .jobs
        .values()
        .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
        .map(|j| (j.id, j.database.clone()))
        .collect();
    for (id, name) in &ids {
        finish(shared, *id, name, Outcome::failed(cancelled()));
    }
    ids.len()
}

/// An error as the API answers it: the library's report, with a hint that names the
/// command line's option given in the API's words instead.
pub(crate) fn report(e: &Error) -> ErrorReport {
    let mut r = ErrorReport::from(e);
    let hint = match e {
        Error::WouldOverwrite { path } if !crate::location::is_remote(path) => Some(
            "send \"overwrite\": true to replace it (a safety archive of the database it replaces is kept in its location first)",
        ),
        Error::NewerSchema { .. } => Some(
            "the archive comes from a newer version of the application; the API does not restore it over an older schema (`litevault restore --allow-newer-schema` does, if that is intended)",
        ),
        _ => None,
    };
    if let Some(h) = hint {
        r.hint = Some(h.to_string());
    }
    r
}
