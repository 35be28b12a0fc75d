//! Opening SQLite files safely and reading what litevault needs to know about them.
//!
//! Three ways to open a database, one per trust level: [`open_source`] (a user's live database:
//! read-only, never modified), [`open_private`] (a file litevault itself wrote and nobody else
//! sees, e.g. a snapshot or an extracted archive) and, for both, the hardening that SQLite's
//! security guide asks for with untrusted files (defensive mode, `trusted_schema=OFF`,
//! `cell_size_check=ON`, no ATTACH, no extensions). [`DbInfo`] gathers the header state and the
//! table list that manifests record; [`run_checks`] runs the integrity checks that verify and
//! restore report by name ([`integrity_findings`] classifies what SQLite reports, see
//! [`crate::sqlite::findings`]), and [`drop_vtab_modules`] / [`vtab_problems`] split SQLite's
//! whole-database check in two parts that run on two connections at once; [`reindex`] rebuilds
//! indexes of a private copy (never of a user's database); [`content_hash`] hashes a
//! database's logical content independently of its page layout.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::hex;
use crate::sqlite::findings::{Findings, SchemaNames, PROBLEM_LIMIT};

/// The magic string at the start of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks that `path` is a regular file that starts like an SQLite database, with errors that
/// say what it is instead (missing, empty, too short, a WAL file, something else).
pub fn check_header(path: &Path) -> Result<u64> {
    let len = precheck(path)?;
    let not_db = |reason: String| Error::NotADatabase {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 100];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if n >= 32 && (magic == 0x377f_0682 || magic == 0x377f_0683) {
        return Err(not_db(
            "it is a WAL file (write-ahead log), not a database".into(),
        ));
    }
    if n < 100 {
        return Err(not_db(format!(
            "the file is only {len} bytes long; an SQLite header alone is 100"
        )));
    }
    if &head[..16] != SQLITE_MAGIC {
        return Err(not_db("the file does not start with the SQLite header".into()));
    }
    Ok(len)
}

