//! Replication at the library level: a [`Replicator`] driven by hand on a `mem://` location
//! (with injected faults), and restores that replay its segments.

use std::time::{Duration, Instant};

use super::*;
use crate::ops::replica::{self, Replay};
use crate::ops::replicate::{ReplicateOptions, Replicator};

fn replicator(db: &Path, url: &Path) -> Replicator {
    let mut opts = ReplicateOptions::new(url);
    opts.interval = Duration::from_millis(100);
    Replicator::new(&ctx(), db, opts).unwrap()
}

/// Restores the latest replicated point of `app` in `url` to `target`.
fn restore_point(url: &Path, target: &Path, at_ms: Option<i64>) -> crate::Result<crate::RestoreReport> {
    let loc = crate::location::open(url)?;
    let point = match replica::newest_state(&ctx(), loc.as_ref(), "app", at_ms)?.expect("a state") {
        replica::Newest::Point(p) => p,
        replica::Newest::Archive(a) => {
            return restore(
                &ctx(),
                &loc.object_path(&a),
                target,
                &RestoreOptions::default(),
                &NoProgress,
            )
        }
    };
    let opts = RestoreOptions {
        replay: Some(Replay {
            location: url.to_path_buf(),
            point: point.clone(),
        }),
        ..Default::default()
    };
    restore(&ctx(), &loc.object_path(&point.base), target, &opts, &NoProgress)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn transactions_wait_while_the_location_fails_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 10);
    let (faulty, url) = faulty_bucket("replication-outage");
    let mut rep = replicator(&db, &url);
    rep.poll().unwrap(); // the base
    faulty.faults().fail_finish = true;
    for i in 100..130 {
        edit(
            &db,
            &format!("INSERT INTO notes VALUES ({i}, 'during the outage')"),
        );
        rep.poll().unwrap();
    }
    rep.ship().unwrap();
    wait_until("the shipping error is seen", || rep.status().last_error.is_some());
    assert_eq!(rep.status().pending, 30);
    assert_eq!(rep.status().shipped, 0);
    // Back: what waited goes out, in order, and more after it.
    faulty.faults().fail_finish = false;
    edit(&db, "INSERT INTO notes VALUES (200, 'after')");
    rep.poll().unwrap();
    rep.ship().unwrap();
    assert!(rep.flush(Duration::from_secs(30)));
    let st = rep.status();
    assert_eq!((st.pending, st.shipped, st.gaps), (0, 31, 0), "{st:?}");
    let target = dir.path().join("restored.db");
    let r = restore_point(&url, &target, None).unwrap();
    assert_eq!(r.replayed.unwrap().txid, 31);
    assert_eq!(rows(&target), rows(&db));
}

