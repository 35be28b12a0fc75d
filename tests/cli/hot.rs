//! Live databases: backups while another process commits continuously, restores under a
//! process that holds the database open, kill -9 at any instant of a backup or a restore, and
//! memory that does not grow with the database.

use std::path::Path;
use std::time::Duration;

use crate::helper::{spawn, wait_for};
use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The bank database the writer works on: 100 accounts of 1000, a log, a counter, and some
/// bulk so that a backup takes a while.
pub(crate) fn bank_db(path: &Path, journal: &str, bulk_mb: usize) {
    make_db(
        path,
        &format!(
            "PRAGMA journal_mode={journal};
             CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INT NOT NULL);
             INSERT INTO acct SELECT value, 1000 FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) SELECT value FROM s);
             CREATE TABLE log(id INTEGER PRIMARY KEY, a INT, b INT, note TEXT);
             CREATE TABLE counter(n INT NOT NULL); INSERT INTO counter VALUES (0);
             CREATE TABLE bulk(id INTEGER PRIMARY KEY, data BLOB);
             INSERT INTO bulk(data) SELECT randomblob(4000) FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < {}) SELECT value FROM s);",
            bulk_mb * 256
        ),
    );
}

pub(crate) fn check_bank_invariants(db: &Path) -> i64 {
    assert_eq!(integrity(db), "ok");
    assert_eq!(
        query_i64(db, "SELECT sum(bal) FROM acct"),
        100_000,
        "money created or lost"
    );
    let n = query_i64(db, "SELECT n FROM counter");
    assert_eq!(
        query_i64(db, "SELECT count(*) FROM log"),
        n,
        "log and counter disagree"
    );
    n
}

fn hot_backup(journal: &str) {
    let env = Env::new();
    let db = env.path("bank.db");
    bank_db(&db, journal, 40);
    let mut writer = spawn("writer", &db, env.dir.path());
    wait_for(&env.path("writer-ready"), 60);
    std::thread::sleep(Duration::from_millis(200));
    let n_start = query_i64(&db, "SELECT n FROM counter");
    let r = env.run(&["backup", s(&db), "--json"]).ok().json();
    let n_end = query_i64(&db, "SELECT n FROM counter");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(env.path("stop"), b"").unwrap();
    assert!(writer.wait().unwrap().success());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("writer.json")).unwrap()).unwrap();

    // WAL: pages streamed from one read transaction, checks on connections proven to be on
    // the same snapshot; rollback journal: a copy through the backup API's step loop.
    assert_eq!(r["streamed"], journal == "wal", "{r}");
    let archive = r["archive"].as_str().unwrap();
    // Every check, row counts against the manifest included, on the snapshot as archived.
    env.run(&["verify", archive]).ok();
    let restored = env.path("restored.db");
    env.run(&["restore", archive, s(&restored)]).ok();
    let n = check_bank_invariants(&restored);
    assert!(
        n >= n_start && n <= n_end,
        "snapshot {n} not between {n_start} and {n_end}"
    );
    assert!(
        n_end > n_start,
        "the writer made no progress during the backup ({journal})"
    );
    eprintln!(
        "{journal}: writer committed {} times during the backup, restarts {}, writer stats {stats}",
        n_end - n_start,
        r["restarts"]
    );
}

#[test]
fn hot_backup_with_a_continuous_writer_in_wal_mode() {
    hot_backup("wal");
}

#[test]
fn hot_backup_with_a_continuous_writer_in_rollback_mode_finishes() {
    hot_backup("delete");
}

