//! Cancellation through [`crate::Progress::cancelled`]: an operation asked to stop after its
//! k-th step, for several k, stops with [`crate::Error::Cancelled`] (class interrupted), leaves
//! no temp file and publishes nothing; the same operation uncancelled then succeeds.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::ops::backup::{ArchiveOptions, Destination, Format};
use crate::{ErrorClass, Progress, VerifyOptions};

/// Says "stop" once `after` steps were reported.
struct StopAfter {
    after: u64,
    steps: AtomicU64,
}

impl StopAfter {
    fn new(after: u64) -> StopAfter {
        StopAfter {
            after,
            steps: AtomicU64::new(0),
        }
    }
}

impl Progress for StopAfter {
    fn advance(&self, _bytes: u64) {
        self.steps.fetch_add(1, Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.steps.load(Ordering::SeqCst) >= self.after
    }
}

/// Steps to cancel after for an operation that reports `steps` when it runs through: the
/// first, the second, the middle and the last.
fn points(steps: u64) -> Vec<u64> {
    assert!(
        steps >= 2,
        "the operation reports too few steps to cancel in between: {steps}"
    );
    let mut v = vec![0, 1, steps / 2, steps - 1];
    v.dedup();
    v
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The names in a directory but SQLite's own -wal and -shm and the backups directory.
fn own_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm") && n != "backups")
        .collect()
}

fn assert_cancelled<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.class(), ErrorClass::Interrupted, "{what}: {e}"),
        Ok(v) => panic!("{what}: not cancelled: {v:?}"),
    }
}

#[test]
fn backups_of_every_kind_stop_when_asked_and_publish_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path(), 20_000);
    let before = own_files(tmp.path());
    let out = tmp.path().join("backups");
    let kinds: Vec<(&str, BackupOptions)> = vec![
        (
            "archive",
            BackupOptions {
                destination: Destination::dir(&out),
                ..Default::default()
            },
        ),
        (
            "sql dump",
            BackupOptions {
                destination: Destination::dir(&out),
                format: Format::Sql(Default::default()),
                ..Default::default()
            },
        ),
        (
            "incremental",
            BackupOptions {
                destination: Destination::dir(&out),
                format: Format::Archive(ArchiveOptions {
                    incremental: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ];
    for (what, opts) in &kinds {
        let count = StopAfter::new(u64::MAX);
        let scratch = tempfile::tempdir().unwrap();
        let counted = BackupOptions {
            destination: Destination::dir(scratch.path()),
            ..opts.clone()
        };
        backup(&ctx(), &db, &counted, &count).unwrap();
        for after in points(count.steps.load(Ordering::SeqCst)) {
            let r = backup(&ctx(), &db, opts, &StopAfter::new(after));
            assert_cancelled(r, &format!("{what} after {after} steps"));
            assert_eq!(
                names(&out),
                Vec::<String>::new(),
                "{what} after {after}: published"
            );
            assert_eq!(own_files(tmp.path()), before, "{what}: a temp file is left");
        }
    }
    // Uncancelled, each succeeds (the incremental then has a parent to build on).
    for (what, opts) in &kinds {
        backup(&ctx(), &db, opts, &NoProgress).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn restore_verify_and_copy_stop_when_asked_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path(), 20_000);
    // Text that does not compress away: an archive of a few MiB, read in many steps.
    edit(&db, "UPDATE notes SET body = hex(randomblob(150))");
    let r: BackupReport = backup(
        &ctx(),
        &db,
        &BackupOptions {
            destination: Destination::dir(tmp.path().join("b")),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let target = tmp.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    let copy_to = tmp.path().join("copies");
    let into = target.join("app.db");
    let scratch = tempfile::tempdir().unwrap();

    let count = StopAfter::new(u64::MAX);
    restore(
        &ctx(),
        &r.archive,
        &scratch.path().join("x.db"),
        &RestoreOptions::default(),
        &count,
    )
    .unwrap();
    for after in points(count.steps.load(Ordering::SeqCst)) {
        let res = restore(
            &ctx(),
            &r.archive,
            &into,
            &RestoreOptions::default(),
            &StopAfter::new(after),
        );
        assert_cancelled(res, &format!("restore after {after}"));
        assert_eq!(
            names(&target),
            Vec::<String>::new(),
            "restore after {after} left files"
        );
    }

    let count = StopAfter::new(u64::MAX);
    crate::verify(&ctx(), &r.archive, &VerifyOptions::default(), &count).unwrap();
    for after in points(count.steps.load(Ordering::SeqCst)) {
        let v = crate::verify(
            &ctx(),
            &r.archive,
            &VerifyOptions::default(),
            &StopAfter::new(after),
        );
        assert_cancelled(v, &format!("verify after {after}"));
    }

    let count = StopAfter::new(u64::MAX);
    crate::ops::copy::copy(&ctx(), std::slice::from_ref(&r.archive), scratch.path(), &count).unwrap();
    for after in points(count.steps.load(Ordering::SeqCst)) {
        let c = crate::ops::copy::copy(
            &ctx(),
            std::slice::from_ref(&r.archive),
            &copy_to,
            &StopAfter::new(after),
        );
        assert_cancelled(c, &format!("copy after {after}"));
        assert_eq!(
            names(&copy_to),
            Vec::<String>::new(),
            "copy after {after} published"
        );
    }
    restore(
        &ctx(),
        &r.archive,
        &target.join("app.db"),
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
}