#[test]
fn a_missing_segment_ends_the_history_before_it_and_a_changed_one_fails_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    let url = bucket("replication-holes");
    let mut rep = replicator(&db, &url);
    rep.poll().unwrap();
    let mut states = Vec::new();
    for seg in 0..3 {
        edit(
            &db,
            &format!("INSERT INTO notes VALUES ({}, 'segment {seg}')", 100 + seg),
        );
        rep.poll().unwrap();
        rep.ship().unwrap();
        assert!(rep.flush(Duration::from_secs(10)));
        states.push(rows(&db));
    }
    let loc = crate::location::open(&url).unwrap();
    let streams = replica::streams(loc.as_ref(), "app").unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].segments.len(), 3, "{streams:?}");

    // Segment 1 gone: the history ends with segment 0; segment 2 is an orphan, never replayed.
    let seg1 = streams[0].segments[1].clone();
    let kept = loc.read_range(&seg1, 0, u64::MAX).unwrap();
    loc.delete(&seg1).unwrap();
    let streams = replica::streams(loc.as_ref(), "app").unwrap();
    assert_eq!(streams[0].orphaned.len(), 1);
    let target = dir.path().join("a.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(rows(&target), states[0]);

    // Segment 1 back with one byte changed: the restore fails and leaves nothing behind.
    let mut plain = zstd::decode_all(&kept[..]).unwrap();
    let last = plain.len() - 10;
    plain[last] ^= 0x40;
    let mut out = loc.create(&seg1, &Default::default()).unwrap();
    std::io::Write::write_all(&mut out, &zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    out.finish(None).unwrap();
    let target = dir.path().join("b.db");
    let err = restore_point(&url, &target, None).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(!target.exists());
}

#[test]
fn prune_takes_a_bases_segments_with_it_and_the_kept_stream_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    let url = bucket("replication-prune");
    let mut first = replicator(&db, &url);
    first.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (100, 'first stream')");
    first.poll().unwrap();
    first.ship().unwrap();
    assert!(first.flush(Duration::from_secs(10)));
    let old_base = first.status().base.unwrap();
    drop(first);
    // A full backup a second later, then a second replicator (its base builds on that one).
    std::thread::sleep(Duration::from_millis(1100));
    backup_to(&db, &url, false);
    let mut second = replicator(&db, &url);
    second.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (101, 'second stream')");
    second.poll().unwrap();
    second.ship().unwrap();
    assert!(second.flush(Duration::from_secs(10)));
    let old_stream = crate::format::segment::stream_of(&old_base);
    assert!(names(&url)
        .iter()
        .any(|n| n.starts_with(&format!("{old_stream}."))));

    let opts = crate::ops::prune::PruneOptions {
        policy: crate::ops::prune::Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = crate::ops::prune::prune(&ctx(), &url, &opts).unwrap();
    let left = names(&url);
    assert!(
        !left.iter().any(|n| n.starts_with(&format!("{old_stream}."))),
        "{left:?} ({report:?})"
    );
    assert!(!left.contains(&old_base), "{left:?}");
    let archives = left.iter().filter(|n| n.ends_with(".tar.zst")).count();
    assert_eq!(archives, 2, "the full backup and the new base: {left:?}");
    let target = dir.path().join("after-prune.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(rows(&target), rows(&db));

    // A plain backup newer than the live stream's base: keep-last 1 keeps it, and the base a
    // replicator may still be writing after (with its parent) stays too.
    std::thread::sleep(Duration::from_millis(1100));
    backup_to(&db, &url, false);
    let live = second.status().base.unwrap();
    let report = crate::ops::prune::prune(&ctx(), &url, &opts).unwrap();
    assert!(names(&url).contains(&live), "{report:?}");
    let target = dir.path().join("after-second-prune.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(rows(&target), rows(&db));
}

#[test]
fn small_segments_split_a_big_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    let url = bucket("replication-backlog");
    let mut opts = ReplicateOptions::new(&url);
    opts.interval = Duration::from_millis(100);
    opts.max_segment_bytes = 64 << 10;
    let mut rep = Replicator::new(&ctx(), &db, opts).unwrap();
    rep.poll().unwrap();
    // A backlog of about 1 MiB of frames: read in 64 KiB segments, each at a commit.
    for i in 0..100 {
        edit(
            &db,
            &format!("INSERT INTO notes VALUES ({}, '{}')", 1000 + i, "y".repeat(8000)),
        );
    }
    while rep.poll().unwrap() {
        rep.ship().unwrap();
    }
    rep.ship().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    let st = rep.status();
    assert!(st.segments >= 10, "{st:?}");
    assert_eq!((st.bases, st.gaps), (1, 0), "{st:?}");
    let target = dir.path().join("restored.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(rows(&target), rows(&db));
}

#[test]
fn a_scheduled_new_base_is_not_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    let url = bucket("replication-rebase");
    let mut opts = ReplicateOptions::new(&url);
    opts.interval = Duration::from_millis(100);
    opts.base_every = Some(Duration::from_millis(300));
    let mut rep = Replicator::new(&ctx(), &db, opts).unwrap();
    rep.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (1000, 'before the new base')");
    rep.poll().unwrap();
    rep.ship().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    // Old enough and changed since: the next poll takes a new base, and history goes on.
    // (A slow machine may take more than one; none of them is a gap.)
    std::thread::sleep(Duration::from_millis(350));
    rep.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (5000, 'after the new base')");
    rep.poll().unwrap();
    rep.ship().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    let st = rep.status();
    assert!(st.bases >= 2 && st.gaps == 0, "{st:?}");
    let target = dir.path().join("restored.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(rows(&target), rows(&db));
}

/// New bases are taken from a private copy, with no lock on the database: the application's
/// own `wal_checkpoint(RESTART)`s (every 100 commits, far enough apart that the replicator
/// misses none), which wait for every reader, all complete while several bases of a 20 MB
/// database are taken (a base read under a read transaction holds them off,
/// and the `-wal` grows meanwhile). What was written during the copies is all restored.
#[test]
fn bases_hold_no_read_transaction_the_applications_checkpoints_would_wait_for() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    edit(
        &db,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) \
         INSERT INTO notes SELECT 100000 + x, hex(randomblob(2000)) FROM c",
    );
    let url = bucket("replication-no-pin");
    let mut opts = ReplicateOptions::new(&url);
    opts.interval = Duration::from_millis(100);
    opts.base_every = Some(Duration::from_millis(150));
    let mut rep = Replicator::new(&ctx(), &db, opts).unwrap();
    rep.poll().unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (busy, restarts) = (
        std::sync::Arc::new(AtomicU64::new(0)),
        std::sync::Arc::new(AtomicU64::new(0)),
    );
    let writer = {
        let (db, stop, busy, restarts) = (db.clone(), stop.clone(), busy.clone(), restarts.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
            // A checkpoint held up by a reader says so at once (busy = 1) instead of waiting.
            conn.busy_timeout(Duration::ZERO).unwrap();
            let mut i = 1000;
            while !stop.load(Ordering::SeqCst) {
                conn.execute("INSERT INTO notes VALUES (?1, 'written during the bases')", [i])
                    .unwrap();
                i += 1;
                if i % 100 == 0 {
                    let b: i64 = conn
                        .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
                        .unwrap();
                    busy.fetch_add(b as u64, Ordering::SeqCst);
                    restarts.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) || rep.status().bases < 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", rep.status());
        rep.poll().unwrap();
        if rep.due() {
            rep.ship().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    rep.sync().unwrap();
    assert!(rep.flush(Duration::from_secs(30)));
    let st = rep.status();
    assert!(st.bases >= 4 && st.gaps == 0, "{st:?}");
    assert!(restarts.load(Ordering::SeqCst) >= 5);
    assert_eq!(
        busy.load(Ordering::SeqCst),
        0,
        "checkpoints held up while bases were taken ({st:?})"
    );
    let target = dir.path().join("restored.db");
    let r = restore_point(&url, &target, None).unwrap();
    let (got, want) = (rows(&target), rows(&db));
    let ids = |v: &[(i64, String)]| v.iter().map(|r| r.0).filter(|i| *i < 100000).collect::<Vec<_>>();
    assert!(
        got == want,
        "restored {} rows (last {:?}), want {} (last {:?}); {:?}; {st:?}; {:?}",
        got.len(),
        ids(&got).last(),
        want.len(),
        ids(&want).last(),
        r.replayed,
        names(&url)
    );
}

/// The first base is written by the shipping thread; a caller that must know the location
/// takes it (the command line, before it starts an application) hears at once why it could
/// not be written; the base is written once the location takes it.
#[test]
fn waiting_for_the_first_base_reports_the_location_refusing_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 5);
    // The application is open, with a -wal: the base is copied, then written by the thread.
    let app = rusqlite::Connection::open(&db).unwrap();
    app.execute("INSERT INTO notes VALUES (100, 'in the -wal')", [])
        .unwrap();
    let (faulty, url) = faulty_bucket("replication-first-base");
    faulty.faults().fail_finish = true;
    let mut rep = replicator(&db, &url);
    rep.poll().unwrap();
    let err = rep.wait_for_bases(Some(Duration::from_secs(30))).unwrap_err();
    assert!(
        err.to_string()
            .contains("write a base to mem://replication-first-base"),
        "{err}"
    );
    assert_eq!(rep.status().bases, 0);
    // The shipping thread keeps trying: once the location takes it, the base is written.
    faulty.faults().fail_finish = false;
    assert!(rep.flush(Duration::from_secs(30)));
    assert_eq!(rep.status().bases, 1);
    assert!(
        names(&url).iter().any(|n| n.ends_with(".tar.zst")),
        "{:?}",
        names(&url)
    );
    drop(app);
}

/// Every base is a state the database really had, however the application checkpoints while
/// it is copied: transfers between accounts on different pages keep the total constant, the
/// application runs `wal_checkpoint(TRUNCATE)` (which empties the `-wal` a copy is following)
/// every 20 transfers, and each base archive restored alone has the constant total.
#[test]
fn every_base_is_a_real_state_while_the_application_truncates_the_wal() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 0);
    edit(
        &db,
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000)
         INSERT INTO accounts SELECT x, 100, randomblob(1500) FROM c;",
    );
    let total = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0))
            .unwrap()
    };
    let url = bucket("replication-truncates");
    let mut opts = ReplicateOptions::new(&url);
    opts.interval = Duration::from_millis(100);
    opts.base_every = Some(Duration::from_millis(100));
    let mut rep = Replicator::new(&ctx(), &db, opts).unwrap();
    rep.poll().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
            conn.busy_timeout(Duration::ZERO).unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::SeqCst) {
                let (from, to) = (1 + (n * 7919) % 3000, 1 + (n * 104_729 + 1500) % 3000);
                conn.execute_batch(&format!(
                    "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = {from};
                     UPDATE accounts SET balance = balance + 1 WHERE id = {to}; COMMIT;"
                ))
                .unwrap();
                n += 1;
                if n % 20 == 0 {
                    let _: i64 = conn
                        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        // A poll may fail while a base waits (the slow way's read transaction is refused);
        // it is tried again.
        let _ = rep.poll();
        if rep.due() {
            rep.ship().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    rep.sync().unwrap();
    assert!(rep.flush(Duration::from_secs(60)));
    let st = rep.status();
    assert!(st.bases >= 3, "{st:?}");
    let loc = crate::location::open(&url).unwrap();
    let bases: Vec<String> = names(&url)
        .into_iter()
        .filter(|n| n.ends_with(".tar.zst"))
        .collect();
    for (i, base) in bases.iter().enumerate() {
        let target = dir.path().join(format!("base-{i}.db"));
        restore(
            &ctx(),
            &loc.object_path(base),
            &target,
            &RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(
            total(&target),
            300_000,
            "base {base} is not a state the database had ({st:?})"
        );
    }
    let target = dir.path().join("latest.db");
    restore_point(&url, &target, None).unwrap();
    assert_eq!(total(&target), 300_000);
    assert_eq!(total(&db), 300_000);
}

/// A replicator of a new 20-row database in `dir` to bucket `name`, with a base every
/// `base_every_ms`, that has taken its first base, read a transaction, and then taken a
/// scheduled base (copied from the file while the WAL is followed: its stream starts with the
/// frames of the current generation).
fn after_a_copied_base(dir: &Path, name: &str, base_every_ms: u64) -> (PathBuf, PathBuf, Replicator) {
    let db = make_db(dir, 20);
    let url = bucket(name);
    let mut opts = ReplicateOptions::new(&url);
    opts.interval = Duration::from_millis(100);
    opts.base_every = Some(Duration::from_millis(base_every_ms));
    let mut rep = Replicator::new(&ctx(), &db, opts).unwrap();
    rep.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (100, 'a first -wal')");
    rep.poll().unwrap();
    std::thread::sleep(Duration::from_millis(base_every_ms + 10));
    rep.poll().unwrap();
    rep.wait_for_bases(Some(Duration::from_secs(30))).unwrap();
    assert!(rep.status().bases >= 2, "{:?}", rep.status());
    (db, url, rep)
}

/// The replicator's connection keeps the application's last close from checkpointing the
/// `-wal` away, also after a base copied from the database file: a descriptor of that file
/// closed by the replicator would drop its connection's locks on it (POSIX locks are per
/// process), and the close would then delete a `-wal` whose last frames were not read yet.
#[test]
fn the_applications_last_close_leaves_the_wal_to_the_replicator_after_a_copied_base() {
    let dir = tempfile::tempdir().unwrap();
    let (db, url, mut rep) = after_a_copied_base(dir.path(), "replication-close", 1);
    let wal = crate::fsutil::sidecar(&db, "-wal");
    for i in 0..3 {
        // The application is another process (SQLite tells the connections of one process
        // apart itself, without POSIX locks).
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(sys.argv[2])\nc.commit()\nc.close()")
            .arg(&db)
            .arg(format!("INSERT INTO notes VALUES ({}, 'then closed')", 200 + i))
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(wal.exists(), "the application's close removed the -wal");
    }
    rep.sync().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    assert_eq!(rep.status().gaps, 0, "{:?}", rep.status());
    let target = dir.path().join("restored.db");
    restore_point(&url, &target, None).unwrap();
    assert!(rows(&target) == rows(&db), "{:?}", ids(&target));
}

/// A `-wal` emptied by the application's `wal_checkpoint(TRUNCATE)` before the replicator read
/// its last transactions is a gap: a new base takes them in (they were lost at a stop, silently).
#[test]
fn a_wal_truncated_before_its_last_frames_were_read_is_a_gap_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), 20);
    let url = bucket("replication-truncated");
    let mut rep = replicator(&db, &url);
    rep.poll().unwrap();
    edit(&db, "INSERT INTO notes VALUES (100, 'read')");
    rep.poll().unwrap();
    for i in 0..5 {
        edit(
            &db,
            &format!("INSERT INTO notes VALUES ({}, 'not read yet')", 200 + i),
        );
    }
    edit(&db, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_eq!(
        std::fs::metadata(crate::fsutil::sidecar(&db, "-wal"))
            .unwrap()
            .len(),
        0
    );
    rep.sync().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    let st = rep.status();
    assert_eq!(st.gaps, 1, "{st:?}");
    assert!(
        st.last_gap.as_deref().unwrap_or_default().contains("emptied"),
        "{st:?}"
    );
    let target = dir.path().join("restored.db");
    restore_point(&url, &target, None).unwrap();
    assert!(rows(&target) == rows(&db), "{st:?} {:?}", ids(&target));
}

/// The ids of the notes past the first 20.
fn ids(db: &Path) -> Vec<i64> {
    rows(db)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| *id >= 20)
        .collect()
}

/// A scheduled new base needs a transaction committed after the last base's state: the
/// frames a base itself holds (its WAL generation's, read from the start) do not count, so an
/// idle database costs no base (it cost one every `base_every`, measured: 12 bases in 30 idle
/// seconds with a base every 5 s).
#[test]
fn an_idle_database_gets_no_scheduled_base() {
    let dir = tempfile::tempdir().unwrap();
    let (db, url, mut rep) = after_a_copied_base(dir.path(), "replication-idle-bases", 30);
    let bases = rep.status().bases;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(40));
        rep.poll().unwrap();
        rep.wait_for_bases(Some(Duration::from_secs(30))).unwrap();
    }
    assert_eq!(rep.status().bases, bases, "{:?}", rep.status());
    // Written again: the next one is due.
    edit(&db, "INSERT INTO notes VALUES (101, 'two')");
    rep.poll().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    rep.poll().unwrap();
    rep.wait_for_bases(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(rep.status().bases, bases + 1, "{:?}", rep.status());
    rep.sync().unwrap();
    assert!(rep.flush(Duration::from_secs(10)));
    let target = dir.path().join("restored.db");
    restore_point(&url, &target, None).unwrap();
    assert!(rows(&target) == rows(&db), "{:?}", ids(&target));
}