#[test]
fn live_restore_is_seen_by_a_process_holding_the_database_open() {
    let env = Env::new();
    let src = env.path("src.db");
    make_db(
        &src,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) SELECT 'new' FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 10) SELECT value FROM s);
         CREATE TABLE fresh(y);",
    );
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(&target, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('a'), ('b'), ('c');");
    let mut holder = spawn("holder", &target, env.dir.path());
    wait_for(&env.path("ready"), 60);
    let plan = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--overwrite",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert!(
        plan["replaces"]["in_use"].is_string(),
        "the holder's connection is seen: {plan}"
    );
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(r["plan"]["strategy"], "live");
    std::fs::write(env.path("go"), b"").unwrap();
    wait_for(&env.path("holder.json"), 60);
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("holder.json")).unwrap()).unwrap();
    std::fs::write(env.path("done"), b"").unwrap();
    assert!(holder.wait().unwrap().success());
    assert_eq!(seen["before"], 3);
    assert_eq!(seen["after"], 10, "the open connection sees the restored rows");
    assert_eq!(seen["tables"], "fresh,t");
    // The holder's write after the restore went into the restored database, not a lost inode.
    assert_eq!(query_i64(&target, "SELECT count(*) FROM t"), 11);
    assert_eq!(integrity(&target), "ok");
}

#[test]
fn a_swap_under_a_live_process_is_refused() {
    let env = Env::new();
    let src = env.path("src.db");
    make_db(
        &src,
        "PRAGMA page_size=1024; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(
        &target,
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('mine');",
    );
    let mut holder = spawn("holder", &target, env.dir.path());
    wait_for(&env.path("ready"), 60);
    let before = content_hash(&target);
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite"])
        .code(4);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    std::fs::write(env.path("go"), b"").unwrap();
    wait_for(&env.path("holder.json"), 60);
    std::fs::write(env.path("done"), b"").unwrap();
    assert!(holder.wait().unwrap().success());
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM t"),
        2,
        "target kept its content and the holder's write"
    );
    assert_ne!(content_hash(&target), before);
}

#[test]
fn kill_9_during_restore_leaves_the_target_wholly_old_or_wholly_new() {
    let env = Env::new();
    let new = env.path("new.db");
    make_sized_db(&new, 24);
    let archive = env.backup(&new, &[]);
    let new_hash = content_hash(&new);
    let old = env.path("old.db");
    make_sized_db(&old, 24);
    make_db(&old, "UPDATE items SET name = 'old ' || id;");
    let old_hash = content_hash(&old);
    assert_ne!(old_hash, new_hash);
    let mut outcomes = [0usize; 3];
    for (i, delay_ms) in [0u64, 15, 40, 80, 150, 250, 400, 600, 900, 1300]
        .iter()
        .enumerate()
    {
        for journal in ["delete", "wal"] {
            let target = env.path(&format!("target-{i}-{journal}.db"));
            std::fs::copy(&old, &target).unwrap();
            make_db(&target, &format!("PRAGMA journal_mode={journal};"));
            let mut child = env
                .command(&["restore", s(&archive), s(&target), "--overwrite", "--quick"])
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(*delay_ms));
            let _ = child.kill();
            let _ = child.wait();
            // Opening through SQLite rolls back a hot journal or recovers the WAL, as the
            // application would.
            let h = content_hash(&target);
            assert_eq!(integrity(&target), "ok", "delay {delay_ms} {journal}");
            if h == old_hash {
                outcomes[0] += 1;
            } else if h == new_hash {
                outcomes[1] += 1;
            } else {
                panic!("target is neither old nor new after kill at {delay_ms} ms ({journal})");
            }
        }
        // A restore to a new path: either nothing, or the whole new database.
        let fresh = env.path(&format!("fresh-{i}.db"));
        let mut child = env
            .command(&["restore", s(&archive), s(&fresh), "--quick"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms / 3));
        let _ = child.kill();
        let _ = child.wait();
        if fresh.exists() {
            assert_eq!(content_hash(&fresh), new_hash);
            outcomes[2] += 1;
        }
    }
    let leftovers = |env: &Env| -> Vec<String> {
        std::fs::read_dir(env.path("."))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".litevault-"))
            .collect()
    };
    let killed = leftovers(&env).len();
    eprintln!(
        "kill during restore: old {} new {} (fresh completed {}), {killed} leftovers",
        outcomes[0], outcomes[1], outcomes[2]
    );
    // The next restore into the directory removes the killed runs' leftovers.
    let r = env
        .run(&["restore", s(&archive), s(&env.path("last.db")), "--json"])
        .ok()
        .json();
    assert_eq!(leftovers(&env), Vec::<String>::new());
    if killed > 0 {
        assert!(
            r["plan"]["warnings"].to_string().contains("leftover temp file"),
            "{r}"
        );
    }
    assert!(
        outcomes[0] > 0,
        "no kill landed before the swap; the test proves nothing"
    );
}