/// Checks what can be checked of a user's database without opening the file: it exists, is a
/// regular file and is not empty. (Opening and closing a database file outside SQLite drops
/// every POSIX lock this process holds on it, so a live database is only opened through
/// SQLite; [`check_header`] runs only after SQLite refused it, to say why.)
pub fn precheck(path: &Path) -> Result<u64> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("stat", path, e)),
    };
    let not_db = |reason: &str| Error::NotADatabase {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if meta.is_dir() {
        return Err(not_db("it is a directory"));
    }
    if !meta.is_file() {
        return Err(not_db("it is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(not_db("the file is empty (0 bytes)"));
    }
    Ok(meta.len())
}

/// Opens a user's database read-only for a backup or a check. Never writes to the database
/// file. (For a WAL database SQLite may still create its `-shm` and `-wal` files, as every
/// reader does.)
pub fn open_source(path: &Path) -> Result<Connection> {
    precheck(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|e| explain(path, Error::sqlite("open", path, e)))?;
    harden(&conn, path)?;
    fast_busy_handler(&mut conn, path)?;
    // Reading the schema here turns "not a database" and a hot journal into errors now rather
    // than in the middle of a copy.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
        .map_err(|e| explain(path, map_open_error(path, e)))?;
    Ok(conn)
}

/// After SQLite refused a file: if its header shows it is not a database at all, say what it
/// is instead; otherwise keep SQLite's reason.
fn explain(path: &Path, err: Error) -> Error {
    match check_header(path) {
        Err(header_err) => header_err,
        Ok(_) => err,
    }
}

/// Installs a busy handler that retries a lock every ~100 µs for up to `timeout`. SQLite's own
/// handler sleeps for growing intervals and, in rollback-journal mode, can miss every one of
/// the short gaps between a busy writer's commits, starving the reader.
pub fn fast_busy_handler(conn: &mut Connection, path: &Path) -> Result<()> {
    fn retry(count: i32) -> bool {
        // Each retry costs about 100 µs of sleep plus the lock attempt: 300,000 tries ≈ 30 s.
        if count >= 300_000 {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
        true
    }
    conn.busy_handler(Some(retry))
        .map_err(|e| Error::sqlite("configure", path, e))
}

/// Opens a database file that litevault wrote itself and nobody else has open (a snapshot, an
/// extracted archive). Read-only opens use `immutable=1`: no locks and no `-wal`/`-shm` files.
pub fn open_private(path: &Path, writable: bool) -> Result<Connection> {
    check_header(path)?;
    let conn = if writable {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(path, flags)
    } else {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        Connection::open_with_flags(immutable_uri(path), flags)
    }
    .map_err(|e| Error::sqlite("open", path, e))?;
    harden(&conn, path)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
        .map_err(|e| map_open_error(path, e))?;
    Ok(conn)
}

fn map_open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "SQLite cannot read its header (file is not a database)".into(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => Error::CorruptDatabase {
            path: path.to_path_buf(),
            detail: "the schema cannot be read".into(),
        },
        Some(rusqlite::ErrorCode::ReadOnly)
            if e.sqlite_extended_error_code() == Some(rusqlite::ffi::SQLITE_READONLY_ROLLBACK) =>
        {
            Error::InUse {
                path: path.to_path_buf(),
                detail: "it has a hot journal left by a crashed writer, which a read-only open cannot \
                     roll back; open it once with its application or sqlite3 to recover it"
                    .into(),
            }
        }
        _ => Error::sqlite("read schema of", path, e),
    }
}

/// `file:` URI for an immutable read-only open. Bytes that URIs reserve, and every non-ASCII
/// byte, are percent-encoded (SQLite decodes `%HH` back to the byte).
pub(crate) fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::from("file:");
    for &b in abs.as_os_str().as_bytes() {
        if b == b'%' || b == b'?' || b == b'#' || !b.is_ascii() || b.is_ascii_control() {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out + "?immutable=1"
}

/// The settings SQLite's security guide recommends for files from outside: no schema-defined
/// functions run with side effects, no ATTACH, stricter page checks, no memory mapping.
pub(crate) fn harden(conn: &Connection, path: &Path) -> Result<()> {
    use rusqlite::config::DbConfig;
    let e = |err| Error::sqlite("configure", path, err);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(e)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(e)?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(e)?;
    conn.execute_batch("PRAGMA cell_size_check=ON; PRAGMA mmap_size=0;")
        .map_err(e)?;
    Ok(())
}

/// A connection that stays open for days and reads little (a replicator's): no lookaside
/// (SQLite's per-connection 120 KiB of small-allocation slots) and a page cache of 64 KiB, so
/// that a hundred of them in one daemon cost little memory. Call right after opening.
pub(crate) fn lean(conn: &Connection, path: &Path) -> Result<()> {
    // SAFETY: the handle is this open connection's; no lookaside memory is in use right after
    // open, as SQLITE_DBCONFIG_LOOKASIDE requires; a null buffer with size 0 and count 0 turns
    // lookaside off.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(Error::sqlite(
            "configure",
            path,
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), Some("lookaside".into())),
        ));
    }
    conn.execute_batch("PRAGMA cache_size=-64;")
        .map_err(|err| Error::sqlite("configure", path, err))
}

/// A table (or view, virtual or shadow table) as a manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table's name.
    pub name: String,
    /// "table", "virtual", "shadow" or "view" (SQLite's `PRAGMA table_list` type).
    #[serde(rename = "type")]
    pub kind: String,
    /// Row count; `None` for views and for virtual tables whose module is unavailable.
    pub rows: Option<u64>,
}

/// How many of `tables` are the database's own: ordinary and virtual tables, not views,
/// shadow tables or SQLite's internal `sqlite_*` tables.
pub fn own_tables(tables: &[TableEntry]) -> usize {
    tables
        .iter()
        .filter(|t| (t.kind == "table" || t.kind == "virtual") && !t.name.starts_with("sqlite_"))
        .count()
}

/// Header state and contents summary of a database, as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInfo {
    /// Page size in bytes.
    pub page_size: u32,
    /// Number of pages.
    pub page_count: u64,
    /// Pages on the freelist.
    pub freelist_count: u64,
    /// "wal" or "delete" (read from the header's file format bytes).
    pub journal_mode: String,
    /// "UTF-8", "UTF-16le" or "UTF-16be".
    pub encoding: String,
    /// `PRAGMA user_version`: the application's schema version.
    pub user_version: i64,
    /// `PRAGMA application_id`.
    pub application_id: i64,
    /// "none", "full" or "incremental".
    pub auto_vacuum: String,
    /// Every table, view, virtual and shadow table of the main schema, by name.
    pub tables: Vec<TableEntry>,
}

