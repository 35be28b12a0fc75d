//! The operations end to end on `mem://` locations: what goes in comes back out.

use super::*;
use crate::ops::prune::{prune, Policy, PruneOptions};
use crate::{list, verify, VerifyOptions};

#[test]
fn backup_list_verify_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 50);
    let url = bucket("lt-round-trip");
    let r = backup_to(&db, &url.join("prod"), false);
    assert_eq!(r.kind, "full");
    assert!(
        r.archive.starts_with("mem://lt-round-trip/prod/"),
        "{}",
        r.archive.display()
    );

    // Only the prefix holds it; list reads its manifest.
    assert!(names(&url).is_empty());
    assert_eq!(names(&url.join("prod")), [name_of(&r)]);
    let listed = list(&ctx(), &url.join("prod")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, r.archive);
    assert_eq!(listed[0].archive_size, r.archive_size);
    let m = listed[0].manifest.as_ref().expect("manifest read");
    assert_eq!(m.total_rows(), 50);
    assert_eq!(listed[0].error, None);

    let v = verify(&ctx(), &r.archive, &VerifyOptions::default(), &NoProgress).unwrap();
    assert!(v.ok, "{:?}", v.checks);
    assert_eq!(v.kind, "archive");

    assert_eq!(restored_rows(&r.archive, dir.path(), "copy.db"), rows(&db));
    assert_eq!(rows(&db).len(), 50);
}

#[test]
fn incremental_chain_restores_latest_equal_to_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 2000);
    let url = bucket("lt-chain");
    let full = backup_to(&db, &url, true);
    assert_eq!(full.kind, "full");
    edit(
        &db,
        "UPDATE notes SET body = 'changed' WHERE id BETWEEN 100 AND 110; DELETE FROM notes WHERE id > 1990;",
    );
    let inc1 = backup_to(&db, &url, true);
    assert_eq!(inc1.kind, "incremental", "{:?}", inc1.full_reason);
    assert_eq!(inc1.parent.as_deref(), Some(name_of(&full).as_str()));
    edit(
        &db,
        "INSERT INTO notes(id, body) VALUES (5000, 'new row'); UPDATE notes SET body = 'again' WHERE id = 5;",
    );
    let inc2 = backup_to(&db, &url, true);
    assert_eq!(inc2.kind, "incremental", "{:?}", inc2.full_reason);
    assert_eq!(inc2.parent.as_deref(), Some(name_of(&inc1).as_str()));
    // Only the changed pages are stored.
    let pages = full.db_size / 4096;
    assert!(
        inc1.changed_pages.is_some_and(|n| n > 0 && n < pages / 2),
        "{inc1:?}"
    );
    assert!(
        inc2.changed_pages.is_some_and(|n| n > 0 && n < pages / 2),
        "{inc2:?}"
    );
    let mut all = vec![name_of(&full), name_of(&inc1), name_of(&inc2)];
    all.sort();
    assert_eq!(names(&url), all);

    // `restore --latest`: the newest backup of `app`, composed from its chain.
    let loc = crate::location::open(&url).unwrap();
    let latest = crate::ops::chain::latest_required(&ctx(), loc.as_ref(), "app", None).unwrap();
    assert_eq!(latest, name_of(&inc2));
    let got = restored_rows(&loc.object_path(&latest), dir.path(), "latest.db");
    assert_eq!(got, rows(&db));
    assert!(got.contains(&(5000, "new row".into())));
    assert!(got.contains(&(5, "again".into())));
    assert!(got.contains(&(100, "changed".into())));
    assert!(!got.iter().any(|(id, _)| *id == 1995));
    assert_eq!(got.len(), 1992);
    // The middle link restores its own state.
    let mid = restored_rows(&inc1.archive, dir.path(), "mid.db");
    assert!(mid.contains(&(5, format!("note 5 {}", "x".repeat(200)))));
    assert!(!mid.iter().any(|(id, _)| *id == 5000));
}

#[test]
fn prune_keeps_the_parent_of_a_kept_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 30);
    let url = bucket("lt-prune");
    let old = backup_to(&db, &url, false);
    edit(&db, "DELETE FROM notes WHERE id < 10;");
    let base = backup_to(&db, &url, false);
    edit(&db, "UPDATE notes SET body = 'last' WHERE id = 20;");
    let inc = backup_to(&db, &url, true);
    assert_eq!(inc.parent.as_deref(), Some(name_of(&base).as_str()));

    let opts = PruneOptions {
        policy: Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = prune(&ctx(), &url, &opts).unwrap();
    assert_eq!(report.deleted, std::slice::from_ref(&old.archive));
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    let kept_base = report
        .verdicts
        .iter()
        .find(|v| v.name == name_of(&base))
        .expect("a verdict for the parent");
    assert!(kept_base.keep);
    assert_eq!(kept_base.reasons, [format!("parent of {}", name_of(&inc))]);
    let mut left = vec![name_of(&base), name_of(&inc)];
    left.sort();
    assert_eq!(names(&url), left);
    assert_eq!(
        restored_rows(&inc.archive, dir.path(), "after-prune.db"),
        rows(&db)
    );
}

#[test]
fn copy_from_a_local_directory_to_mem() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 20);
    let local = dir.path().join("backups");
    let r = backup_to(&db, &local, false);
    let url = bucket("lt-copy");
    let report = crate::ops::copy::copy(
        &ctx(),
        std::slice::from_ref(&r.archive),
        &url.join("offsite"),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.destination, "mem://lt-copy/offsite");
    assert_eq!(report.copied.len(), 1);
    let copied = &report.copied[0];
    assert_eq!(copied.destination, url.join("offsite").join(name_of(&r)));
    assert_eq!(copied.sha256, r.archive_sha256);
    assert_eq!(names(&url.join("offsite")), [name_of(&r)]);
    assert_eq!(
        restored_rows(&copied.destination, dir.path(), "from-mem.db"),
        rows(&db)
    );
    // Never over an object that is there.
    assert!(matches!(
        crate::ops::copy::copy(
            &ctx(),
            std::slice::from_ref(&r.archive),
            &url.join("offsite"),
            &NoProgress
        ),
        Err(crate::Error::WouldOverwrite { .. })
    ));
}
