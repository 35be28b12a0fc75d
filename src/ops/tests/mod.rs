//! Library-level tests: the operations (backup, list, verify, restore, prune, copy, chains)
//! called as functions on `mem://` locations, with no binary and no server; and the same
//! operations against a [`crate::location::faulty::FaultyLocation`] registered under a
//! `mem://` name, to prove what each does when the storage fails part-way.

mod cancel;
mod faults;
mod replication;
mod round_trips;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::location::faulty::FaultyLocation;
use crate::location::memory::{self, MemoryLocation};
use crate::{backup, restore, BackupOptions, BackupReport, Context, NoProgress, RestoreOptions};

/// The context the tests run operations with: no keys, default threads.
fn ctx() -> Context {
    Context::new()
}

/// A fresh `mem://` URL for one test (each test names its own bucket).
fn bucket(name: &str) -> PathBuf {
    memory::remove(name);
    PathBuf::from(format!("mem://{name}"))
}

/// A fault-injecting location registered as `mem://name`; returns it and its URL.
fn faulty_bucket(name: &str) -> (Arc<FaultyLocation>, PathBuf) {
    let loc = Arc::new(FaultyLocation::new(Arc::new(MemoryLocation::new(name).unwrap())));
    memory::register(name, loc.clone()).unwrap();
    (loc, PathBuf::from(format!("mem://{name}")))
}

/// A WAL database `app.db` in `dir` with `rows` notes.
fn make_db(dir: &Path, rows: i64) -> PathBuf {
    let db = dir.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
    )
    .unwrap();
    for i in 0..rows {
        conn.execute(
            "INSERT INTO notes(id, body) VALUES (?1, ?2)",
            rusqlite::params![i, format!("note {i} {}", "x".repeat(200))],
        )
        .unwrap();
    }
    db
}

/// Runs `sql` on the database.
fn edit(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// Every note of the database, by id.
fn rows(db: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn.prepare("SELECT id, body FROM notes ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The names of the objects in the location `url`.
fn names(url: &Path) -> Vec<String> {
    crate::location::open(url)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect()
}

/// The object name of a backup's archive.
fn name_of(r: &BackupReport) -> String {
    r.archive.file_name().unwrap().to_string_lossy().into_owned()
}

/// A backup of `db` into the location `url`.
fn backup_to(db: &Path, url: &Path, incremental: bool) -> BackupReport {
    let opts = BackupOptions {
        destination: crate::Destination::dir(url),
        format: crate::Format::Archive(crate::ArchiveOptions {
            incremental,
            ..Default::default()
        }),
        ..Default::default()
    };
    backup(&ctx(), db, &opts, &NoProgress).unwrap()
}

/// Restores `archive` to a new file `name` in `dir` and returns the restored rows.
fn restored_rows(archive: &Path, dir: &Path, name: &str) -> Vec<(i64, String)> {
    let target = dir.join(name);
    let r = restore(&ctx(), archive, &target, &RestoreOptions::default(), &NoProgress).unwrap();
    assert!(r.restored);
    rows(&target)
}
