//! `litevault replicate`: a writer in this process commits numbered transactions (each row
//! records its number and commit time) while the real binary replicates; restores of the latest
//! state and of instants in between must give exactly the state after one transaction.

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn wal_db(path: &Path) {
    make_db(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER PRIMARY KEY, at INTEGER NOT NULL, pad TEXT);",
    );
}

/// Starts `litevault --json replicate DB --to LOC --interval 200ms [extra]` and waits for its
/// first base.
fn start(env: &Env, db: &Path, loc: &Path, extra: &[&str]) -> Child {
    let mut args = vec![
        "--json",
        "replicate",
        s(db),
        "--to",
        s(loc),
        "--interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    let child = env.command(&args).spawn().unwrap();
    let t = Instant::now();
    while !std::fs::read_dir(loc)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tar.zst"))
        })
        .unwrap_or(false)
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no base was written");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Stops the replicator with SIGTERM and returns its final status (`--json`).
fn stop(child: Child) -> serde_json::Value {
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "replicate failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// Commits `count` numbered transactions from `first`, each `pause` apart, calling `between`
/// after each with the connection and the number; returns (number, commit time in ms).
fn write(
    db: &Path,
    first: i64,
    count: i64,
    pause: Duration,
    between: &mut dyn FnMut(&Connection, i64),
) -> Vec<(i64, i64)> {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut log = Vec::new();
    for n in first..first + count {
        let at = now_ms();
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            rusqlite::params![n, at, "x".repeat(300)],
        )
        .unwrap();
        log.push((n, at));
        between(&c, n);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    log
}

/// The numbers in a restored database: they must be 1..=k without a hole.
fn prefix_len(db: &Path) -> i64 {
    let count = query_i64(db, "SELECT count(*) FROM t");
    let max = query_i64(db, "SELECT coalesce(max(n), 0) FROM t");
    assert_eq!(
        count, max,
        "the restored numbers have a hole: {count} rows, max {max}"
    );
    max
}

fn restore_latest(env: &Env, loc: &Path, target: &Path, at: Option<&str>) -> serde_json::Value {
    let mut args = vec![
        "restore",
        "--latest",
        "--dir",
        s(loc),
        "--name",
        "app",
        s(target),
        "--json",
    ];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    env.run(&args).ok().json()
}

/// `restore --latest` of the backups named `name` in `loc` into `target` (it must succeed).
fn restore_named(env: &Env, loc: &Path, name: &str, target: &Path) {
    env.run(&["restore", "--latest", "--dir", s(loc), "--name", name, s(target)])
        .ok();
}

#[test]
fn every_transaction_is_shipped_and_any_instant_restores_to_one_transaction() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let rep = start(&env, &db, &loc, &[]);
    // Instants to restore to, taken while the writer runs.
    let instants = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (instants, done) = (instants.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            while !done.load(Ordering::SeqCst) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                std::thread::sleep(Duration::from_millis(150 + rng % 400));
                instants.lock().unwrap().push(now_ms());
            }
        })
    };
    // Bursts and pauses: checkpoints by the application too (PASSIVE ones keep the WAL going).
    let log = write(&db, 1, 2000, Duration::from_millis(3), &mut |c, n| {
        if n % 400 == 0 {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        }
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = stop(rep);
    assert!(status["transactions"].as_u64().unwrap() >= 2000, "{status}");
    assert_eq!(status["pending"], 0, "{status}");

    // The latest state is the source's, exactly.
    let latest = env.path("latest.db");
    let r = restore_latest(&env, &loc, &latest, None);
    assert!(r["replayed"]["txid"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(content_hash(&latest), content_hash(&db));
    assert_eq!(prefix_len(&latest), 2000);
    let listed = env.run(&["list", "--dir", s(&loc), "--json"]).ok().json();
    let with_span: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["replicated"].is_object())
        .collect();
    assert!(!with_span.is_empty(), "{listed}");
    assert_eq!(
        with_span.last().unwrap()["replicated"]["last"][0],
        r["replayed"]["txid"],
        "{listed}"
    );

    // Each instant: an unbroken prefix, nothing committed after the instant, and nothing
    // committed well before it left out (a transaction's time is when it was read).
    let instants = instants.lock().unwrap().clone();
    assert!(instants.len() >= 3, "{instants:?}");
    let mut restored = std::collections::BTreeSet::new();
    for (i, at) in instants.iter().enumerate() {
        let target = env.path(&format!("at{i}.db"));
        let r = env
            .run(&[
                "restore",
                "--latest",
                "--dir",
                s(&loc),
                "--name",
                "app",
                s(&target),
                "--json",
                "--at",
                &rfc3339_ms(*at),
            ])
            .ok()
            .json();
        let k = prefix_len(&target);
        restored.insert(k);
        let after: Vec<_> = log.iter().filter(|(n, t)| *n <= k && *t > *at).collect();
        assert!(
            after.is_empty(),
            "restored at {at}: transactions committed later: {after:?} ({r})"
        );
        // Anything committed 3 s before the instant (the interval is 0.2 s; the rest is slack
        // for a loaded machine) must be there.
        let missing = log.iter().filter(|(n, t)| *n > k && *t < at - 3000).count();
        assert_eq!(
            missing, 0,
            "restored at {at}: {missing} older transactions left out ({r})"
        );
        assert_eq!(integrity(&target), "ok");
    }
    // Points inside the history, not only its ends.
    assert!(
        restored.iter().filter(|k| **k > 0 && **k < 2000).count() >= 2,
        "{restored:?}"
    );
}

#[test]
fn the_applications_truncates_restarts_and_vacuum_are_gaps_handled_without_loss() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let rep = start(&env, &db, &loc, &[]);
    write(&db, 1, 900, Duration::from_micros(500), &mut |c, n| {
        let sql = match n % 300 {
            100 => "PRAGMA wal_checkpoint(TRUNCATE)",
            200 => "PRAGMA wal_checkpoint(RESTART)",
            0 if n == 600 => "VACUUM",
            _ => return,
        };
        if sql == "VACUUM" {
            c.execute_batch(sql).unwrap();
        } else {
            c.query_row(sql, [], |_| Ok(())).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = stop(rep);
    // A truncated -wal cannot be proven read to its end: at least one new base, said so.
    assert!(status["gaps"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["last_gap"].is_string(), "{status}");
    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(content_hash(&latest), content_hash(&db));
    assert_eq!(prefix_len(&latest), 900);
}

#[test]
fn a_killed_replicator_leaves_a_prefix_and_a_restarted_one_goes_on() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let rep = start(&env, &db, &loc, &[]);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || write(&db, 1, 800, Duration::from_micros(2000), &mut |_, _| {}))
    };
    std::thread::sleep(Duration::from_millis(700));
    let mut rep = rep;
    rep.kill().unwrap();
    rep.wait().unwrap();
    writer.join().unwrap();
    let mid = env.path("mid.db");
    restore_latest(&env, &loc, &mid, None);
    let k = prefix_len(&mid);
    assert!(k > 0 && k <= 800, "{k}");
    assert_eq!(integrity(&mid), "ok");

    let rep = start(&env, &db, &loc, &[]);
    write(&db, 801, 300, Duration::from_micros(500), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(300));
    stop(rep);
    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(content_hash(&latest), content_hash(&db));
    assert_eq!(prefix_len(&latest), 1100);
}

#[test]
fn a_rollback_journal_database_is_refused_with_the_way_out() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, "CREATE TABLE t(x);");
    let r = env
        .run(&["replicate", s(&db), "--to", s(&env.path("replica"))])
        .code(2);
    assert!(
        r.stderr.contains("WAL mode") && r.stderr.contains("--incremental"),
        "{}",
        r.stderr
    );
    let r = env.run(&[
        "replicate",
        s(&env.path("missing.db")),
        "--to",
        s(&env.path("replica")),
    ]);
    assert_ne!(r.code, 0);
    assert!(!env.path("missing.db").exists());
}