impl DbInfo {
    /// Reads the header state and counts the rows of every table. Run it inside a read
    /// transaction (or on a private file) for a consistent picture.
    pub fn read(conn: &Connection, path: &Path) -> Result<DbInfo> {
        // The header's write-version byte says WAL (2) or rollback journal (1). `PRAGMA
        // journal_mode` reports the connection's mode, which for an immutable open is never
        // "wal", so read the byte from the file: only private files come here.
        Self::read_in_mode(conn, path, header_write_version(path)?, true)
    }

    /// Like [`DbInfo::read`] for a database whose page 1 was read through SQLite (a live
    /// source inside a read transaction): the journal mode comes from its header bytes.
    /// Without `count`, every table's `rows` is `None`.
    pub fn read_with_header(conn: &Connection, path: &Path, page1: &[u8], count: bool) -> Result<DbInfo> {
        Self::read_in_mode(conn, path, page1.get(18).copied().unwrap_or(1), count)
    }

    fn read_in_mode(conn: &Connection, path: &Path, write_version: u8, count: bool) -> Result<DbInfo> {
        let e = |err| Error::sqlite("read database information from", path, err);
        let int = |pragma: &str| -> Result<i64> {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .map_err(e)
        };
        let page_size = int("page_size")? as u32;
        let page_count = int("page_count")? as u64;
        let freelist_count = int("freelist_count")? as u64;
        let user_version = int("user_version")?;
        let application_id = int("application_id")?;
        let auto_vacuum = match int("auto_vacuum")? {
            1 => "full",
            2 => "incremental",
            _ => "none",
        }
        .to_string();
        let encoding: String = conn.query_row("PRAGMA encoding", [], |r| r.get(0)).map_err(e)?;
        let journal_mode = if write_version == 2 { "wal" } else { "delete" }.to_string();
        let tables = list_tables(conn, path, count)?;
        Ok(DbInfo {
            page_size,
            page_count,
            freelist_count,
            journal_mode,
            encoding,
            user_version,
            application_id,
            auto_vacuum,
            tables,
        })
    }
}

impl DbInfo {
    /// Describes a database from its 100-byte header alone, for files whose schema SQLite cannot
    /// read (archived with `--allow-corrupt`). Tables are unknown and left empty.
    pub fn from_header(path: &Path) -> Result<DbInfo> {
        let mut h = [0u8; 100];
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        f.read_exact(&mut h)
            .map_err(|e| Error::io("read header of", path, e))?;
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        Ok(Self::from_header_bytes(&h, len))
    }

    /// Like [`DbInfo::from_header`] from the first 100 bytes of a database of `len` bytes.
    ///
    /// # Panics
    /// When `h` is shorter than 100 bytes.
    pub fn from_header_bytes(h: &[u8], len: u64) -> DbInfo {
        let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let raw_ps = u16::from_be_bytes([h[16], h[17]]) as u32;
        let page_size = if raw_ps == 1 { 65536 } else { raw_ps };
        let page_count = if page_size >= 512 {
            len / page_size as u64
        } else {
            0
        };
        DbInfo {
            page_size,
            page_count,
            freelist_count: be32(36) as u64,
            journal_mode: if h[18] == 2 { "wal" } else { "delete" }.into(),
            encoding: match be32(56) {
                2 => "UTF-16le",
                3 => "UTF-16be",
                _ => "UTF-8",
            }
            .into(),
            user_version: be32(60) as i32 as i64,
            application_id: be32(68) as i32 as i64,
            auto_vacuum: match (be32(52), be32(64)) {
                (0, _) => "none",
                (_, 0) => "full",
                _ => "incremental",
            }
            .into(),
            tables: Vec::new(),
        }
    }
}

/// Byte 18 of a database file's header (1 = rollback journal, 2 = WAL). Only for files that
/// no other process writes: a live database's header must be read through SQLite.
pub fn header_write_version(path: &Path) -> Result<u8> {
    let mut head = [0u8; 19];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    f.read_exact(&mut head)
        .map_err(|e| Error::io("read header of", path, e))?;
    Ok(head[18])
}

