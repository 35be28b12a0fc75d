//! `litevault serve` under hostile or careless clients, over real HTTP on loopback: refusals that
//! must not use up job numbers or speak the command line's words.

use serde_json::Value;

use crate::daemon::{Daemon, TOKEN};
use crate::util::{make_db, Env};

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