/// A small application for --exec: commits numbered rows until told to stop (SIGTERM) or
/// until it has written `count`, then exits with `code`.
fn app_command(db: &Path, count: i64, code: i32) -> String {
    format!(
        "exec python3 -c \"
import sqlite3, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
c = sqlite3.connect('{}', isolation_level=None)
n = c.execute('select coalesce(max(n), 0) from t').fetchone()[0]
open('{}', 'w').close()
for i in range({count}):
    if stop: break
    n += 1
    c.execute('insert into t values (?, ?, ?)', (n, int(time.time() * 1000), 'x'))
    time.sleep(0.002)
sys.exit({code})
\"",
        db.display(),
        db.with_extension("started").display()
    )
}

#[test]
fn exec_runs_the_app_under_replication_and_exits_with_its_code() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let out = env
        .command(&[
            "replicate",
            s(&db),
            "--to",
            s(&loc),
            "--interval",
            "200ms",
            "--exec",
            &app_command(&db, 300, 7),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(prefix_len(&latest), 300);
    assert_eq!(content_hash(&latest), content_hash(&db));
}

#[test]
fn sigterm_stops_the_exec_child_and_loses_no_committed_transaction() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let child = env
        .command(&[
            "replicate",
            s(&db),
            "--to",
            s(&loc),
            "--exec",
            &app_command(&db, 1_000_000, 0),
        ])
        .spawn()
        .unwrap();
    crate::helper::wait_for(&db.with_extension("started"), 60);
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    // The app caught SIGTERM and exited 0: so does litevault.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = query_i64(&db, "SELECT count(*) FROM t");
    assert!(n > 10, "{n}");
    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(prefix_len(&latest), n);
    assert_eq!(content_hash(&latest), content_hash(&db));
}

