//! Schedules: one task per database that sleeps until its next backup or drill is due, then
//! runs it as a job (waiting while an API job holds the database).
//!
//! When the daemon starts, the last backup's time comes from the daemon's state or, when newer
//! or unknown, from the newest backup in the location; a backup whose time passed while the
//! daemon was down runs once, right away (not once per missed slot). The same holds for drills,
//! whose last run only the state knows. Every run's next time counts from when it started, so a
//! long backup never makes runs pile up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::config::DatabaseConfig;
use super::jobs::{self, Kind, Work};
use super::shared::{now, Shared};
use super::state::BackupRecord;

/// Starts the schedule of `db`; it ends when `stop` turns true (or the task is aborted).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    db: DatabaseConfig,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(shared, db, stop))
}

async fn run(shared: Arc<Shared>, db: DatabaseConfig, mut stop: watch::Receiver<bool>) {
    // The newest backup: the daemon's own record, or the location's when newer (made by hand,
    // by another host, or before the state was kept), which then becomes the record.
    let listed = newest_in_location(&shared, &db).await;
    let last_backup = {
        let mut dbs = shared.dbs();
        let st = dbs.entry(db.name.clone()).or_default();
        if let Some(l) = listed {
            if st.last_success.as_ref().is_none_or(|k| k.time < l.time) {
                st.last_success = Some(l);
            }
        }
        st.last_success.as_ref().map(|b| b.time)
    };
    let start = now();
    // A slot that passed while the daemon was down (or no backup at all) is due now; except
    // for a replicated database without a backup: its replicator's first base, taken now, is
    // one (a backup beside it would read the database twice, and its catch-up checkpoint
    // would restart the WAL under the replicator), so the first slot is one period away.
    let mut next_backup = match last_backup {
        Some(t) => db.schedule.next_after(t).max(start),
        None if db.replicate.is_some() => db.schedule.next_after(start),
        None => start,
    };
    let last_verify = shared
        .dbs()
        .get(&db.name)
        .and_then(|s| s.last_verify.as_ref().map(|v| v.time));
    let mut next_verify = db
        .verify
        .as_ref()
        .map(|v| last_verify.map_or(start, |t| v.next_after(t).max(start)));
    loop {
        {
            let mut dbs = shared.dbs();
            let st = dbs.entry(db.name.clone()).or_default();
            st.next_backup = Some(next_backup);
            st.next_verify = next_verify;
        }
        let due = next_backup.min(next_verify.unwrap_or(i64::MAX));
        let wait = Duration::from_secs((due - now()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let t = now();
        if t < due {
            continue; // woken early (the clock moved): sleep again
        }
        if t >= next_backup {
            run_job(&shared, &db, Kind::Backup, &mut stop).await;
            next_backup = match db.schedule {
                super::config::Schedule::Every { .. } => db.schedule.next_after(t).max(now()),
                super::config::Schedule::Cron { .. } => db.schedule.next_after(now()),
            };
            continue; // a drill due meanwhile runs next, on the new backup
        }
        if let (Some(v), Some(nv)) = (&db.verify, next_verify) {
            if t >= nv {
                let has_backup = shared
                    .dbs()
                    .get(&db.name)
                    .is_some_and(|s| s.last_success.is_some())
                    || newest_in_location(&shared, &db).await.is_some();
                if has_backup {
                    run_job(&shared, &db, Kind::Verify, &mut stop).await;
                } else {
                    shared.log.write(
                        "info",
                        "drill.skipped",
                        &[
                            ("database", db.name.clone().into()),
                            ("reason", "no backup yet".into()),
                        ],
                    );
                }
                next_verify = Some(match v {
                    super::config::Schedule::Every { .. } => v.next_after(t).max(now()),
                    super::config::Schedule::Cron { .. } => v.next_after(now()),
                });
            }
        }
    }
}

/// Runs one scheduled job to its end; while another job holds the database, waits for it.
async fn run_job(shared: &Arc<Shared>, db: &DatabaseConfig, kind: Kind, stop: &mut watch::Receiver<bool>) {
    loop {
        let changed = shared.changed.notified();
        match jobs::reserve(shared, &db.name, kind, "schedule") {
            Ok(id) => {
                let work = match kind {
                    Kind::Backup => Work::Backup {
                        labels: Default::default(),
                    },
                    _ => Work::Verify,
                };
                let done = jobs::launch(shared, id, db.clone(), work);
                let _ = done.await;
                return;
            }
            Err(busy) => {
                shared.log.write(
                    "info",
                    "schedule.waiting",
                    &[
                        ("database", db.name.clone().into()),
                        ("kind", kind.as_str().into()),
                        ("busy_job", busy.job.into()),
                    ],
                );
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// The newest backup of `db` in its location (None when there is none or the location cannot
/// be listed: the error is logged and a backup then runs at once).
async fn newest_in_location(shared: &Arc<Shared>, db: &DatabaseConfig) -> Option<BackupRecord> {
    let (location, name) = (db.location.clone(), db.name.clone());
    let ctx = shared.config().context();
    let found = tokio::task::spawn_blocking(move || {
        if !crate::location::is_remote(&location) && !location.exists() {
            return Ok::<_, crate::error::Error>(None);
        }
        let loc = crate::location::open(&location)?;
        let Some(newest) = crate::ops::chain::latest(&ctx, loc.as_ref(), &name, None)? else {
            return Ok(None);
        };
        let size = loc.head(&newest)?.map_or(0, |m| m.size);
        Ok(
            crate::ops::prune::parse_backup_name(&newest).map(|(_, time)| BackupRecord {
                time,
                kind: if crate::format::dump::is_dump_name(&newest) {
                    "sql"
                } else {
                    "archive"
                }
                .into(),
                archive: newest,
                size,
                duration_ms: 0,
            }),
        )
    })
    .await;
    match found {
        Ok(Ok(newest)) => newest,
        Ok(Err(e)) => {
            shared.log.write(
                "warn",
                "location.unreadable",
                &[
                    ("database", db.name.clone().into()),
                    ("error", e.to_string().into()),
                ],
            );
            None
        }
        Err(_) => None,
    }
}
