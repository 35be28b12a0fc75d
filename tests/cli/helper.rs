//! Roles this test binary plays as a second process: a continuous writer and a process that
//! holds a database open. `spawn` re-runs the test binary on the ignored `helper_process` test
//! with the role in the environment; files in a shared directory carry the handshakes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// A helper process, killed if the test ends (or panics) before it exits.
pub struct Helper(Child);

impl Helper {
    /// Waits for the helper to exit; true when it succeeded.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts this binary as a helper process playing `role` on `db`, with handshake files in `dir`.
pub fn spawn(role: &str, db: &Path, dir: &Path) -> Helper {
    Helper(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper::helper_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("LITEVAULT_TEST_ROLE", role)
            .env("LITEVAULT_TEST_DB", db)
            .env("LITEVAULT_TEST_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until `file` exists (the helper's signal), panicking after `secs`.
/// Writes `contents` to `path` whole at once (a temp file renamed into place): a test that
/// waits for the file to appear reads all of it, never an empty or half-written file.
fn publish(path: std::path::PathBuf, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, &path)
}

pub fn wait_for(file: &Path, secs: u64) {
    let start = Instant::now();
    while !file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "helper never wrote {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "run only as a helper process by other tests"]
fn helper_process() {
    let Ok(role) = std::env::var("LITEVAULT_TEST_ROLE") else {
        return;
    };
    let db = PathBuf::from(std::env::var("LITEVAULT_TEST_DB").unwrap());
    let dir = PathBuf::from(std::env::var("LITEVAULT_TEST_DIR").unwrap());
    match role.as_str() {
        "writer" => writer(&db, &dir),
        "holder" => holder(&db, &dir),
        other => panic!("unknown role {other}"),
    }
}

/// Commits small transfer transactions as fast as it can until `dir/stop` appears. Invariants
/// it keeps: `sum(acct.bal)` is constant and `count(log) == counter.n`. Writes
/// `dir/writer.json` with its commit count and worst commit latency.
fn writer(db: &Path, dir: &Path) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(60)).unwrap();
    let mut commits = 0u64;
    let mut worst = Duration::ZERO;
    let mut i: i64 = 0;
    while !dir.join("stop").exists() {
        i += 1;
        let t = Instant::now();
        let from = i % 100 + 1;
        let to = (i * 7) % 100 + 1;
        c.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             UPDATE acct SET bal = bal - 1 WHERE id = {from};
             UPDATE acct SET bal = bal + 1 WHERE id = {to};
             INSERT INTO log(a, b, note) VALUES ({from}, {to}, hex(randomblob(64)));
             UPDATE counter SET n = n + 1;
             COMMIT;"
        ))
        .unwrap();
        worst = worst.max(t.elapsed());
        commits += 1;
        if commits == 1 {
            publish(dir.join("writer-ready"), b"").unwrap();
        }
    }
    publish(
        dir.join("writer.json"),
        format!("{{\"commits\": {commits}, \"worst_ms\": {}}}", worst.as_millis()),
    )
    .unwrap();
}

/// Opens the database and keeps the connection: signals `ready`, waits for `go`, then reads
/// through the same connection what it now sees, writes a row, reports in `holder.json`, and
/// keeps the connection open until `done`.
fn holder(db: &Path, dir: &Path) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    let before: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    publish(dir.join("ready"), before.to_string()).unwrap();
    wait_for(&dir.join("go"), 120);
    let after: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    let tables: String = c
        .query_row(
            "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema ORDER BY name)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c.execute(
        "INSERT INTO t(x) VALUES ('written by the holder after the restore')",
        [],
    )
    .unwrap();
    publish(
        dir.join("holder.json"),
        serde_json::json!({"before": before, "after": after, "tables": tables}).to_string(),
    )
    .unwrap();
    wait_for(&dir.join("done"), 120);
}