#[test]
fn kill_9_during_backup_leaves_no_partial_archive() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 24);
    let hash = content_hash(&db);
    let mut complete = 0;
    for delay_ms in [0u64, 10, 30, 60, 100, 160, 250, 400, 700] {
        let mut child = env.command(&["backup", s(&db)]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        for name in env.backup_files() {
            if name.starts_with(".litevault-") {
                continue; // temp files of the killed run: never under a final name
            }
            let p = env.backups().join(&name);
            env.run(&["verify", s(&p), "--quick"]).ok();
            complete += 1;
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(content_hash(&db), hash, "source unchanged");
    assert_eq!(integrity(&db), "ok");
    let leftovers = env
        .backup_files()
        .iter()
        .filter(|n| n.starts_with(".litevault-"))
        .count();
    eprintln!("kill during backup: {complete} runs completed before the kill, {leftovers} leftovers");
    // The next backup into the directory removes the killed runs' leftovers.
    env.backup(&db, &[]);
    let left: Vec<String> = env
        .backup_files()
        .into_iter()
        .filter(|n| n.starts_with(".litevault-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs the binary and returns (exit code, peak RSS in MiB). The peak is the child's own
/// `VmHWM`, polled from /proc while it runs: `ru_maxrss` from wait4 would include the test
/// process's own size, which Linux carries across fork and exec.
fn run_measured(env: &Env, args: &[&str]) -> (i32, f64) {
    let mut child = env
        .command(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:")) {
                let kib: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), peak_kib as f64 / 1024.0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn peak_memory_does_not_grow_with_the_database() {
    let env = Env::new();
    let small = env.path("small.db");
    make_sized_db(&small, 8);
    let big = env.path("big.db");
    make_sized_db(&big, 160);
    let mut rss = Vec::new();
    for db in [&small, &big] {
        let out = env.path(&format!("{}.tar.zst", db.file_stem().unwrap().to_string_lossy()));
        let (code, backup_rss) = run_measured(&env, &["backup", s(db), "-o", s(&out)]);
        assert_eq!(code, 0);
        let (code, verify_rss) = run_measured(&env, &["verify", s(&out)]);
        assert_eq!(code, 0);
        let target = env.path(&format!("restored-{}", db.file_name().unwrap().to_string_lossy()));
        let (code, restore_rss) = run_measured(&env, &["restore", s(&out), s(&target)]);
        assert_eq!(code, 0);
        rss.push([backup_rss, verify_rss, restore_rss]);
    }
    eprintln!(
        "peak RSS MiB [backup, verify, restore]: 8 MiB db {:?}, 160 MiB db {:?}",
        rss[0], rss[1]
    );
    for i in 0..3 {
        assert!(rss[1][i] < 100.0, "peak RSS {} MiB over 100 MiB", rss[1][i]);
        assert!(
            // zstd's multi-threaded buffers reach a plateau near 60 MiB from a few MiB up.
            rss[1][i] < rss[0][i] + 50.0,
            "RSS grows with the database: {:?}",
            rss
        );
    }
}

/// The name a killed litevault run's temp file has: this process's temp prefix (same host,
/// boot and pid namespace) with the pid of a process that has exited.
fn leftover_name(suffix: &str) -> String {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let prefix = litevault::fsutil::temp_prefix();
    let (_, place) = prefix.split_once('@').unwrap();
    format!(".litevault-p{pid}@{place}{suffix}")
}

#[test]
fn leftovers_of_killed_runs_are_removed_by_the_next_run_in_their_directory() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 1);
    // A killed run's unfinished archive in the backup directory: the next backup removes it.
    std::fs::create_dir_all(env.backups()).unwrap();
    let in_backups = env.backups().join(leftover_name("a.partial"));
    std::fs::write(&in_backups, vec![0u8; 4096]).unwrap();
    let archive = env.backup(&db, &[]);
    assert!(!in_backups.exists());
    // Beside a restore's target, and reported.
    let beside = env.path(&leftover_name("b.partial"));
    std::fs::write(&beside, b"x").unwrap();
    let r = env
        .run(&["restore", s(&archive), s(&env.path("new.db")), "--json"])
        .ok()
        .json();
    assert!(!beside.exists());
    assert!(
        r["plan"]["warnings"].to_string().contains("leftover temp file"),
        "{r}"
    );
    // A merge's temp directory beside its target; not in a dry run.
    let dir = env.path(&leftover_name("c"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("source-0.sqlite"), b"x").unwrap();
    env.run(&["merge", s(&archive), s(&db), "--dry-run"]).ok();
    assert!(dir.exists(), "a dry run removed a leftover");
    let r = env.run(&["merge", s(&archive), s(&db), "--json"]).ok().json();
    assert!(!dir.exists());
    assert!(r["warnings"].to_string().contains("leftover temp file"), "{r}");
    // A live run's files are left alone: this test process is alive.
    let live = env.path(&format!("{}d.partial", litevault::fsutil::temp_prefix()));
    std::fs::write(&live, b"x").unwrap();
    env.run(&["restore", s(&archive), s(&env.path("new2.db"))]).ok();
    assert!(live.exists());
}

/// The nice value of the process `pid` (field 19 of /proc/PID/stat), while it runs.
fn nice_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(16)?.parse().ok()
}

/// Threads of the process `pid` now.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs `litevault ARGS` and samples the process until it exits: (exit code, its nice value
/// seen, the most threads seen).
fn sample_run(env: &Env, args: &[&str]) -> (i32, Option<i64>, usize) {
    let mut child = env.command(args).spawn().unwrap();
    let pid = child.id();
    let (mut nice, mut threads) = (None, 0);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), nice, threads);
        }
        nice = nice_of(pid).or(nice);
        threads = threads.max(threads_of(pid));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_backup_runs_at_low_priority_by_default_and_threads_sets_the_compression_workers() {
    let env = Env::new();
    let db = env.path("big.db");
    crate::util::make_sized_db(&db, 60);
    let dbs = db.to_str().unwrap();
    let (code, nice, _) = sample_run(&env, &["backup", dbs]);
    assert_eq!((code, nice), (0, Some(10)), "a backup lowers its own priority");
    let (code, nice, _) = sample_run(&env, &["backup", dbs, "--priority", "normal"]);
    assert_eq!((code, nice), (0, Some(0)));
    let (code, _, one) = sample_run(&env, &["backup", dbs, "--threads", "1"]);
    assert_eq!(code, 0);
    let (code, _, six) = sample_run(&env, &["backup", dbs, "--threads", "6"]);
    assert_eq!(code, 0);
    assert!(
        six >= one + 5,
        "--threads 6 starts 5 more compression workers than --threads 1: {six} vs {one}"
    );
}

#[test]
fn a_backup_checkpoints_a_wal_source_once_it_releases_its_snapshot_unless_told_not_to() {
    for opt_out in [false, true] {
        let env = Env::new();
        let db = env.path("app.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        // The application never checkpoints itself here: what it wrote stays in the -wal.
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
             INSERT INTO t(b) SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
        let file_before = std::fs::metadata(&db).unwrap().len();
        let mut args = vec!["backup", db.to_str().unwrap(), "--json"];
        if opt_out {
            args.push("--no-checkpoint");
        }
        let r = env.run(&args).ok().json();
        let file_after = std::fs::metadata(&db).unwrap().len();
        if opt_out {
            assert!(r["checkpoint"].is_null(), "{r}");
            assert_eq!(file_after, file_before, "the -wal was left alone");
        } else {
            let cp = &r["checkpoint"];
            assert!(cp["wal_frames"].as_i64().unwrap() > 1900, "{cp}");
            assert_eq!(cp["checkpointed_frames"], cp["wal_frames"], "{cp}");
            assert!(cp["error"].is_null(), "{cp}");
            assert!(
                file_after > file_before + 7_000_000,
                "the frames are in the database file: {file_before} -> {file_after}"
            );
        }
        // The application's connection sees the same data either way.
        let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2000);
        assert_eq!(crate::util::integrity(&db), "ok");
    }
}
