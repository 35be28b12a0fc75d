//! `litevault serve` under hostile or careless clients, over real HTTP on loopback: slow
//! clients that would take every file descriptor, a body length that never comes, the bearer
//! scheme in another case, a restore of another database's archive, refusals that must not use
//! up job numbers or speak the command line's words.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{archive_names, send_raw, Daemon, TOKEN};
use crate::util::{make_db, query_i64, Env};

fn config(top: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n{top}\n\
         [[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"backups\"\nschedule = \"every 1h\"\n"
    )
}

fn small_db(env: &Env) {
    make_db(
        &env.path("app.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('a'), ('b');",
    );
}

/// Waits for the first backup (the one at start); returns its archive's object name.
fn first_backup(d: &Daemon) -> String {
    d.wait_for(60, "the first backup", |d| {
        let s = d.get("/api/backup/status").json();
        let db = &s["databases"][0];
        db["running"]
            .is_null()
            .then(|| db["last_success"]["archive"].as_str().map(str::to_string))
            .flatten()
    })
}

/// A GET with the token, its answer and how long it took; None when no answer came in `wait`.
fn timed_get(addr: SocketAddr, path: &str, wait: Duration) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let answer = send_raw(addr, raw.as_bytes(), wait);
    (answer.map(|a| a.status), start.elapsed())
}

/// Makes the daemon run with at most `n` file descriptors.
fn limit_descriptors(cmd: &mut std::process::Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec, setrlimit is a plain system call on our own values.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether the server closed `s` (or answered it, which it does only to refuse it): a
/// non-blocking read that does not say "nothing yet".
fn closed(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 256];
    !matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The reporter's attack, scaled down: a daemon with 256 descriptors and 300 connections that
/// never finish their request head. Authorised requests still answer at once and a backup job
/// still runs; the slow connections are closed after the header timeout (or before, to make
/// room), a lone one trickling a byte every 200 ms included.
#[test]
fn slow_clients_cannot_take_the_descriptors_that_jobs_and_authorised_requests_need() {
    let env = Env::new();
    small_db(&env);
    let header_timeout = Duration::from_secs(3);
    let d = Daemon::start_with(
        env.dir.path(),
        &config("header_timeout = \"3s\""),
        Some(TOKEN),
        &[],
        |c| limit_descriptors(c, 256),
    );
    first_backup(&d);
    let addr = d.addr;
    let slow_head = b"GET /api/backup/status HTTP/1.1\r\nHost: x\r\nX-Slow: ";

    let flood_start = Instant::now();
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
            s.write_all(slow_head).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    assert!(flood.len() >= 250, "only {} slow connections opened", flood.len());

    // A lone slow client, after the flood: a byte every 200 ms never resets the timeout.
    let lone_done = Arc::new(AtomicBool::new(false));
    let done = lone_done.clone();
    let lone = std::thread::spawn(move || {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(slow_head).unwrap();
        s.set_nonblocking(true).unwrap();
        while start.elapsed() < Duration::from_secs(8) {
            if closed(&s) || s.write_all(b"a").is_err() {
                done.store(true, Ordering::SeqCst);
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });

    // Authorised requests answer at once, and a job that needs descriptors runs.
    for _ in 0..5 {
        let (status, took) = timed_get(addr, "/api/backup/status", Duration::from_secs(5));
        assert_eq!(status, Some(200), "no answer within 5 s; log:\n{}", d.log());
        assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    }
    let r = d.post("/api/backup/create", r#"{"database":"app"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 30);
    assert_eq!(job["state"], "done", "{job}");
    assert!(!d.log().contains("Too many open files"), "{}", d.log());
    assert!(
        !lone_done.load(Ordering::SeqCst),
        "the lone slow client was closed before its timeout, while the flood was older"
    );

    // Every slow connection is closed by the header timeout (with a second's slack).
    let lone_closed = lone
        .join()
        .unwrap()
        .expect("the lone slow client was never closed");
    assert!(
        lone_closed >= header_timeout - Duration::from_millis(300)
            && lone_closed <= header_timeout + Duration::from_millis(1500),
        "the lone slow client was closed after {lone_closed:?}"
    );
    let deadline = flood_start + header_timeout + Duration::from_millis(1500);
    let open = loop {
        let open = flood.iter().filter(|s| !closed(s)).count();
        if open == 0 || Instant::now() > deadline {
            break open;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(open, 0, "slow connections still open after the header timeout");
    assert!(d.log().contains("serve.connections_full"), "{}", d.log());
}

/// A body that does not come: 413 at once for a declared length over the limit, 408 after the
/// header timeout for one that stops coming.
#[test]
fn a_body_too_long_is_refused_at_once_and_a_slow_one_in_time() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &config("header_timeout = \"1s\""),
        Some(TOKEN),
        &[],
    );
    let head = |length: u64| {
        format!(
            "POST /api/backup/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let start = Instant::now();
    let a = send_raw(d.addr, head(10_000_000_000).as_bytes(), Duration::from_secs(5))
        .expect("no answer to a 10 GB Content-Length");
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(a.body.contains("larger than"), "{}", a.body);

    let start = Instant::now();
    let a = send_raw(d.addr, head(100).as_bytes(), Duration::from_secs(5))
        .expect("no answer to a body that stopped coming");
    assert_eq!(a.status, 408, "{}", a.body);
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    // Nothing was started by either.
    assert!(d.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["trigger"] == "schedule"));
}

/// RFC 7235: the scheme is case-insensitive; the token is not.
#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(env.dir.path(), &config(""), Some(TOKEN), &[]);
    let get = |authorization: &str| {
        let raw = format!(
            "GET /api/backup/status HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
        );
        send_raw(d.addr, raw.as_bytes(), Duration::from_secs(10))
            .expect("no answer")
            .status
    };
    for ok in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR  {TOKEN}"),
    ] {
        assert_eq!(get(&ok), 200, "{ok}");
    }
    for refused in [
        format!("Bearer {}", TOKEN.to_uppercase()),
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        format!("bearers {TOKEN}"),
        "bearer".to_string(),
    ] {
        assert_eq!(get(&refused), 401, "{refused}");
    }
}

/// A backup of `other.db` named `other` in the workspace's backups, and an incremental one
/// after a change; returns (the full one, the incremental one).
fn other_backups(env: &Env) -> (String, String) {
    let other = env.path("other.db");
    make_db(
        &other,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('other');",
    );
    let full = env.backup(&other, &["--name", "other", "--incremental"]);
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("INSERT INTO t(x) SELECT 'other' FROM t; INSERT INTO t(x) SELECT 'other' FROM t;")
        .unwrap();
    let incremental = env.backup(&other, &["--name", "other", "--incremental"]);
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    (name(&full), name(&incremental))
}

/// An archive of another database in the same location is refused by name, and so is one
/// named as the database's whose chain reaches another database's archive; the database's own
/// archives and the safety archive of its restore are accepted.
#[test]
fn a_restore_takes_only_the_databases_own_archives() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(env.dir.path(), &config(""), Some(TOKEN), &[]);
    let own = first_backup(&d);
    let (other_full, other_incremental) = other_backups(&env);
    let rows = || query_i64(&env.path("app.db"), "SELECT count(*) FROM t");
    assert_eq!(rows(), 2);

    let r = d.post(
        "/api/backup/restore",
        &format!(r#"{{"database":"app","archive":"{other_full}","overwrite":true}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&other_full) && error.contains("not of database \"app\""),
        "{error}"
    );

    // other's incremental under a name of app's (older than app's own backup): its chain
    // reaches other's full archive.
    let disguised = "app-20200101T000000Z.tar.zst";
    std::fs::rename(
        env.backups().join(&other_incremental),
        env.backups().join(disguised),
    )
    .unwrap();
    let r = d.post(
        "/api/backup/restore",
        &format!(r#"{{"database":"app","archive":"{disguised}","overwrite":true}}"#),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("chain") && error.contains(&other_full), "{error}");
    assert_eq!(rows(), 2, "a refused restore changed the database");

    // Its own archive, then the safety archive that restore kept: both accepted.
    rusqlite::Connection::open(env.path("app.db"))
        .unwrap()
        .execute("INSERT INTO t(x) VALUES ('later')", [])
        .unwrap();
    let r = d.post(
        "/api/backup/restore",
        &format!(r#"{{"database":"app","archive":"{own}","overwrite":true}}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(rows(), 2);
    let safety = Path::new(job["report"]["safety_archive"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(safety.starts_with("app-pre-restore-"), "{safety}");
    let r = d.post(
        "/api/backup/restore",
        &format!(r#"{{"database":"app","archive":"{safety}","overwrite":true}}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        rows(),
        3,
        "the safety archive holds the row added before the restore"
    );
    // The listing shows what a restore accepts: app's archives and its safety archives.
    let listed = archive_names(&d.get("/api/backups?database=app").json());
    assert!(
        listed.contains(&own) && listed.contains(&safety) && !listed.contains(&other_full),
        "{listed:?}"
    );
}

/// Refused requests say what to send (not the command line's option) and use no job number:
/// the next accepted job has the next one.
#[test]
fn refusals_speak_the_apis_words_and_use_no_job_number() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(env.dir.path(), &config(""), Some(TOKEN), &[]);
    first_backup(&d);
    let first: Vec<u64> = d.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(first, [1]);

    let r = d.post("/api/backup/restore", r#"{"database":"app","latest":true}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    let hint = r.json()["hint"].as_str().unwrap_or_default().to_string();
    assert!(
        hint.contains(r#""overwrite": true"#) && !hint.contains("--"),
        "the hint names the request's field: {hint}"
    );
    for (body, status) in [
        (
            r#"{"database":"app","archive":"app-20200101T000000Z.tar.zst","overwrite":true}"#,
            404,
        ),
        (
            r#"{"database":"app","archive":"other-20200101T000000Z.tar.zst","overwrite":true}"#,
            400,
        ),
        (
            r#"{"database":"app","latest":true,"at":"1999-01-01T00:00:00Z"}"#,
            404,
        ),
        (r#"{"database":"app"}"#, 400),
    ] {
        let r = d.post("/api/backup/restore", body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    let r = d.post("/api/backup/create", r#"{"database":"app"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["job"], 2, "{}", r.body);
    let ids: Vec<Value> = d.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(ids, [2, 1], "only accepted jobs are in the table");
}
