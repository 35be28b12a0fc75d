//! `litevault serve`: the daemon over real HTTP on loopback — configuration checks, the token,
//! every endpoint, schedules, retention, drills, restores through the API, metrics read by a real
//! Prometheus parser, reloads, shutdown during a job, and the API fuzzed from its OpenAPI document.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{archive_names, request, venv_bin, Daemon, TOKEN};
use crate::helper;
use crate::util::{make_db, make_sized_db, query_i64, Env};

fn db_config(extra: &str) -> String {
    format!("[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"backups\"\n{extra}\n")
}

fn small_db(env: &Env) {
    make_db(
        &env.path("app.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('a'), ('b');",
    );
}

/// Archives (not hidden files) in the workspace's backups directory.
fn archives(env: &Env) -> Vec<String> {
    env.backup_files()
        .into_iter()
        .filter(|f| f.ends_with(".tar.zst"))
        .collect()
}

fn hidden(env: &Env) -> Vec<String> {
    env.backup_files()
        .into_iter()
        .filter(|f| f.starts_with('.'))
        .collect()
}

/// Waits until the status says `db` has a last success; returns the status entry.
fn wait_backed_up(d: &Daemon, n: u64) -> Value {
    d.wait_for(60, "a backup", |d| {
        let s = d.get("/api/backup/status").json();
        let db = s["databases"][0].clone();
        let ok = d.get("/metrics").body;
        (ok.contains(&format!(
            "litevault_backups_total{{database=\"app\",result=\"success\"}} {n}"
        )) && db["running"].is_null())
        .then_some(db)
    })
}

#[test]
fn check_validates_and_bad_configurations_exit_1_with_the_reason() {
    let env = Env::new();
    small_db(&env);
    let good = format!(
        "listen = \"127.0.0.1:8750\"\n{}",
        db_config("schedule = \"0 */6 * * *\"\nincremental = true\nfull_every = 24\nkeep = { last = 4, daily = 7 }\nverify = \"every 6h\"")
    );
    std::fs::write(env.path("good.toml"), &good).unwrap();
    let r = env.run(&["serve", "--config", "good.toml", "--check"]).ok();
    assert!(r.stdout.contains("configuration OK"), "{}", r.stdout);
    assert!(
        r.stdout.contains("app:") && r.stdout.contains("0 */6 * * *"),
        "{}",
        r.stdout
    );
    let j = env
        .run(&["--json", "serve", "--config", "good.toml", "--check"])
        .ok()
        .json();
    assert_eq!(j["databases"][0]["name"], "app");
    assert_eq!(j["databases"][0]["keep"]["keep_last"], 4);

    for (text, expected) in [
        (good.replace("127.0.0.1", "0.0.0.0"), "token is required"),
        (good.replace("every 6h", "every six hours"), "verify"),
        (good.replace("[[databases]]", "[[database]]"), "unknown field"),
        ("listen = 8750".to_string(), "listen"),
    ] {
        std::fs::write(env.path("bad.toml"), &text).unwrap();
        let r = env.run(&["serve", "--config", "bad.toml", "--check"]).code(1);
        assert!(
            r.stderr.contains(expected) && r.stderr.contains("bad.toml"),
            "{text}\n{}",
            r.stderr
        );
        // Not only --check: the daemon itself refuses to start.
        let r = env.run(&["serve", "--config", "bad.toml"]).code(1);
        assert!(r.stderr.contains(expected), "{}", r.stderr);
    }
    let r = env.run(&["serve", "--config", "missing.toml"]).code(1);
    assert!(r.stderr.contains("missing.toml"), "{}", r.stderr);

    // A token file others can read is refused; mode 0600 is accepted.
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(env.path("token"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let with_file = good
        .replace("127.0.0.1", "0.0.0.0")
        .replace("listen", "token_file = \"token\"\nlisten");
    std::fs::write(env.path("tf.toml"), &with_file).unwrap();
    let r = env.run(&["serve", "--config", "tf.toml", "--check"]).code(1);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    std::fs::set_permissions(env.path("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = env.run(&["serve", "--config", "tf.toml", "--check"]).ok();
    assert!(
        !r.stdout.contains(TOKEN) && r.stdout.contains("token: required"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_port_in_use_exits_1_with_a_clear_message() {
    let env = Env::new();
    small_db(&env);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        env.path("c.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\n{}",
            db_config("schedule = \"every 1h\"")
        ),
    )
    .unwrap();
    let r = env.run(&["serve", "--config", "c.toml"]).code(1);
    assert!(
        r.stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}

#[test]
fn the_token_is_required_on_api_and_metrics_never_on_healthz_and_never_logged() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    for path in [
        "/api/backup/status",
        "/metrics",
        "/api/jobs",
        "/api/openapi.json",
        "/api/backups?database=app",
    ] {
        let none = request(d.addr, "GET", path, None, None);
        assert_eq!(none.status, 401, "{path}: {}", none.body);
        assert!(
            none.headers.contains("www-authenticate: Bearer"),
            "{}",
            none.headers
        );
        assert_eq!(none.json()["class"], "unauthorized");
        let wrong = request(d.addr, "GET", path, Some("test-token-0123456789abcdeX"), None);
        assert_eq!(wrong.status, 401, "{path}");
        let short = request(d.addr, "GET", path, Some("x"), None);
        assert_eq!(short.status, 401, "{path}");
        assert_eq!(d.get(path).status, 200, "{path}");
    }
    let post = request(
        d.addr,
        "POST",
        "/api/backup/create",
        None,
        Some(r#"{"database":"app"}"#),
    );
    assert_eq!(post.status, 401);
    // healthz needs no token.
    let h = request(d.addr, "GET", "/healthz", None, None);
    assert!(matches!(h.status, 200 | 503), "{}", h.body);
    wait_backed_up(&d, 1);
    assert_eq!(request(d.addr, "GET", "/healthz", None, None).status, 200);
    assert!(!d.log().contains(TOKEN), "the token was logged: {}", d.log());
}

#[test]
fn endpoints_create_job_status_backups_and_concurrent_creates() {
    let env = Env::new();
    make_sized_db(&env.path("app.db"), 40);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\"\nverify = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    // The first backup runs at start (there is none), then the first drill.
    let first = wait_backed_up(&d, 1);
    let first_archive = first["last_success"]["archive"].as_str().unwrap().to_string();
    assert!(
        first_archive.starts_with("app-") && first_archive.ends_with(".tar.zst"),
        "{first}"
    );
    d.wait_for(60, "the first drill", |d| {
        let s = d.get("/api/backup/status").json();
        s["databases"][0]["last_verify"]["ok"].as_bool().filter(|ok| *ok)
    });
    let h = request(d.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 200, "{}", h.body);

    // Two creates at once: exactly one is accepted, the other is told which job holds the database.
    let addr = d.addr;
    let send = move || {
        request(
            addr,
            "POST",
            "/api/backup/create",
            Some(TOKEN),
            Some(r#"{"database":"app"}"#),
        )
    };
    let (a, b) = (std::thread::spawn(send), std::thread::spawn(send));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{} / {}", a.body, b.body);
    let (ok, busy) = if a.status == 202 { (a, b) } else { (b, a) };
    let id = ok.json()["job"].as_u64().unwrap();
    assert_eq!(ok.json()["url"], format!("/api/jobs/{id}"));
    assert_eq!(busy.json()["class"], "busy");
    assert_eq!(busy.json()["job"].as_u64(), Some(id));

    // While it runs, the status shows it with its progress; then the job has the backup's report.
    let job = d.wait_job(id, 120);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "backup");
    assert_eq!(job["trigger"], "api");
    let report = &job["report"];
    assert_eq!(report["kind"], "full");
    let archive = Path::new(report["archive"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(env.backups().join(&archive).is_file());
    assert!(report["archive_size"].as_u64().unwrap() > 1000);
    assert!(job["progress"]["done_bytes"].as_u64().unwrap() > 0, "{job}");

    let status = d.get("/api/backup/status").json();
    let s = &status["databases"][0];
    assert_eq!(s["last_success"]["archive"], archive.as_str());
    assert!(s["next_backup"].as_str().is_some_and(|t| t.ends_with('Z')), "{s}");
    assert!(s["running"].is_null());

    // The archives, as `list --json` shows them.
    let listed = d.get("/api/backups?database=app").json();
    let names = archive_names(&listed);
    assert!(
        names.contains(&archive) && names.contains(&first_archive),
        "{names:?}"
    );
    assert_eq!(listed[0]["manifest"]["format"], "litevault/2");

    // Errors are JSON with a class.
    assert_eq!(d.get("/api/backups?database=nope").status, 404);
    assert_eq!(d.get("/api/backups").status, 400);
    assert_eq!(d.get("/api/jobs/999999").status, 404);
    assert_eq!(d.get("/api/jobs/abc").status, 404);
    assert_eq!(d.get("/api/nothing").status, 404);
    for (body, status) in [
        (r#"{"database":"nope"}"#, 404),
        (r#"{"database":"app","extra":1}"#, 400),
        ("not json", 400),
        ("", 400),
    ] {
        let r = d.post("/api/backup/create", body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    let big = format!("{{\"database\":\"{}\"}}", "a".repeat(20_000));
    assert_eq!(d.post("/api/backup/create", &big).status, 413);
    // The jobs list, newest first.
    let jobs = d.get("/api/jobs").json();
    assert_eq!(jobs["jobs"][0]["id"].as_u64(), Some(id));
    // The OpenAPI document served is the one in the repository.
    let doc = d.get("/api/openapi.json").json();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, file);
    for path in [
        "/healthz",
        "/metrics",
        "/api/backup/status",
        "/api/backups",
        "/api/backup/create",
        "/api/backup/restore",
        "/api/backup/verify",
        "/api/jobs/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
}

#[test]
fn schedules_run_and_retention_follows_each_backup() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 2s\"\nkeep = { last = 2 }"),
        Some(TOKEN),
        &[],
    );
    // Names carry a one-second stamp: 2 s apart, each backup has its own.
    d.wait_log("job.done", 4, 60);
    let found = archives(&env);
    assert_eq!(
        found.len(),
        2,
        "retention keeps the 2 newest: {found:?}\n{}",
        d.log()
    );
    assert!(d.log().contains("pruned=1"), "{}", d.log());
    let last = d.get("/api/jobs").json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| {
            j["kind"] == "backup"
                && j["state"] == "done"
                && j["prune"]["deleted"].as_array().is_some_and(|a| !a.is_empty())
        })
        .cloned()
        .expect("a backup job whose retention deleted one");
    assert_eq!(last["trigger"], "schedule");
    assert_eq!(last["prune"]["dry_run"], false);
}

/// A backup whose name says it was made `secs_ago`: a real archive of `app.db` renamed.
fn old_backup(env: &Env, secs_ago: i64) -> String {
    let archive = env.backup(&env.path("app.db"), &["--name", "app"]);
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs_ago);
    let stamp = t
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let name = format!("app-{stamp}.tar.zst");
    std::fs::rename(&archive, env.backups().join(&name)).unwrap();
    name
}

#[test]
fn a_schedule_missed_while_down_runs_once_at_start_and_a_recent_backup_waits() {
    // Three slots were missed: one backup at start, not three.
    let env = Env::new();
    small_db(&env);
    old_backup(&env, 3 * 3600 + 60);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    wait_backed_up(&d, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.log().matches("job.start").count(), 1, "{}", d.log());
    let next = d.get("/api/backup/status").json()["databases"][0]["next_backup"]
        .as_str()
        .unwrap()
        .to_string();
    let next = time::OffsetDateTime::parse(&next, &time::format_description::well_known::Rfc3339).unwrap();
    let wait = (next - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (3500..=3601).contains(&wait),
        "the next backup is an interval later: {wait} s"
    );
    drop(d);

    // A backup 10 minutes old: none at start, the next in 50 minutes.
    let env = Env::new();
    small_db(&env);
    old_backup(&env, 600);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    let next = d.wait_for(10, "the next backup time", |d| {
        d.get("/api/backup/status").json()["databases"][0]["next_backup"]
            .as_str()
            .map(str::to_string)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.log().matches("job.start").count(), 0, "{}", d.log());
    let next = time::OffsetDateTime::parse(&next, &time::format_description::well_known::Rfc3339).unwrap();
    let wait = (next - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((2900..=3001).contains(&wait), "{wait}");
    // No backup younger than twice the interval is missing: healthy.
    assert_eq!(request(d.addr, "GET", "/healthz", None, None).status, 200);
}

#[test]
fn a_drill_that_finds_the_newest_archive_damaged_turns_healthz_to_503() {
    let env = Env::new();
    make_sized_db(&env.path("app.db"), 2);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\"\nverify = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    d.wait_for(60, "a passed drill", |d| {
        d.get("/api/backup/status").json()["databases"][0]["last_verify"]["ok"]
            .as_bool()
            .filter(|ok| *ok)
    });
    let h = request(d.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(d
        .get("/metrics")
        .body
        .contains("litevault_last_verify_ok{database=\"app\"} 1"));

    // Damage the newest archive in the middle (its database entry), then drill through the API.
    let archive = env.backups().join(&archives(&env)[0]);
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&archive, bytes).unwrap();
    let r = d.post("/api/backup/verify", r#"{"database":"app"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["kind"], "verify");
    assert!(matches!(job["error"]["class"].as_str(), Some("corrupt")), "{job}");

    let h = request(d.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 503, "{}", h.body);
    let reasons = h.json()["reasons"].to_string();
    assert!(
        reasons.contains("restore drill") && reasons.contains(&archives(&env)[0]),
        "{reasons}"
    );
    let m = d.get("/metrics").body;
    assert!(m.contains("litevault_last_verify_ok{database=\"app\"} 0"), "{m}");
    assert!(
        m.contains("litevault_verifies_total{database=\"app\",result=\"failure\"} 1"),
        "{m}"
    );
    // The log line may follow the status by a moment.
    d.wait_for(30, "the drill's job.failed line", |d| {
        d.log()
            .lines()
            .any(|l| l.contains("job.failed") && l.contains("kind=verify"))
            .then_some(())
    });
    // The status names the failure too.
    let s = d.get("/api/backup/status").json();
    assert_eq!(s["databases"][0]["last_failure"]["kind"], "verify");
    assert_eq!(s["healthy"], false);
}

#[test]
fn a_restore_through_the_api_is_guarded_and_reaches_a_process_holding_the_database() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    let st = wait_backed_up(&d, 1);
    let archive = st["last_success"]["archive"].as_str().unwrap().to_string();
    // After the backup: the database changes, and another process holds it open.
    rusqlite::Connection::open(env.path("app.db"))
        .unwrap()
        .execute_batch("INSERT INTO t(x) VALUES ('after the backup'); CREATE TABLE later(y);")
        .unwrap();
    let hs = env.path("holder");
    std::fs::create_dir(&hs).unwrap();
    let _holder = helper::spawn("holder", &env.path("app.db"), &hs);
    helper::wait_for(&hs.join("ready"), 30);

    // Refusals answer 409/400/404 and change nothing.
    let before = query_i64(&env.path("app.db"), "SELECT count(*) FROM t");
    let r = d.post("/api/backup/restore", r#"{"database":"app","latest":true}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["class"], "refused");
    assert!(
        r.json()["error"].as_str().unwrap().contains("already exists"),
        "{}",
        r.body
    );
    for (body, status) in [
        (format!(r#"{{"database":"app","archive":"../{archive}"}}"#), 400),
        (r#"{"database":"app","archive":"/etc/passwd"}"#.to_string(), 400),
        (
            r#"{"database":"app","archive":"app-20200101T000000Z.tar.zst","overwrite":true}"#.to_string(),
            404,
        ),
        (
            r#"{"database":"app","latest":true,"at":"2000-01-01T00:00:00Z","overwrite":true}"#.to_string(),
            404,
        ),
        (r#"{"database":"other","latest":true}"#.to_string(), 404),
        (
            r#"{"database":"app","latest":true,"path":"/tmp/x.db"}"#.to_string(),
            400,
        ),
    ] {
        let r = d.post("/api/backup/restore", &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    assert_eq!(query_i64(&env.path("app.db"), "SELECT count(*) FROM t"), before);
    assert_eq!(
        d.get("/api/jobs").json()["jobs"].as_array().unwrap().len(),
        1,
        "refused restores leave no job"
    );

    // With overwrite: planned (live, through SQLite), done, the safety archive kept in the location.
    let r = d.post(
        "/api/backup/restore",
        &format!(r#"{{"database":"app","archive":"{archive}","overwrite":true}}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["plan"]["strategy"], "live", "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["restored"], true);
    let safety = job["report"]["safety_archive"].as_str().unwrap().to_string();
    assert!(
        safety.contains("app-pre-restore-") && Path::new(&safety).starts_with(env.backups()),
        "{safety}"
    );
    assert_eq!(query_i64(&env.path("app.db"), "SELECT count(*) FROM t"), 2);
    // The holder sees the restored content on its next transaction.
    std::fs::write(hs.join("go"), "").unwrap();
    helper::wait_for(&hs.join("holder.json"), 30);
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(hs.join("holder.json")).unwrap()).unwrap();
    assert_eq!(seen["before"], 3);
    assert_eq!(seen["after"], 2);
    assert!(!seen["tables"].as_str().unwrap().contains("later"));
    std::fs::write(hs.join("done"), "").unwrap();
    let m = d.get("/metrics").body;
    assert!(
        m.contains("litevault_restores_total{database=\"app\",result=\"success\"} 1"),
        "{m}"
    );
}

#[test]
fn metrics_parse_with_prometheus_client() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\"\nverify = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    wait_backed_up(&d, 1);
    d.wait_for(60, "a drill", |d| {
        d.get("/api/backup/status").json()["databases"][0]["last_verify"]["ok"].as_bool()
    });
    let text = d.get("/metrics");
    assert!(
        text.headers.contains("text/plain; version=0.0.4"),
        "{}",
        text.headers
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = [fam.type, s.value]
print(json.dumps(out))
"#;
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the metrics: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text.body
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |k: &str| parsed[k].clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let ts = get(r#"litevault_last_backup_success_timestamp_seconds{"database": "app"}"#);
    assert_eq!(ts[0], "gauge");
    assert!((now - ts[1].as_f64().unwrap()).abs() < 120.0, "{ts}");
    let ok = get(r#"litevault_backups_total{"database": "app", "result": "success"}"#);
    assert_eq!(
        (ok[0].as_str(), ok[1].as_f64()),
        (Some("counter"), Some(1.0)),
        "{ok}"
    );
    assert_eq!(
        get(r#"litevault_backups_total{"database": "app", "result": "failure"}"#)[1].as_f64(),
        Some(0.0)
    );
    assert!(
        get(r#"litevault_backup_size_bytes{"database": "app"}"#)[1]
            .as_f64()
            .unwrap()
            > 100.0
    );
    assert!(
        get(r#"litevault_backup_duration_seconds{"database": "app"}"#)[1]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert!(
        get(r#"litevault_last_verify_success_timestamp_seconds{"database": "app"}"#)[1]
            .as_f64()
            .unwrap()
            > 1e9
    );
    let running = get(r#"litevault_job_running{"database": "app"}"#);
    assert_eq!(
        (running[0].as_str(), running[1].as_f64()),
        (Some("gauge"), Some(0.0)),
        "{running}"
    );
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_running_configuration() {
    let env = Env::new();
    small_db(&env);
    make_db(
        &env.path("two.db"),
        "CREATE TABLE u(v); INSERT INTO u VALUES (1);",
    );
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &["--log-format", "json"],
    );
    wait_backed_up(&d, 1);
    let base = std::fs::read_to_string(&d.config).unwrap();
    let two =
        "[[databases]]\nname = \"two\"\npath = \"two.db\"\nlocation = \"backups\"\nschedule = \"every 1h\"\n";
    std::fs::write(&d.config, format!("{base}{two}")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("serve.reloaded", 1, 20);
    d.wait_for(60, "the new database's first backup", |d| {
        let s = d.get("/api/backup/status").json();
        let names: Vec<&str> = s["databases"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        (names == ["app", "two"] && !s["databases"][1]["last_success"].is_null()).then_some(())
    });
    assert_eq!(d.post("/api/backup/create", r#"{"database":"two"}"#).status, 202);

    std::fs::write(&d.config, format!("{base}{two}schedule = \"sometimes\"\n")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("serve.reload_refused", 1, 20);
    let s = d.get("/api/backup/status").json();
    assert_eq!(
        s["databases"].as_array().unwrap().len(),
        2,
        "the running configuration is kept"
    );
    // Every log line is one JSON object.
    for line in d.log().lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["event"].is_string() && v["time"].is_string(), "{line}");
    }
    assert!(d.log().contains("\"event\":\"serve.reload_refused\"") && d.log().contains("sometimes"));
}

#[test]
fn sigterm_lets_a_short_job_finish_and_cancels_a_long_one_within_the_grace() {
    // Grace long enough: the running backup finishes, its archive is whole, exit 0.
    let env = Env::new();
    make_sized_db(&env.path("app.db"), 60);
    let d_cfg = db_config("schedule = \"every 1h\"");
    let mut d = Daemon::start(
        env.dir.path(),
        &format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nshutdown_grace = \"60s\"\n{d_cfg}"),
        Some(TOKEN),
        &[],
    );
    d.wait_log("job.start", 1, 20);
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(d.log().contains("job.done"), "{}", d.log());
    assert_eq!(archives(&env).len(), 1);
    assert!(hidden(&env).is_empty(), "{:?}", hidden(&env));
    env.run(&["verify", env.backups().join(&archives(&env)[0]).to_str().unwrap()])
        .ok();

    // No grace: the running backup is cancelled, nothing partial is left, exit 0 at once.
    let env = Env::new();
    make_sized_db(&env.path("app.db"), 150);
    let mut d = Daemon::start(
        env.dir.path(),
        &format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nshutdown_grace = \"0s\"\n{d_cfg}"),
        Some(TOKEN),
        &[],
    );
    d.wait_log("job.start", 1, 20);
    std::thread::sleep(Duration::from_millis(100));
    let (code, took) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(d.log().contains("cancelled_jobs=1"), "{}", d.log());
    assert!(archives(&env).is_empty(), "{:?}", archives(&env));
    assert!(hidden(&env).is_empty(), "temp files left: {:?}", hidden(&env));
}

#[test]
fn schemathesis_finds_no_server_error() {
    let env = Env::new();
    small_db(&env);
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\"\nverify = \"every 1h\"\nkeep = { last = 3 }"),
        Some(TOKEN),
        &[],
    );
    wait_backed_up(&d, 1);
    let start = Instant::now();
    let out = Command::new(venv_bin("schemathesis"))
        .args([
            "run",
            &format!("http://{}/api/openapi.json", d.addr),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "100",
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems ({:?}):\n{stdout}\n{}\n{}",
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(stdout.contains("/api/backup/restore"), "{stdout}");
    // Whatever it sent, the database is intact and the daemon still answers.
    assert_eq!(crate::util::integrity(&env.path("app.db")), "ok");
    assert_eq!(d.get("/api/backup/status").status, 200);
}

#[test]
fn a_failing_backup_is_recorded_counted_and_makes_healthz_say_why() {
    let env = Env::new();
    std::fs::write(env.path("app.db"), b"this is not a database, only some text").unwrap();
    let d = Daemon::start(
        env.dir.path(),
        &db_config("schedule = \"every 1h\""),
        Some(TOKEN),
        &[],
    );
    let failure = d.wait_for(30, "the failure", |d| {
        let s = d.get("/api/backup/status").json();
        let f = s["databases"][0]["last_failure"].clone();
        (!f.is_null()).then_some(f)
    });
    assert_eq!(failure["kind"], "backup");
    assert!(
        failure["error"]["error"]
            .as_str()
            .unwrap()
            .contains("not an SQLite database"),
        "{failure}"
    );
    assert_eq!(failure["error"]["exit_code"], 1);
    let job = d.get(&format!("/api/jobs/{}", failure["job"])).json();
    assert_eq!(job["state"], "failed");
    assert!(
        job["report"].is_null() && job["error"]["hint"].is_string(),
        "{job}"
    );
    let h = request(d.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 503);
    assert!(h.body.contains("app: no successful backup yet"), "{}", h.body);
    let m = d.get("/metrics").body;
    assert!(
        m.contains("litevault_backups_total{database=\"app\",result=\"failure\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("litevault_last_backup_success_timestamp_seconds{database=\"app\"} 0"),
        "{m}"
    );
    // The log line may follow the status by a moment.
    d.wait_log("job.failed", 1, 30);
    assert!(d.log().contains("not an SQLite database"), "{}", d.log());
    assert!(archives(&env).is_empty() && hidden(&env).is_empty());
}

#[test]
fn jobs_of_different_databases_run_in_parallel_up_to_max_parallel() {
    let env = Env::new();
    make_sized_db(&env.path("a.db"), 60);
    std::fs::copy(env.path("a.db"), env.path("b.db")).unwrap();
    let two = "[[databases]]\nname = \"a\"\npath = \"a.db\"\nlocation = \"backups\"\nschedule = \"every 1h\"\n\
               [[databases]]\nname = \"b\"\npath = \"b.db\"\nlocation = \"backups\"\nschedule = \"every 1h\"\n";
    let states = |d: &Daemon| -> Vec<String> {
        let s = d.get("/api/backup/status").json();
        s["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["running"]["state"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    // One at a time: while one runs, the other is queued.
    let d = Daemon::start(
        env.dir.path(),
        &format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nmax_parallel = 1\n{two}"),
        Some(TOKEN),
        &[],
    );
    let seen = d.wait_for(60, "one running, one queued", |d| {
        let mut s = states(d);
        s.sort();
        (s == ["queued", "running"]).then_some(s)
    });
    assert_eq!(seen, ["queued", "running"]);
    // The running job's progress moves.
    d.wait_for(60, "progress of a running job", |d| {
        let s = d.get("/api/backup/status").json();
        s["databases"].as_array().unwrap().iter().find_map(|x| {
            let p = &x["running"]["progress"];
            (x["running"]["state"] == "running"
                && p["done_bytes"].as_u64() > Some(0)
                && p["phase"].is_string())
            .then_some(())
        })
    });
    d.wait_log("job.done", 2, 120);
    // SIGINT stops it like SIGTERM.
    d.signal(libc::SIGINT);
    d.wait_log("serve.stopped", 1, 20);
    assert!(d.log().contains("signal=SIGINT"), "{}", d.log());
    drop(d);
    // Two at a time: both run at once.
    let env2 = Env::new();
    std::fs::rename(env.path("a.db"), env2.path("a.db")).unwrap();
    std::fs::rename(env.path("b.db"), env2.path("b.db")).unwrap();
    let d = Daemon::start(
        env2.dir.path(),
        &format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nmax_parallel = 2\n{two}"),
        Some(TOKEN),
        &[],
    );
    d.wait_for(60, "both running", |d| {
        (states(d) == ["running", "running"]).then_some(())
    });
    d.wait_log("job.done", 2, 120);
}

#[test]
fn the_daemon_backs_up_to_s3_and_sigterm_mid_upload_aborts_it() {
    let srv = crate::s3server::S3Server::start();
    let env = Env::new();
    small_db(&env);
    let url = srv.url("small");
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\nshutdown_grace = \"0s\"\n\
         [[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"{url}\"\nschedule = \"every 1h\"\nverify = \"every 1h\"\nincremental = true\n"
    );
    let mut d = Daemon::start_with(env.dir.path(), &cfg, Some(TOKEN), &[], |c| srv.apply_env(c));
    d.wait_for(60, "a passed drill of the S3 backup", |d| {
        d.get("/api/backup/status").json()["databases"][0]["last_verify"]["ok"]
            .as_bool()
            .filter(|ok| *ok)
    });
    let listed = d.get("/api/backups?database=app").json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(listed[0]["path"].as_str().unwrap().starts_with(&url), "{listed}");
    assert_eq!(srv.object_keys("small/").len(), 1);

    // A big database joins by reload; SIGTERM while its upload runs: aborted, nothing published.
    make_sized_db(&env.path("big.db"), 160);
    let big = format!(
        "[[databases]]\nname = \"big\"\npath = \"big.db\"\nlocation = \"{}\"\nschedule = \"every 1h\"\n",
        srv.url("big")
    );
    std::fs::write(&d.config, format!("{cfg}{big}")).unwrap();
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.pending_uploads() == 0 {
        assert!(Instant::now() < deadline, "the upload never started: {}", d.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, took) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(d.log().contains("aborted_uploads=1"), "{}", d.log());
    assert!(
        srv.object_keys("big/").is_empty(),
        "{:?}",
        srv.object_keys("big/")
    );
    assert_eq!(srv.pending_uploads(), 0, "{:?}", srv.pending_upload_keys());
}