/// Lists the main schema's tables, views, virtual and shadow tables, in name order, with row
/// counts when `count` is set.
pub fn list_tables(conn: &Connection, path: &Path, count: bool) -> Result<Vec<TableEntry>> {
    let e = |err| Error::sqlite("list tables of", path, err);
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_list WHERE schema = 'main' ORDER BY name")
        .map_err(e)?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)?;
    let mut out = Vec::with_capacity(rows.len());
    for (name, kind) in rows {
        if name == "sqlite_schema" || name == "sqlite_temp_schema" {
            continue;
        }
        let rows = if count && kind != "view" {
            let sql = format!("SELECT count(*) FROM main.{}", quote_ident(&name));
            match conn.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
                Ok(n) => Some(n as u64),
                // A virtual table whose module this build lacks, or a damaged table in a
                // database archived with --allow-corrupt, cannot be counted: `None` says so.
                Err(_) => None,
            }
        } else {
            None
        };
        out.push(TableEntry { name, kind, rows });
    }
    Ok(out)
}

pub use crate::model::sql::quote_ident;

/// Runs `PRAGMA quick_check` (or `integrity_check` when `full`) and returns the problems found,
/// at most `limit` of them; an empty list means the database is intact.
pub fn integrity_problems(conn: &Connection, full: bool, limit: usize) -> rusqlite::Result<Vec<String>> {
    let pragma = if full { "integrity_check" } else { "quick_check" };
    let mut stmt = conn.prepare(&format!("PRAGMA {pragma}({limit})"))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// [`integrity_findings`] as lines for a message: one per object and class of problem (capped
/// and counted, not one per row), then what to do about them.
pub fn classified_problems(conn: &Connection, full: bool, limit: usize) -> rusqlite::Result<Vec<String>> {
    let found = integrity_findings(conn, full, limit);
    let mut lines: Vec<String> = found.findings.iter().map(|f| f.to_string()).collect();
    if found.truncated {
        lines.push(format!(
            "the check stopped after {} problems, so there may be more",
            found.total
        ));
    }
    if let Some(action) = found.action() {
        lines.push(format!("what to do: {action}"));
    }
    Ok(lines)
}

/// Runs `PRAGMA quick_check` (or `integrity_check` when `full`), up to `limit` problems, and
/// sorts what it reports into findings by class and object (see [`crate::sqlite::findings`]); messages
/// are tallied as they are read. An error that stops the check (SQLite's "database disk image
/// is malformed") is a finding too.
pub fn integrity_findings(conn: &Connection, full: bool, limit: usize) -> Findings {
    let names = SchemaNames::read(conn);
    let mut found = Findings::default();
    let pragma = if full { "integrity_check" } else { "quick_check" };
    let result = (|| -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(&format!("PRAGMA {pragma}({limit})"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            found.add_row(&row.get::<_, String>(0)?, &names);
        }
        Ok(())
    })();
    if let Err(e) = result {
        found.add_error(&e);
    }
    found.truncated = found.total >= limit as u64;
    found
}

/// Removes every virtual-table module from `conn` (`sqlite3_drop_modules`), so that
/// `PRAGMA quick_check` and `integrity_check` on it check the b-trees only: all of them,
/// shadow tables included, with the page accounting. Since SQLite 3.44 these pragmas also run
/// each virtual table's own integrity method (FTS5 re-reads its whole index, often the slowest
/// part by far); [`vtab_problems`] runs exactly that part, on another connection, at the same
/// time. Together they check what one pragma would. Call it on a connection on which no
/// virtual table has been used yet.
pub fn drop_vtab_modules(conn: &Connection) -> rusqlite::Result<()> {
    // SAFETY: a valid connection; a null keep-list drops every module.
    let rc = unsafe { rusqlite::ffi::sqlite3_drop_modules(conn.handle(), std::ptr::null_mut()) };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            None,
        ))
    }
}