#[test]
fn replication_to_s3_waits_out_a_stopped_server_and_loses_nothing() {
    let mut srv = crate::s3server::S3Server::start();
    let env = Env::new();
    let db = env.path("app.db");
    wal_db(&db);
    let url = srv.url("replica/app");
    let mut cmd = env.command(&["--json", "replicate", s(&db), "--to", &url, "--interval", "200ms"]);
    srv.apply_env(&mut cmd);
    let rep = cmd.spawn().unwrap();
    let t = Instant::now();
    while !srv
        .object_keys("replica/app/")
        .iter()
        .any(|k| k.ends_with(".tar.zst"))
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no base in the bucket");
        std::thread::sleep(Duration::from_millis(50));
    }
    write(&db, 1, 300, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(500));
    // The server goes away: what is committed meanwhile waits, then goes out when it is back.
    srv.stop();
    write(&db, 301, 300, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(1500));
    srv.restart();
    write(&db, 601, 100, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(500));
    let status = stop(rep);
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["gaps"], 0, "{status}");
    assert_eq!(
        status["shipped"].as_u64(),
        status["transactions"].as_u64(),
        "{status}"
    );

    let latest = env.path("latest.db");
    let mut cmd = env.command(&[
        "restore",
        "--latest",
        "--dir",
        &url,
        "--name",
        "app",
        s(&latest),
        "--json",
    ]);
    srv.apply_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(prefix_len(&latest), 700);
    assert_eq!(content_hash(&latest), content_hash(&db));
    // list shows the replicated span after the base.
    let mut cmd = env.command(&["list", "--dir", &url, "--json"]);
    srv.apply_env(&mut cmd);
    let listed: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    let span = &listed[0]["replicated"];
    assert_eq!(span["last"][0], status["last_txid"], "{listed}");
}

#[test]
fn verify_replica_replays_every_segment_and_names_a_changed_one() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let rep = start(&env, &db, &loc, &[]);
    write(&db, 1, 400, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(400));
    let status = stop(rep);
    let r = env.run(&["verify", "--replica", s(&loc), "--json"]).ok().json();
    let st = &r[0]["streams"][0];
    assert_eq!(st["ok"], true, "{r}");
    assert_eq!(st["last_txid"], status["last_txid"], "{r}");
    assert!(st["segments"].as_u64().unwrap() >= 2, "{r}");

    // One byte of a page in the middle of the history, changed and compressed again.
    let mut segs: Vec<_> = std::fs::read_dir(&loc)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lvwal"))
        .collect();
    segs.sort();
    let victim = &segs[segs.len() / 2];
    let mut plain = zstd::decode_all(&std::fs::read(victim).unwrap()[..]).unwrap();
    let at = plain.len() - 100;
    plain[at] ^= 0x20;
    std::fs::write(victim, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let r = env
        .run(&["verify", "--replica", s(&loc), "--name", "app"])
        .code(3);
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        r.stdout.contains("FAILED") && r.stdout.contains(name),
        "{}",
        r.stdout
    );
}

