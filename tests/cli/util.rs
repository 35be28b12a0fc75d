//! Helpers shared by the integration tests: a temp workspace with its own backup directory, a
//! runner for the real binary, fixture paths and database builders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::Connection;

/// A temp directory to work in, with `LITEVAULT_DIR` pointing at `backups/` inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts this exit code and returns self.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("backups")).unwrap();
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn backups(&self) -> PathBuf {
        self.path("backups")
    }

    /// Runs `litevault ARGS` in the workspace, stdin closed, `LITEVAULT_DIR` set.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("LITEVAULT_DIR", self.backups())
            .env("LITEVAULT_STATE_DIR", self.path(".state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Backs up `db` with extra args and `--json`; returns the archive path.
    #[track_caller]
    pub fn backup(&self, db: &Path, extra: &[&str]) -> PathBuf {
        let mut args = vec!["backup", db.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let r = self.run(&args).ok();
        PathBuf::from(r.json()["archive"].as_str().unwrap())
    }

    /// Files in the backup directory (hidden ones included).
    pub fn backup_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.backups())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_litevault")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The fixture files in a folder of tests/fixtures (databases only).
pub fn fixtures_in(folder: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db" || e == "sqlite"))
        .collect();
    v.sort();
    v
}

/// The fixture in real/ written by SQLite 3.40 whose expression index over REAL values
/// disagrees with its table under SQLite 3.47+ (REALs are spelled with more digits): every row
/// intact, `integrity_check` reports "row N missing from index i".
pub const OLD_SQLITE_INDEX: &str = "real/old-sqlite-real-index.db";

/// Whether `path` is that fixture.
pub fn is_old_sqlite_index(path: &Path) -> bool {
    path.ends_with(OLD_SQLITE_INDEX)
}

/// The check named `name` in a verify or restore report.
#[track_caller]
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

/// Copies a fixture into the workspace (writable) and returns the copy.
pub fn copy_fixture(env: &Env, rel: &str) -> PathBuf {
    let src = fixture(rel);
    let dst = env.path(src.file_name().unwrap().to_str().unwrap());
    std::fs::copy(&src, &dst).unwrap();
    let mut perm = std::fs::metadata(&dst).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&dst, perm).unwrap();
    dst
}

/// Creates a database by running `sql`.
pub fn make_db(path: &Path, sql: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

/// Logical content hash of a database (layout-independent).
pub fn content_hash(path: &Path) -> String {
    // Read-write, as an application opens it: a hot journal is rolled back first.
    let c = Connection::open(path).unwrap();
    litevault::sqlite::db::content_hash(&c).unwrap()
}

/// An integer from a one-value query.
pub fn query_i64(path: &Path, sql: &str) -> i64 {
    let mut c = Connection::open(path).unwrap();
    // Retry locks quickly: a reader with SQLite's default handler starves beside a busy
    // rollback-mode writer.
    litevault::sqlite::db::fast_busy_handler(&mut c, path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `PRAGMA integrity_check` result, joined.
pub fn integrity(path: &Path) -> String {
    let c = Connection::open(path).unwrap();
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    rows.join("; ")
}

/// A database of about `mb` MiB of mixed rows (random and compressible), rollback mode.
pub fn make_sized_db(path: &Path, mb: usize) {
    let rows = mb * 1024 / 4; // ~4 KiB a row
    make_db(
        path,
        &format!(
            "PRAGMA page_size=4096;
             CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, body BLOB);
             CREATE INDEX items_name ON items(name);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {rows})
             INSERT INTO items(name, body)
               SELECT 'item ' || i, CASE WHEN i % 2 = 0 THEN randomblob(3800) ELSE zeroblob(3800) END FROM n;"
        ),
    );
}

/// Pages of a database file, page 1's counters masked (bytes 24..28 change counter, 40..44
/// schema cookie, 92..100 version-valid-for and SQLite version).
pub fn pages_masked(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    for r in [24..28, 40..44, 92..100] {
        b[r].fill(0);
    }
    b
}

/// This process's-style temp entries (`.litevault-...`) in `dir`.
pub fn temps_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".litevault-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A small tmpfs mounted in the workspace (root only), unmounted when dropped: a real full disk.
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    /// Mounts a `mib` MiB tmpfs at `at` (created); `None` when this process may not mount.
    pub fn mount(at: PathBuf, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
