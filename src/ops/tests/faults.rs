//! The operations against storage that fails part-way (a [`FaultyLocation`] behind a `mem://`
//! name): what each reports, and that nothing half-done is published or put in place.

use super::*;
use crate::error::Error;
use crate::location::Location;
use crate::ops::prune::{prune, Policy, PruneOptions};

/// The files in `dir` (a failed restore must leave no temp file beside its target).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Sleeps into the next second of the clock (backup names carry the second).
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 10_000_000,
    ));
}

#[test]
fn a_write_failing_mid_backup_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 300);
    let (loc, url) = faulty_bucket("lt-fault-write");
    let first = backup_to(&db, &url, false);
    loc.faults().fail_write_after = Some(first.archive_size / 2);
    let opts = BackupOptions {
        destination: crate::Destination::dir(url.clone()),
        ..Default::default()
    };
    match backup(&ctx(), &db, &opts, &NoProgress) {
        Err(Error::Io { source, .. }) => assert!(source.to_string().contains("injected fault"), "{source}"),
        other => panic!("expected the write's I/O error, got {other:?}"),
    }
    assert_eq!(names(&url), [name_of(&first)]);
    // The same, for an incremental (its small archive fails at once).
    loc.faults().fail_write_after = Some(0);
    let opts = BackupOptions {
        format: crate::Format::Archive(crate::ArchiveOptions {
            incremental: true,
            ..Default::default()
        }),
        ..opts
    };
    assert!(matches!(
        backup(&ctx(), &db, &opts, &NoProgress),
        Err(Error::Io { .. })
    ));
    assert_eq!(names(&url), [name_of(&first)]);
}

#[test]
fn a_failing_finish_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 20);
    let (loc, url) = faulty_bucket("lt-fault-finish");
    loc.faults().fail_finish = true;
    let opts = BackupOptions {
        destination: crate::Destination::dir(url.clone()),
        ..Default::default()
    };
    assert!(matches!(
        backup(&ctx(), &db, &opts, &NoProgress),
        Err(Error::Remote { op: "finish", .. })
    ));
    assert!(names(&url).is_empty());
    loc.faults().fail_finish = false;
    let r = backup(&ctx(), &db, &opts, &NoProgress).unwrap();
    assert_eq!(names(&url), [name_of(&r)]);
}

#[test]
fn an_archive_vanishing_before_restore_reads_it_is_not_found_and_nothing_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 20);
    let (loc, url) = faulty_bucket("lt-fault-vanish");
    let r = backup_to(&db, &url, false);
    // `restore --latest`: the listing finds it, then another host's prune deletes it.
    loc.faults().vanish_after_list.insert(name_of(&r));
    let latest = crate::ops::chain::latest_required(&ctx(), loc.as_ref(), "app", None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored.db");
    let e = restore(
        &ctx(),
        &loc.object_path(&latest),
        &target,
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(e.class(), crate::ErrorClass::Failed);
    assert!(!target.exists());
    assert!(files_in(out.path()).is_empty());
}

#[test]
fn a_download_cut_short_during_restore_leaves_the_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 300);
    let (loc, url) = faulty_bucket("lt-fault-cut");
    let r = backup_to(&db, &url, false);
    // The target holds other content, which must survive.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("app.db");
    std::fs::copy(&db, &target).unwrap();
    edit(
        &target,
        "DELETE FROM notes WHERE id > 3; UPDATE notes SET body = 'mine';",
    );
    let before = rows(&target);
    let files_before = files_in(out.path());

    loc.faults().cut_stream_after = Some(r.archive_size / 2);
    let opts = RestoreOptions {
        overwrite: true,
        safety_dir: Some(out.path().join("safety")),
        ..Default::default()
    };
    let e = restore(&ctx(), &r.archive, &target, &opts, &NoProgress).unwrap_err();
    // A network failure, not a damaged archive.
    assert!(matches!(e, Error::Remote { op: "download", .. }), "{e:?}");
    assert_eq!(rows(&target), before);
    assert_eq!(files_in(out.path()), files_before);

    // Whole again, the same restore goes through.
    loc.faults().cut_stream_after = None;
    let done = restore(&ctx(), &r.archive, &target, &opts, &NoProgress).unwrap();
    assert!(done.restored);
    assert_eq!(rows(&target), rows(&db));
}

#[test]
fn a_delete_failing_during_prune_leaves_every_remaining_backup_restorable() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 30);
    let (loc, url) = faulty_bucket("lt-fault-prune");
    let old_full = backup_to(&db, &url, true);
    edit(&db, "UPDATE notes SET body = 'one' WHERE id = 1;");
    let old_inc = backup_to(&db, &url, true);
    assert_eq!(old_inc.parent.as_deref(), Some(name_of(&old_full).as_str()));
    edit(&db, "UPDATE notes SET body = 'two' WHERE id = 2;");
    let new_full = backup_to(&db, &url, false);
    edit(&db, "UPDATE notes SET body = 'three' WHERE id = 3;");
    let new_inc = backup_to(&db, &url, true);
    assert_eq!(new_inc.parent.as_deref(), Some(name_of(&new_full).as_str()));

    // keep-last 1 keeps the newest chain and deletes the old one, child first; the child's
    // delete fails, so its parent must stay too.
    loc.faults().fail_delete.insert(name_of(&old_inc));
    let opts = PruneOptions {
        policy: Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = prune(&ctx(), &url, &opts).unwrap_err();
    assert!(matches!(e, Error::Remote { op: "delete", .. }), "{e:?}");
    let mut all = vec![
        name_of(&old_full),
        name_of(&old_inc),
        name_of(&new_full),
        name_of(&new_inc),
    ];
    all.sort();
    assert_eq!(names(&url), all);
    for (i, r) in [&old_full, &old_inc, &new_full, &new_inc].into_iter().enumerate() {
        let got = restored_rows(&r.archive, dir.path(), &format!("left-{i}.db"));
        assert_eq!(got.len(), 30, "{}", r.archive.display());
    }

    // The fault gone, the prune completes.
    loc.faults().fail_delete.clear();
    let report = prune(&ctx(), &url, &opts).unwrap();
    assert_eq!(
        report.deleted,
        [old_inc.archive.clone(), old_full.archive.clone()]
    );
    let mut left = vec![name_of(&new_full), name_of(&new_inc)];
    left.sort();
    assert_eq!(names(&url), left);
}

#[test]
fn a_parent_vanishing_while_an_incremental_runs_gives_a_full_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 40);
    let (loc, url) = faulty_bucket("lt-fault-parent");
    let parent = backup_to(&db, &url, true);
    edit(&db, "UPDATE notes SET body = 'after' WHERE id < 5;");
    // In a later second the incremental's name differs from its parent's (in the same one it
    // could take the name its parent freed, and the parent would read as replaced).
    next_second();
    // Deleted (another host's prune) just before the incremental is published.
    loc.faults().vanish_on_finish.insert(name_of(&parent));
    let r = backup_to(&db, &url, true);
    assert_eq!(r.kind, "full");
    assert_eq!(r.parent, None);
    let reason = r.full_reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&name_of(&parent)) && reason.contains("vanished while the incremental backup ran"),
        "{reason}"
    );
    // Only the full backup is there (the incremental made on the vanished parent was taken back).
    assert_eq!(names(&url), [name_of(&r)]);
    let got = restored_rows(&r.archive, dir.path(), "restored.db");
    assert_eq!(got, rows(&db));
    assert!(got.contains(&(1, "after".into())));
}