#[test]
fn the_daemon_replicates_and_reports_lag_shipped_and_health_then_ships_the_last_at_stop() {
    use crate::daemon::{Daemon, TOKEN};
    let env = Env::new();
    let db = env.path("app.db");
    wal_db(&db);
    let config = "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"replica\"\nreplicate = \"200ms\"\nreplicate_max_lag = \"30s\"\n";
    std::fs::create_dir(env.path("replica")).unwrap();
    let mut d = Daemon::start(env.dir.path(), config, Some(TOKEN), &[]);
    d.wait_log("replicate.start", 1, 60);
    write(&db, 1, 300, Duration::from_millis(2), &mut |_, _| {});
    let shipped = |d: &Daemon| {
        d.get("/api/backup/status").json()["databases"][0]["replication"]["status"]["shipped"]
            .as_u64()
            .unwrap_or(0)
    };
    d.wait_for(60, "300 transactions shipped", |d| {
        (shipped(d) >= 300).then_some(())
    });
    let status = d.get("/api/backup/status").json();
    let rep = &status["databases"][0]["replication"];
    assert!(rep["lag_seconds"].as_f64().unwrap() < 30.0, "{status}");
    // Its daily backup (no schedule given) is a day away: the replicator's first base is the
    // backup of the start, not a second read of the database beside it.
    assert!(!d.log().contains("job.start"), "{}", d.log());
    assert!(status["databases"][0]["next_backup"].is_string(), "{status}");
    assert_eq!(status["healthy"], true, "{status}");
    let metrics = d.get("/metrics").body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("litevault_replication_transactions_total{database=\"app\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 300.0, "{line}");
    assert!(metrics.contains("litevault_replication_lag_seconds{database=\"app\"}"));

    // A drill restores the replicated history, not only the newest archive.
    let r = d.wait_for(60, "a drill accepted", |d| {
        let r = d.post("/api/backup/verify", r#"{"database":"app"}"#);
        (r.status != 409).then_some(r)
    });
    assert_eq!(r.status, 202, "{}", r.body);
    let drill = d.wait_for(120, "the drill", |d| {
        let v = d.get("/api/backup/status").json()["databases"][0]["last_verify"].clone();
        v.is_object().then_some(v)
    });
    assert_eq!(drill["ok"], true, "{drill}");
    assert!(
        drill["archive"].as_str().unwrap().contains("to transaction"),
        "{drill}"
    );

    // Written just before the stop: shipped on the way out.
    write(&db, 301, 20, Duration::ZERO, &mut |_, _| {});
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(d.log().contains("replicate.stop"), "{}", d.log());
    let latest = env.path("latest.db");
    restore_latest(&env, &env.path("replica"), &latest, None);
    assert_eq!(prefix_len(&latest), 320);
    assert_eq!(content_hash(&latest), content_hash(&db));
}

#[test]
fn encrypted_replication_stores_nothing_in_clear_and_restores_with_the_key() {
    let env = Env::new();
    let db = env.path("app.db");
    let loc = env.path("replica");
    wal_db(&db);
    let (key, recipient) = crate::crypt::keygen(&env, "key.txt");
    let rep = start(&env, &db, &loc, &["--encrypt-to", &recipient]);
    write(&db, 1, 200, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(400));
    stop(rep);
    let names: Vec<_> = std::fs::read_dir(&loc)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        names.iter().any(|p| p.to_string_lossy().ends_with(".lvwal")),
        "{names:?}"
    );
    for p in &names {
        let head = std::fs::read(p).unwrap();
        assert!(
            head.starts_with(b"age-encryption.org/v1"),
            "stored in clear: {}",
            p.display()
        );
    }
    // Without the key: refused, saying what is missing.
    let r = env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&loc),
        "--name",
        "app",
        s(&env.path("x.db")),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--identity"), "{}", r.stderr);
    // With it: the source's content.
    let latest = env.path("latest.db");
    env.run(&[
        "--identity",
        s(&key),
        "restore",
        "--latest",
        "--dir",
        s(&loc),
        "--name",
        "app",
        s(&latest),
    ])
    .ok();
    assert_eq!(prefix_len(&latest), 200);
    assert_eq!(content_hash(&latest), content_hash(&db));
}