/// Runs the integrity method of every virtual table of the main schema whose module this
/// connection has (`PRAGMA quick_check(<table>)`, or `integrity_check` when `full`): the part
/// of a whole-database check that [`drop_vtab_modules`] leaves out. Returns the problems
/// found, by table (tables without problems are listed with none). Tables named in `except`
/// are left out (a caller that runs a stronger check of its own on them).
pub fn vtab_problems(
    conn: &Connection,
    full: bool,
    limit: usize,
    except: &[&str],
) -> rusqlite::Result<Vec<(String, Vec<String>)>> {
    let pragma = if full { "integrity_check" } else { "quick_check" };
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
    )?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(names.len());
    for name in names.into_iter().filter(|n| !except.contains(&n.as_str())) {
        let mut stmt = conn.prepare(&format!("PRAGMA {pragma}({})", quote_ident(&name)))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let problems: Vec<String> = rows.into_iter().filter(|r| r != "ok").take(limit).collect();
        out.push((name, problems));
    }
    Ok(out)
}

/// Which indexes `restore` and `verify` rebuild in their private copy before checking it
/// (`--reindex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reindex {
    /// None: the copy is checked as it is.
    #[default]
    No,
    /// The indexes the checks find disagreeing with their tables (class
    /// [`crate::sqlite::findings::ProblemClass::Index`]), after which the checks run again.
    Disputed,
    /// Every index, before the checks.
    All,
}

/// Rebuilds indexes of a private database file (one litevault wrote, never a user's database)
/// from their tables' rows with `REINDEX`, in one transaction: the indexes named in `which`
/// (names not in the schema are ignored), or every index when `which` is `None`. Table rows are
/// never written. Returns the indexes rebuilt, in name order. In WAL mode the WAL is folded
/// into the file before it is closed, so that a read-only (immutable) open sees the rebuilt
/// indexes. A failure (e.g. a UNIQUE index whose table holds duplicates) rolls everything back
/// and is reported as [`Error::CorruptDatabase`] naming the index.
pub fn reindex(path: &Path, which: Option<&[String]>) -> Result<Vec<String>> {
    let conn = open_private(path, true)?;
    let e = |err| Error::sqlite("rebuild indexes of", path, err);
    let all: Vec<String> = conn
        .prepare("SELECT name FROM main.sqlite_schema WHERE type = 'index' ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(e)?;
    let names: Vec<String> = match which {
        None => all,
        Some(w) => all.into_iter().filter(|n| w.contains(n)).collect(),
    };
    if names.is_empty() {
        return Ok(names);
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(e)?;
    for name in &names {
        // Schema-qualified, so that the name is never taken for a collation's.
        if let Err(err) = conn.execute_batch(&format!("REINDEX main.{}", quote_ident(name))) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::CorruptDatabase {
                path: path.to_path_buf(),
                detail: format!("index {name:?} cannot be rebuilt from its table: {err}"),
            });
        }
    }
    conn.execute_batch("COMMIT").map_err(e)?;
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(e)?;
    if busy != 0 || log != done {
        return Err(Error::InUse {
            path: path.to_path_buf(),
            detail: format!("its WAL could not be checkpointed after REINDEX ({done} of {log} frames)"),
        });
    }
    conn.close().map_err(|(_, err)| e(err))?;
    Ok(names)
}

/// Counts the rows that `PRAGMA foreign_key_check` reports.
pub fn foreign_key_violations(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
}

/// The full-text tables of the main schema, with their module ("fts5", "fts4" or "fts3").
pub fn fts_tables(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
    )?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, sql)| {
            let module = virtual_module(&sql)?;
            matches!(module.as_str(), "fts5" | "fts4" | "fts3").then_some((name, module))
        })
        .collect())
}

/// The module name in a `CREATE VIRTUAL TABLE ... USING module(...)` statement, lowercased.
pub(crate) fn virtual_module(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.find(" using ")? + " using ".len();
    let module: String = lower[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!module.is_empty()).then_some(module)
}

pub use crate::model::check::{Check, CheckStatus};

/// What [`run_checks`] should run.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// `quick_check` instead of `integrity_check`.
    pub quick: bool,
    /// The connection may write: run FTS `'integrity-check'` commands, which also compare an
    /// external-content index with its content table. Only for private copies.
    pub writable: bool,
    /// Foreign-key violations that are known to be in the data (recorded at backup time) and
    /// therefore not a sign of damage.
    pub expected_fk_violations: Option<u64>,
}

