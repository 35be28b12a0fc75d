//! Things happening at the same time: a prune racing an incremental, backups in the same second,
//! files written beside a database while it is backed up, a restore waiting for a lock, a small
//! disk, and a randomized mix of litevault processes on one location checked against the
//! invariants that must hold whatever the interleaving.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The stamp second of a litevault object name (`app-<stamp>[-N].tar.zst`).
fn stamp_of(name: &str) -> String {
    let (_, rest) = name.split_once('-').unwrap();
    rest[..16].to_string()
}

/// Backup object names in `dir`, sorted.
fn objects(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Takes two full backups of `db` (with `between` run in between) in the same second; retries
/// until the clock cooperates. Returns their archive names, older snapshot first.
fn two_in_one_second(env: &Env, db: &Path, between: &dyn Fn()) -> (PathBuf, PathBuf) {
    for _ in 0..20 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        if now.subsec_millis() > 500 {
            std::thread::sleep(Duration::from_millis(1000 - now.subsec_millis() as u64 + 5));
        }
        let a = env.backup(db, &["--dir", s(&env.backups())]);
        between();
        let b = env.backup(db, &["--dir", s(&env.backups())]);
        let (na, nb) = (name(&a), name(&b));
        if stamp_of(&na) == stamp_of(&nb) {
            return (a, b);
        }
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
    }
    panic!("two backups never fell in one second");
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Swaps the names of two files.
fn swap(a: &Path, b: &Path) {
    let tmp = a.with_extension("swap");
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
}

#[test]
fn newest_is_the_newest_snapshot_not_the_highest_number() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('old');",
    );
    let (older, newer) = two_in_one_second(&env, &db, &|| {
        make_db(&db, "UPDATE t SET x = 'new';");
    });
    // As when the older snapshot is published last: it takes the `-2`.
    assert!(name(&newer).ends_with("-2.tar.zst"), "{newer:?}");
    swap(&older, &newer);
    let (older, newer) = (newer, older);
    // The `-2` (older snapshot) would win by number: restore --latest takes the newer snapshot.
    env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&env.backups()),
        "--name",
        "app",
        "r.db",
    ])
    .ok();
    assert_eq!(query_text(&env.path("r.db"), "SELECT x FROM t"), "new");
    // And prune keeps it.
    let r = env
        .run(&["prune", "--dir", s(&env.backups()), "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(r["deleted"], serde_json::json!([s(&older)]), "{r}");
    assert_eq!(objects(&env.backups()), [name(&newer)]);
}

fn query_text(db: &Path, sql: &str) -> String {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn prune_never_counts_a_broken_link_nor_deletes_the_only_restorable_backup() {
    // The issue's interleaving, laid out by hand: F0 full; X an incremental on F0; Y a full
    // backup of the same second as X's name; F0 removed by a prune (here by hand). X, named
    // newest, cannot be restored: a --keep-last 1 must keep Y.
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 1);
    let dir = env.backups();
    let f0 = env.backup(&db, &["--dir", s(&dir)]);
    make_db(&db, "UPDATE items SET name = 'x' || name WHERE id % 7 = 0;");
    let (x, y) = two_in_one_second(&env, &db, &|| {});
    // x becomes an incremental on f0 (made again as one), y stays full.
    std::fs::remove_file(&x).unwrap();
    let x_report = env
        .run(&["backup", s(&db), "--dir", s(&dir), "--incremental", "--json"])
        .ok()
        .json();
    let x_made = PathBuf::from(x_report["archive"].as_str().unwrap());
    // It built on y (the newest): rebuild it on f0 by hiding y for a moment.
    std::fs::remove_file(&x_made).unwrap();
    let hidden = env.path("y.hidden");
    std::fs::rename(&y, &hidden).unwrap();
    let x_report = env
        .run(&["backup", s(&db), "--dir", s(&dir), "--incremental", "--json"])
        .ok()
        .json();
    assert_eq!(x_report["kind"], "incremental", "{x_report}");
    assert_eq!(x_report["parent"].as_str(), Some(name(&f0).as_str()));
    let x_now = PathBuf::from(x_report["archive"].as_str().unwrap());
    std::fs::rename(&hidden, &y).unwrap();
    // X gets a name after Y's in the same second, as when it was published last.
    let x_late = dir.join(format!("app-{}-9.tar.zst", stamp_of(&name(&y))));
    assert!(!x_late.exists());
    std::fs::rename(&x_now, &x_late).unwrap();
    std::fs::remove_file(&f0).unwrap();
    let _ = x;

    let r = env
        .run(&["prune", "--dir", s(&dir), "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(r["deleted"], serde_json::json!([]), "{r}");
    let broken = r["broken"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(broken.len(), 1, "{r}");
    assert!(
        broken[0]
            .as_str()
            .unwrap()
            .contains(&format!("parent {} missing", name(&f0))),
        "{r}"
    );
    let xv = r["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name(&x_late).as_str())
        .unwrap();
    assert_eq!(xv["reasons"][0], format!("broken: parent {} missing", name(&f0)));
    let yv = r["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name(&y).as_str())
        .unwrap();
    assert_eq!(yv["keep"], true, "{r}");
    assert_eq!(yv["reasons"][0], "last 1", "{r}");
    // Y restores.
    env.run(&["restore", s(&y), s(&env.path("r.db"))]).ok();
}

/// Starts `backup --incremental` of `db` (big enough to take a while) and stops it (SIGSTOP)
/// once its archive's temp file exists, i.e. after it chose its parent.
fn stopped_incremental(env: &Env, db: &Path) -> Child {
    let dir = env.backups();
    let mut child = env
        .command(&["backup", s(db), "--dir", s(&dir), "--incremental", "--json"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let temp = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
        if temp {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
            return child;
        }
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the backup never started its archive: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn an_incremental_whose_parent_is_pruned_while_it_runs_is_published_as_a_full_backup() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 48);
    let dir = env.backups();
    let f0 = env.backup(&db, &["--dir", s(&dir)]);
    make_db(&db, "UPDATE items SET name = 'x' || name WHERE id % 5 = 0;");
    let child = stopped_incremental(&env, &db);
    // Another run publishes a full backup, and a prune removes F0, the running one's parent.
    let y = env.backup(&db, &["--dir", s(&dir)]);
    let r = env
        .run(&["prune", "--dir", s(&dir), "--keep-last", "1", "--json"])
        .ok()
        .json();
    assert_eq!(r["deleted"], serde_json::json!([s(&f0)]), "{r}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(x["kind"], "full", "{x}");
    assert!(
        x["full_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("its parent {} vanished", name(&f0))),
        "{x}"
    );
    // Every backup left restores, and a second prune keeps a restorable one.
    for a in objects(&dir) {
        env.run(&["verify", s(&dir.join(&a))]).ok();
    }
    env.run(&["prune", "--dir", s(&dir), "--keep-last", "1"]).ok();
    let left = objects(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    env.run(&["restore", s(&dir.join(&left[0])), s(&env.path("r.db"))])
        .ok();
    let _ = y;
}

/// Runs `n` backups of `db` into `dir` at the same instant; returns their reports.
fn backups_at_once(
    env: &Env,
    db: &Path,
    dir: &str,
    n: usize,
    run: &dyn Fn(&[&str]) -> std::process::Command,
) -> Vec<serde_json::Value> {
    let mut children = Vec::new();
    for _ in 0..n {
        children.push(run(&["backup", s(db), "--dir", dir, "--json"]).spawn().unwrap());
    }
    let _ = env;
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a backup at the same instant failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

#[test]
fn backups_in_the_same_second_each_get_a_name() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let dir = env.backups();
    let mut names = BTreeSet::new();
    for _ in 0..6 {
        let reports = backups_at_once(&env, &db, s(&dir), 5, &|a| env.command(a));
        for r in reports {
            assert!(names.insert(r["archive"].as_str().unwrap().to_string()), "{r}");
        }
    }
    assert_eq!(objects(&dir).len(), 30);
    assert!(
        objects(&dir).iter().any(|n| n.ends_with("-2.tar.zst")),
        "no two backups ever fell in one second: {:?}",
        objects(&dir)
    );
}

#[test]
fn backups_in_the_same_second_each_get_a_name_in_a_bucket() {
    let srv = crate::s3server::S3Server::start();
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let url = format!("s3://{}/same", srv.bucket);
    let mut names = BTreeSet::new();
    for _ in 0..3 {
        let reports = backups_at_once(&env, &db, &url, 4, &|a| {
            let mut c = env.command(a);
            srv.apply_env(&mut c);
            c
        });
        for r in reports {
            assert!(names.insert(r["archive"].as_str().unwrap().to_string()), "{r}");
        }
    }
    assert_eq!(names.len(), 12);
    // Two runs that claim one name at the same instant both step aside (neither can tell it
    // was first), so under load a second's names may skip numbers (-5, -6, ...): what matters
    // is that a taken name moved on to a numbered one.
    assert!(
        names.iter().any(|n| n.contains("Z-")),
        "no two backups ever fell in one second: {names:?}"
    );
    // Every upload that stepped aside was aborted; nothing but the twelve backups is there.
    assert_eq!(srv.pending_uploads(), 0);
    let keys = srv.object_keys("");
    assert_eq!(keys.len(), 12, "{keys:?}");
}

#[test]
fn every_file_a_committed_row_names_is_in_the_archive() {
    let env = Env::new();
    let db = env.path("app.db");
    let up = env.path("uploads");
    std::fs::create_dir(&up).unwrap();
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE uploads(id INTEGER PRIMARY KEY, path TEXT NOT NULL);",
    );
    // The application: writes and fsyncs a file, then commits the row that names it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, up, stop) = (db.clone(), up.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let rel = format!("{}/new-{i}.bin", i % 7);
                std::fs::create_dir_all(up.join(format!("{}", i % 7))).unwrap();
                let mut f = std::fs::File::create(up.join(&rel)).unwrap();
                f.write_all(&i.to_le_bytes().repeat(64)).unwrap();
                f.sync_all().unwrap();
                conn.execute("INSERT INTO uploads(path) VALUES (?1)", [&rel])
                    .unwrap();
                i += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut missing = Vec::new();
    for (round, codec) in ["zstd", "zstd", "zstd", "zstd", "zstd", "zstd", "gzip", "gzip"]
        .iter()
        .enumerate()
    {
        let archive = env.backup(&db, &["--include", "uploads", "--compression", codec]);
        let show = env.run(&["show", s(&archive), "--json"]).ok().json();
        let stored: BTreeSet<String> = show["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect();
        let out = env.path(&format!("r{round}.db"));
        env.run(&["restore", s(&archive), s(&out)]).ok();
        let conn = Connection::open(&out).unwrap();
        let mut stmt = conn.prepare("SELECT path FROM uploads").unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(!rows.is_empty());
        for r in rows {
            if !stored.contains(&format!("uploads/{r}")) {
                missing.push(format!("{codec} round {round}: {r}"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 20, "the writer wrote only {written} files");
    assert!(
        missing.is_empty(),
        "rows name files the archive lacks: {missing:?}"
    );
}

#[test]
fn restore_gives_up_after_the_busy_timeout_asked() {
    for wal in [false, true] {
        let env = Env::new();
        let db = env.path("app.db");
        let mode = if wal { "WAL" } else { "DELETE" };
        make_db(
            &db,
            &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(x); INSERT INTO t VALUES (1);"),
        );
        let archive = env.backup(&db, &[]);
        let holder = Connection::open(&db).unwrap();
        holder
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2);")
            .unwrap();
        for (timeout, max) in [("2", 12.0), ("0", 8.0)] {
            let started = Instant::now();
            let r = env
                .run(&[
                    "restore",
                    s(&archive),
                    s(&db),
                    "--overwrite",
                    "--busy-timeout",
                    timeout,
                ])
                .code(4);
            let took = started.elapsed().as_secs_f64();
            assert!(
                took < max,
                "{mode}: --busy-timeout {timeout} took {took:.1} s: {}",
                r.stderr
            );
            let want = format!("busy timeout of {timeout} s");
            assert!(r.stderr.contains(&want), "{mode}: {}", r.stderr);
        }
        holder.execute_batch("ROLLBACK").unwrap();
        drop(holder);
        // Nothing changed; and with the lock gone the restore goes through.
        env.run(&[
            "restore",
            s(&archive),
            s(&db),
            "--overwrite",
            "--busy-timeout",
            "0",
        ])
        .ok();
    }
}

/// Runs `sh -c SCRIPT` in a private mount namespace with a small tmpfs at `$SMALL`.
fn on_small_disk(env: &Env, mib: u32, script: &str) -> Run {
    let small = env.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let full = format!("mount -t tmpfs -o size={mib}m tmpfs \"$SMALL\" && {script}");
    let out = std::process::Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", &full])
        .current_dir(env.dir.path())
        .env("SMALL", &small)
        .env("LV", bin())
        .env("LITEVAULT_STATE_DIR", env.path(".state"))
        .output()
        .expect("unshare (util-linux) runs the small-disk tests");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_backup_that_fits_a_small_disk_is_not_refused() {
    let env = Env::new();
    let db = env.path("app.db");
    // ~12 MiB of compressible rows: the archive is a fraction of it.
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000)
         INSERT INTO t SELECT printf('row %08d of a compressible table', i) FROM n;",
    );
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size > 6 << 20, "{size}");
    let r = on_small_disk(
        &env,
        5,
        "\"$LV\" backup app.db --dir \"$SMALL\" --json && ls -la \"$SMALL\"",
    );
    assert_eq!(
        r.code, 0,
        "a backup that fits was refused: {}\n{}",
        r.stderr, r.stdout
    );
    // An SQL dump: the snapshot's temp copy (the database's size) and the small dump fit in
    // 12 MiB, where 1.5x the database was asked for before.
    assert!(size > 8 << 20 && size < 10 << 20, "{size}");
    let r = on_small_disk(
        &env,
        12,
        "\"$LV\" backup app.db --dir \"$SMALL\" --format sql --json && ls -A \"$SMALL\"",
    );
    assert_eq!(
        r.code, 0,
        "a dump that fits was refused: {}\n{}",
        r.stderr, r.stdout
    );
    // One that does not fit fails cleanly on the full disk, leaving nothing behind.
    let r = on_small_disk(
        &env,
        5,
        "\"$LV\" backup app.db --dir \"$SMALL\" --compression none; rc=$?; ls -A \"$SMALL\"; exit $rc",
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("no space left"), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "", "left behind: {}", r.stdout);
}

/// The invariants of a location after any mix of runs: every archive a run reported as written
/// is there and restorable, or a prune reported deleting it; a name that had a restorable
/// backup still has one; no temp file is left.
struct Ledger {
    written: BTreeSet<String>,
    deleted: BTreeSet<String>,
    had_restorable: bool,
}

/// One randomized round: `procs` litevault processes at once on `dir` (a directory or a
/// bucket), some killed with SIGKILL at a random moment.
#[allow(clippy::too_many_arguments)]
fn mixed_round(
    env: &Env,
    db: &Path,
    dir: &str,
    rng: &mut u64,
    procs: usize,
    ledger: &mut Ledger,
    apply: &dyn Fn(&mut std::process::Command),
    stats: &mut BTreeMap<&'static str, u32>,
) {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let mut children = Vec::new();
    for _ in 0..procs {
        let (kind, args): (&'static str, Vec<String>) = match next() % 8 {
            0 | 1 => (
                "incremental",
                vec![
                    "backup".into(),
                    s(db).into(),
                    "--dir".into(),
                    dir.into(),
                    "--incremental".into(),
                    "--json".into(),
                ],
            ),
            2 | 3 => (
                "full",
                vec![
                    "backup".into(),
                    s(db).into(),
                    "--dir".into(),
                    dir.into(),
                    "--json".into(),
                ],
            ),
            4 => (
                "prune",
                vec![
                    "prune".into(),
                    "--dir".into(),
                    dir.into(),
                    "--keep-last".into(),
                    format!("{}", 1 + next() % 2),
                    "--json".into(),
                ],
            ),
            5 => (
                "restore",
                vec![
                    "restore".into(),
                    "--latest".into(),
                    "--dir".into(),
                    dir.into(),
                    "--name".into(),
                    "app".into(),
                    format!("{}", env.path(&format!("r-{}.db", next() % 1_000_000)).display()),
                    "--json".into(),
                ],
            ),
            6 => match ledger.written.iter().next_back() {
                // Copy a backup elsewhere while others prune it (it may be gone by then).
                Some(archive) => (
                    "copy",
                    vec![
                        "copy".into(),
                        archive.clone(),
                        s(&env.path("copies")).into(),
                        "--json".into(),
                    ],
                ),
                None => (
                    "list",
                    vec!["list".into(), "--dir".into(), dir.into(), "--json".into()],
                ),
            },
            _ => ("verify", vec!["verify".into(), s(db).into(), "--json".into()]),
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = env.command(&argv);
        apply(&mut c);
        // Any run but a prune may be killed: a killed prune cannot report what it deleted
        // before it died, so the ledger could not tell its deletions from a loss.
        let kill_after = (kind != "prune" && next() % 5 == 0).then(|| Duration::from_millis(next() % 400));
        *stats.entry(kind).or_default() += 1;
        children.push((kind, c.spawn().unwrap(), kill_after, Instant::now()));
    }
    // Writes to the source meanwhile.
    make_db(
        db,
        &format!(
            "UPDATE items SET name = '{}' || name WHERE id % 11 = {};",
            next() % 10,
            next() % 11
        ),
    );
    let mut running = children;
    while !running.is_empty() {
        let mut still = Vec::new();
        for (kind, mut child, kill_after, started) in running {
            if let Some(after) = kill_after {
                if started.elapsed() >= after {
                    let _ = child.kill();
                    let _ = child.wait();
                    *stats.entry("killed").or_default() += 1;
                    continue;
                }
            }
            match child.try_wait().unwrap() {
                None => still.push((kind, child, kill_after, started)),
                Some(_) => {
                    let out = child.wait_with_output().unwrap();
                    let code = out.status.code().unwrap_or(-1);
                    let json: serde_json::Value =
                        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(!stderr.contains("panicked"), "{kind}: {stderr}");
                    match kind {
                        "incremental" | "full" => {
                            assert_eq!(code, 0, "{kind} failed: {stderr}");
                            ledger
                                .written
                                .insert(json["archive"].as_str().unwrap().to_string());
                            ledger.had_restorable = true;
                        }
                        "prune" => {
                            // Refusing to remove every backup is fine; failing is not.
                            if code == 0 {
                                for d in json["deleted"].as_array().unwrap() {
                                    ledger.deleted.insert(d.as_str().unwrap().to_string());
                                }
                            } else {
                                assert!(stderr.contains("every backup") || code == 2, "prune: {stderr}");
                            }
                        }
                        // No backup yet, or one restore racing another to the same name is
                        // fine; a damaged chain is not.
                        "restore" => assert!(
                            code == 0 || (code == 1 && stderr.contains("no such file")),
                            "restore: {code} {stderr}"
                        ),
                        "copy" => assert!(
                            code == 0
                                || (code == 1 && stderr.contains("no such file"))
                                // Copied already (copy never replaces what is there).
                                || (code == 4 && stderr.contains("already exists")),
                            "copy: {code} {stderr}"
                        ),
                        _ => assert_eq!(code, 0, "{kind}: {stderr}"),
                    }
                }
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Checks a [`Ledger`] against what a location holds (`dir`: a directory or `s3://...`;
/// `apply` sets a command's environment for it).
fn check_ledger(
    env: &Env,
    dir: &str,
    ledger: &Ledger,
    apply: &dyn Fn(&mut std::process::Command),
) -> Vec<String> {
    let run = |args: &[&str]| -> (i32, String, String) {
        let mut c = env.command(args);
        apply(&mut c);
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut violations = Vec::new();
    let (code, listed, err) = run(&["list", "--dir", dir, "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let present: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect();
    for w in &ledger.written {
        if !present.contains(w) && !ledger.deleted.contains(w) {
            violations.push(format!(
                "{w}: reported written, gone, and no prune reported deleting it"
            ));
        }
    }
    let mut restorable = 0;
    for p in &present {
        let (code, _, err) = run(&["verify", p]);
        if code == 0 {
            restorable += 1;
        } else if ledger.written.contains(p) {
            violations.push(format!("{p}: reported written, but does not verify: {err}"));
        }
    }
    if ledger.had_restorable && restorable == 0 {
        violations.push(format!("no restorable backup left of {present:?}"));
    }
    if dir.starts_with("s3://") {
        return violations;
    }
    let dir = Path::new(dir);
    let temps: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    if !temps.is_empty() {
        // Killed runs may leave temp files; the next run's sweep removes them.
        env.run(&["prune", "--dir", s(dir), "--keep-last", "1000"]).ok();
        let left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        if !left.is_empty() {
            violations.push(format!("temp files survive a clean run: {left:?}"));
        }
    }
    violations
}

/// Runs `rounds` randomized rounds of `procs` processes on `dir` (with `apply` setting each
/// command's environment) and asserts that no invariant was violated.
fn random_mix(env: &Env, dir: &str, rounds: u32, procs: usize, apply: &dyn Fn(&mut std::process::Command)) {
    let db = env.path("app.db");
    make_sized_db(&db, 2);
    std::fs::create_dir(env.path("copies")).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut ledger = Ledger {
        written: BTreeSet::new(),
        deleted: BTreeSet::new(),
        had_restorable: false,
    };
    let mut stats = BTreeMap::new();
    let mut violations = Vec::new();
    for _ in 0..rounds {
        mixed_round(env, &db, dir, &mut rng, procs, &mut ledger, apply, &mut stats);
        violations.extend(check_ledger(env, dir, &ledger, apply));
    }
    eprintln!(
        "seed {seed}: {rounds} rounds on {dir}, runs {stats:?}, violations {}",
        violations.len()
    );
    assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
}

#[test]
fn a_random_mix_of_runs_on_one_location_keeps_every_invariant() {
    let env = Env::new();
    let dir = env.backups();
    random_mix(&env, s(&dir), 8, 5, &|_| {});
}

#[test]
fn a_random_mix_of_runs_on_one_bucket_keeps_every_invariant() {
    let srv = crate::s3server::S3Server::start();
    let env = Env::new();
    let url = format!("s3://{}/mix", srv.bucket);
    random_mix(&env, &url, 5, 4, &|c: &mut std::process::Command| {
        srv.apply_env(c)
    });
}