#[test]
fn the_daemon_replicates_every_database_a_pattern_matches_and_picks_up_new_ones() {
    use crate::daemon::{Daemon, TOKEN};
    let env = Env::new();
    std::fs::create_dir(env.path("tenants")).unwrap();
    std::fs::create_dir(env.path("replica")).unwrap();
    wal_db(&env.path("tenants/acme.db"));
    let config = "discover_every = \"1s\"\n[[databases]]\nname = \"t-{stem}\"\npath = \"tenants/*.db\"\nlocation = \"replica\"\nreplicate = \"200ms\"\n";
    let mut d = Daemon::start(env.dir.path(), config, Some(TOKEN), &[]);
    d.wait_log("replicate.start", 1, 60);
    let shipped = |d: &Daemon, name: &str| -> u64 {
        let st = d.get("/api/backup/status").json();
        st["databases"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .map(|x| x["replication"]["status"]["shipped"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    write(
        &env.path("tenants/acme.db"),
        1,
        50,
        Duration::ZERO,
        &mut |_, _| {},
    );
    d.wait_for(60, "acme's 50 transactions shipped", |d| {
        (shipped(d, "t-acme") >= 50).then_some(())
    });
    // A new tenant, without a restart: found by the next look, replicated from its first base.
    // A file that is not a database yet is not taken for one.
    std::fs::write(env.path("tenants/pending.db"), b"").unwrap();
    wal_db(&env.path("tenants/globex.db"));
    d.wait_log("serve.discovered", 1, 30);
    write(
        &env.path("tenants/globex.db"),
        1,
        40,
        Duration::ZERO,
        &mut |_, _| {},
    );
    d.wait_for(60, "globex's 40 transactions shipped", |d| {
        (shipped(d, "t-globex") >= 40).then_some(())
    });
    let names: Vec<String> = d.get("/api/backup/status").json()["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["t-acme", "t-globex"], "{}", d.log());
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    for (name, file, rows) in [("t-acme", "acme.db", 50), ("t-globex", "globex.db", 40)] {
        let target = env.path(&format!("{name}.restored.db"));
        restore_named(&env, &env.path("replica"), name, &target);
        assert_eq!(prefix_len(&target), rows);
        assert_eq!(
            content_hash(&target),
            content_hash(&env.path(&format!("tenants/{file}")))
        );
    }
}

/// The names of a process's threads that start with `prefix` (Linux truncates names to 15
/// bytes).
fn threads_named(pid: u32, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            if name.starts_with(prefix) {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn many_databases_in_one_daemon_share_a_few_threads_and_each_is_replicated_whole() {
    use crate::daemon::{Daemon, TOKEN};
    const DATABASES: i64 = 24;
    let env = Env::new();
    std::fs::create_dir(env.path("tenants")).unwrap();
    std::fs::create_dir(env.path("replica")).unwrap();
    for i in 0..DATABASES {
        wal_db(&env.path(&format!("tenants/t{i:02}.db")));
    }
    let config = "[[databases]]\nname = \"{stem}\"\npath = \"tenants/*.db\"\nlocation = \"replica\"\nreplicate = \"200ms\"\n";
    let mut d = Daemon::start(env.dir.path(), config, Some(TOKEN), &[]);
    d.wait_log("replicate.start", DATABASES as usize, 60);
    let shipped = |d: &Daemon| -> Vec<u64> {
        d.get("/api/backup/status").json()["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["replication"]["status"]["shipped"].as_u64().unwrap_or(0))
            .collect()
    };
    d.wait_for(60, "every first base written", |d| {
        let st = d.get("/api/backup/status").json();
        let all = st["databases"].as_array().unwrap();
        (all.len() == DATABASES as usize
            && all.iter().all(|x| x["replication"]["status"]["base"].is_string()))
        .then_some(())
    });
    // Every database written, in turns, while the threads are counted (a base's backup has
    // helper threads of its own for a while, named after the thread that starts them: the
    // first bases are written before the count starts).
    let conns: Vec<Connection> = (0..DATABASES)
        .map(|i| {
            let c = Connection::open(env.path(&format!("tenants/t{i:02}.db"))).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            c
        })
        .collect();
    let mut most = Vec::new();
    let count = |most: &mut Vec<String>| {
        let now = threads_named(d.pid(), "replicate");
        if now.len() > most.len() {
            *most = now;
        }
    };
    for n in 1..=30i64 {
        for c in &conns {
            c.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                rusqlite::params![n, now_ms(), "x".repeat(300)],
            )
            .unwrap();
        }
        count(&mut most);
        std::thread::sleep(Duration::from_millis(20));
    }
    d.wait_for(60, "30 transactions of every database shipped", |d| {
        let s = shipped(d);
        (s.len() == DATABASES as usize && s.iter().all(|&n| n >= 30)).then_some(())
    });
    // While written: two polling threads, at most eight shipping ones, each with at most one
    // helper at a time (a segment's fsync runs beside its hashing), not two per database.
    assert!(
        most.len() <= 2 + 2 * 8,
        "replication threads for {DATABASES} databases: {most:?}"
    );
    // Once all is shipped and quiet, the helpers are gone.
    std::thread::sleep(Duration::from_millis(500));
    let quiet = threads_named(d.pid(), "replicate");
    let polling = quiet.iter().filter(|n| *n == "replicate-poll").count();
    assert!((1..=2).contains(&polling), "{quiet:?}");
    assert!(quiet.len() <= 2 + 8, "{quiet:?}");
    drop(conns);
    // Written just before the stop: every database ships its last on the way out.
    for i in 0..DATABASES {
        write(
            &env.path(&format!("tenants/t{i:02}.db")),
            31,
            5,
            Duration::ZERO,
            &mut |_, _| {},
        );
    }
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert_eq!(
        d.log().matches("replicate.stop").count(),
        DATABASES as usize,
        "{}",
        d.log()
    );
    for i in 0..DATABASES {
        let name = format!("t{i:02}");
        let target = env.path(&format!("{name}.restored.db"));
        restore_named(&env, &env.path("replica"), &name, &target);
        assert_eq!(prefix_len(&target), 35, "{name}");
        assert_eq!(
            content_hash(&target),
            content_hash(&env.path(&format!("tenants/{name}.db"))),
            "{name}"
        );
    }
}

#[test]
fn the_daemon_counts_its_s3_requests_and_an_idle_database_costs_no_put() {
    use crate::daemon::{Daemon, TOKEN};
    let srv = crate::s3server::S3Server::start();
    let env = Env::new();
    let db = env.path("app.db");
    wal_db(&db);
    let url = srv.url("counted/app");
    let config = format!(
        "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"{url}\"\nreplicate = \"200ms\"\n"
    );
    let d = Daemon::start_with(env.dir.path(), &config, Some(TOKEN), &[], |c| srv.apply_env(c));
    d.wait_log("replicate.start", 1, 60);
    let counts = |d: &Daemon| -> std::collections::BTreeMap<String, u64> {
        d.get("/metrics")
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("litevault_s3_requests_total{kind=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(k, n)| (k.to_string(), n.trim().parse().unwrap()))
            .collect()
    };
    let shipped = |d: &Daemon| {
        d.get("/api/backup/status").json()["databases"][0]["replication"]["status"]["shipped"]
            .as_u64()
            .unwrap_or(0)
    };
    write(&db, 1, 100, Duration::from_millis(5), &mut |_, _| {});
    d.wait_for(60, "100 transactions shipped", |d| {
        (shipped(d) >= 100).then_some(())
    });
    let busy = counts(&d);
    assert_eq!(busy.len(), 6, "{busy:?}");
    // The base went up, and segments: each write is a PUT (or a multipart upload's POSTs).
    assert!(busy["PUT"] >= 2, "{busy:?}");
    // Idle: nothing committed, nothing written (reads of the -wal are local).
    std::thread::sleep(Duration::from_secs(2));
    let before = counts(&d);
    std::thread::sleep(Duration::from_secs(3));
    let after = counts(&d);
    assert_eq!(after["PUT"], before["PUT"], "{before:?} -> {after:?}");
    assert_eq!(after["POST"], before["POST"], "{before:?} -> {after:?}");
    // One more transaction: at least one more write.
    write(&db, 101, 1, Duration::ZERO, &mut |_, _| {});
    d.wait_for(60, "the 101st transaction shipped", |d| {
        (shipped(d) >= 101).then_some(())
    });
    let more = counts(&d);
    assert!(
        more["PUT"] + more["POST"] > after["PUT"] + after["POST"],
        "{after:?} -> {more:?}"
    );
}

/// A tmpfs of `mib` MiB at `at`, or `None` off CI where this process may not mount (CI runs as
/// root and must).
fn small_disk(at: std::path::PathBuf, mib: u32) -> Option<SmallDisk> {
    let disk = SmallDisk::mount(at, mib);
    if disk.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
    }
    disk
}

/// Fills the file system of `dir` up: a file written until the disk refuses more.
fn fill_up(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    filler
}

#[test]
fn a_full_location_disk_holds_transactions_until_space_returns_and_loses_none() {
    let env = Env::new();
    let Some(disk) = small_disk(env.path("small"), 16) else {
        return;
    };
    let loc = disk.0.join("replica");
    let db = env.path("app.db");
    wal_db(&db);
    let rep = start(&env, &db, &loc, &[]);
    write(&db, 1, 200, Duration::from_millis(1), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(800));
    // The disk fills up: nothing more can be written there, and the replicator waits.
    let filler = fill_up(&disk.0);
    let segments = |loc: &Path| {
        std::fs::read_dir(loc)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".lvwal"))
            .count()
    };
    let before = segments(&loc);
    write(&db, 201, 800, Duration::from_millis(1), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(1500));
    let mut rep = rep;
    assert!(
        rep.try_wait().unwrap().is_none(),
        "the replicator gave up on a full disk"
    );
    assert_eq!(segments(&loc), before, "a segment was written to a full disk");
    assert!(temps_in(&loc).is_empty(), "{:?}", temps_in(&loc));
    // Space comes back: what waited goes out, and what follows too.
    std::fs::remove_file(&filler).unwrap();
    write(&db, 1001, 100, Duration::from_millis(1), &mut |_, _| {});
    let t = Instant::now();
    while segments(&loc) == before {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "nothing was shipped after space came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&rep, libc::SIGTERM);
    let out = rep.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "replicate failed: {stderr}");
    assert!(
        stderr.to_lowercase().contains("no space left"),
        "the full disk was not reported: {stderr}"
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["gaps"], 0, "{status}");
    assert_eq!(status["shipped"], status["transactions"], "{status}");
    assert!(temps_in(&loc).is_empty(), "{:?}", temps_in(&loc));

    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(prefix_len(&latest), 1100);
    assert_eq!(content_hash(&latest), content_hash(&db));
}

#[test]
fn a_database_on_a_disk_without_room_for_a_copy_still_gets_its_bases() {
    let env = Env::new();
    let Some(disk) = small_disk(env.path("small"), 24) else {
        return;
    };
    // A base is a copy of the database beside it when there is room (its size + 25% + 64
    // MiB): here there is not, and bases are read under a read transaction instead.
    let db = disk.0.join("app.db");
    wal_db(&db);
    let loc = env.path("replica");
    let rep = start(&env, &db, &loc, &["--base-every", "1s"]);
    // The application stays open: its WAL (a generation to copy beside) outlives each burst.
    let app = Connection::open(&db).unwrap();
    app.query_row("SELECT count(*) FROM t", [], |_| Ok(())).unwrap();
    write(&db, 1, 300, Duration::from_millis(2), &mut |_, _| {});
    std::thread::sleep(Duration::from_millis(1500));
    write(&db, 301, 300, Duration::from_millis(2), &mut |c, n| {
        if n % 100 == 0 {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(&rep, libc::SIGTERM);
    let out = rep.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "replicate failed: {stderr}");
    // No room for a copy is not a failure: nothing to report, the other way is taken at once.
    assert!(stderr.trim().is_empty(), "{stderr}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    drop(app);
    assert!(status["bases"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert!(
        temps_in(&disk.0).is_empty(),
        "a copy was left: {:?}",
        temps_in(&disk.0)
    );
    let latest = env.path("latest.db");
    restore_latest(&env, &loc, &latest, None);
    assert_eq!(prefix_len(&latest), 600);
    assert_eq!(content_hash(&latest), content_hash(&db));
}