/// Runs SQLite's integrity checks on an open database and reports each by name. With `quick`,
/// the storage-level checks only: `quick_check` of every b-tree (shadow tables of full-text
/// indexes included) with the page accounting, on a second read-only connection without
/// virtual-table modules, and the foreign keys; each full-text index's own integrity check
/// (which re-reads the whole index, often slower than everything else) is reported skipped.
pub fn run_checks(conn: &Connection, opts: CheckOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    let name = if opts.quick {
        "quick_check"
    } else {
        "integrity_check"
    };
    let storage_only = || -> Option<Findings> {
        let path = conn.path().filter(|p| !p.is_empty())?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let other = Connection::open_with_flags(path, flags).ok()?;
        harden(&other, Path::new(path)).ok()?;
        drop_vtab_modules(&other).ok()?;
        Some(integrity_findings(&other, false, PROBLEM_LIMIT))
    };
    let found = match opts.quick.then(storage_only).flatten() {
        Some(f) => f,
        None => integrity_findings(conn, !opts.quick, PROBLEM_LIMIT),
    };
    checks.push(Check::from_findings(name, found));
    checks.push(fk_check(
        foreign_key_violations(conn),
        opts.expected_fk_violations,
    ));
    match fts_tables(conn) {
        Ok(tables) => {
            for (table, module) in tables {
                checks.push(if opts.quick {
                    fts_skipped_quick(&table, &module)
                } else {
                    fts_check(conn, &table, &module, opts.writable)
                });
            }
        }
        Err(e) => checks.push(Check::fail("fts tables", e.to_string())),
    }
    checks
}

/// The full-text check that `--quick` leaves out.
pub(crate) fn fts_skipped_quick(table: &str, module: &str) -> Check {
    Check::skipped(
        format!("{module} integrity {table}"),
        "not run with --quick (its b-trees were checked; run without --quick to check the index)",
    )
}

/// The `foreign_key_check` check from a count of violations; `expected` violations (recorded
/// at backup time) are not a sign of damage.
pub(crate) fn fk_check(count: rusqlite::Result<u64>, expected: Option<u64>) -> Check {
    match count {
        Ok(0) => Check::pass("foreign_key_check", "no violations"),
        Ok(n) if Some(n) == expected => Check::pass(
            "foreign_key_check",
            format!("{n} violations, the same as in the source at backup time"),
        ),
        Ok(n) => Check::fail("foreign_key_check", format!("{n} violations")),
        Err(e) => Check::fail("foreign_key_check", e.to_string()),
    }
}

pub(crate) fn fts_check(conn: &Connection, table: &str, module: &str, writable: bool) -> Check {
    let name = format!("{module} integrity {table}");
    let q = quote_ident(table);
    let result = if writable {
        let sql = if module == "fts5" {
            format!("INSERT INTO {q}({q}, rank) VALUES('integrity-check', 1)")
        } else {
            format!("INSERT INTO {q}({q}) VALUES('integrity-check')")
        };
        conn.execute(&sql, []).map(|_| Vec::new())
    } else {
        // SQLite (3.44+) runs a virtual table's own integrity method for this pragma.
        let sql = format!("PRAGMA integrity_check({})", quote_ident(table));
        conn.prepare(&sql).and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.into_iter().filter(|r| r != "ok").collect())
        })
    };
    let mut found = Findings::default();
    match result {
        Err(e) if e.to_string().contains("no such module") => {
            return Check::skipped(name, format!("not checked: {e}"))
        }
        Ok(p) => p.iter().for_each(|m| found.add_vtab(table, Some(module), m)),
        Err(e) => found.add_vtab(table, Some(module), &e.to_string()),
    }
    Check::from_findings(name, found)
}

/// A SHA-256 of the database's logical content, independent of page layout: every table's
/// rows in key order (rowid included) with type-tagged values, virtual tables' visible rows,
/// then the schema. A page copy, a `VACUUM INTO` copy and a correct logical restore hash alike.
pub fn content_hash(conn: &Connection) -> rusqlite::Result<String> {
    let mut h = Sha256::new();
    let mut stmt = conn.prepare(
        "SELECT t.name, t.type, t.wr FROM pragma_table_list t
         WHERE t.schema = 'main' AND t.type IN ('table', 'virtual')
           AND t.name NOT IN ('sqlite_schema', 'sqlite_temp_schema')
         ORDER BY t.name",
    )?;
    let tables: Vec<(String, String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, kind, without_rowid) in tables {
        let q = quote_ident(&name);
        let sql = if without_rowid {
            let pk: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info({}) WHERE pk > 0 ORDER BY pk",
                    sql_string(&name)
                ))?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?;
            let order: Vec<String> = pk.iter().map(|c| quote_ident(c)).collect();
            format!("SELECT * FROM main.{q} ORDER BY {}", order.join(", "))
        } else {
            format!("SELECT rowid, * FROM main.{q} ORDER BY rowid")
        };
        let mut rows_stmt = match conn.prepare(&sql) {
            Ok(s) => s,
            // A virtual table whose module is missing cannot be read; hash its name only.
            Err(_) if kind == "virtual" => {
                h.update(b"T");
                h.update(name.as_bytes());
                continue;
            }
            Err(e) => return Err(e),
        };
        h.update(b"T");
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        let ncol = rows_stmt.column_count();
        let mut rows = rows_stmt.query([])?;
        while let Some(row) = rows.next()? {
            h.update(b"R");
            for i in 0..ncol {
                hash_value(&mut h, row.get_ref(i)?);
            }
        }
    }
    let mut schema = conn
        .prepare("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")?;
    let mut rows = schema.query([])?;
    while let Some(row) = rows.next()? {
        h.update(b"S");
        for i in 0..4 {
            hash_value(&mut h, row.get_ref(i)?);
        }
    }
    Ok(hex(&h.finalize()))
}

/// Feeds one SQLite value into `h`, type-tagged and length-prefixed (so that no two different
/// sequences of values feed the same bytes): the content hash above and merge's row identities.
pub(crate) fn hash_value(h: &mut Sha256, v: rusqlite::types::ValueRef<'_>) {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => h.update(b"n"),
        ValueRef::Integer(i) => {
            h.update(b"i");
            h.update(i.to_be_bytes());
        }
        ValueRef::Real(f) => {
            h.update(b"f");
            h.update(f.to_bits().to_be_bytes());
        }
        ValueRef::Text(t) => {
            h.update(b"t");
            h.update((t.len() as u64).to_be_bytes());
            h.update(t);
        }
        ValueRef::Blob(b) => {
            h.update(b"b");
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
    }
}

/// An SQL string literal: single quotes, with any inside doubled.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn header_check_names_what_the_file_is() {
        let d = tempfile::tempdir().unwrap();
        let msg = |p: &Path| check_header(p).unwrap_err().to_string();
        assert!(msg(&d.path().join("missing.db")).contains("no such file"));
        assert!(msg(&write(d.path(), "e.db", b"")).contains("empty"));
        assert!(msg(&write(d.path(), "s.db", b"0123456789")).contains("10 bytes"));
        let mut wal = vec![0x37, 0x7f, 0x06, 0x82];
        wal.resize(64, 0);
        assert!(msg(&write(d.path(), "w.db", &wal)).contains("WAL file"));
        assert!(msg(&write(d.path(), "b.db", &[b'x'; 200])).contains("SQLite header"));
        assert!(msg(d.path()).contains("directory"));
    }

    #[test]
    fn module_name_is_parsed() {
        assert_eq!(
            virtual_module("CREATE VIRTUAL TABLE x USING fts5(a)").as_deref(),
            Some("fts5")
        );
        assert_eq!(
            virtual_module("create virtual table \"a b\" using  FTS4 (c)").as_deref(),
            Some("fts4")
        );
        assert_eq!(virtual_module("CREATE TABLE x(a)"), None);
    }

    #[test]
    fn content_hash_ignores_layout_but_not_values() {
        let d = tempfile::tempdir().unwrap();
        let a = Connection::open(d.path().join("a.db")).unwrap();
        a.execute_batch("CREATE TABLE t(x, y); INSERT INTO t VALUES(1, 'a'), (2, x'00');")
            .unwrap();
        let h1 = content_hash(&a).unwrap();
        a.execute_batch("VACUUM").unwrap();
        assert_eq!(h1, content_hash(&a).unwrap());
        a.execute_batch("UPDATE t SET x = 1.0 WHERE x = 1").unwrap();
        assert_ne!(h1, content_hash(&a).unwrap(), "1 and 1.0 differ in type");
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(sql_string("it's"), "'it''s'");
    }
}
