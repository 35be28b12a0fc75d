//! Loading a dump into a fresh database: every dump is untrusted SQL.
//!
//! The text is split into statements (quotes, comments and `CREATE TRIGGER ... END` respected;
//! SQLite's own `sqlite3_complete` decides where a trigger ends) and each statement is checked
//! against what a dump needs before SQLite sees it:
//!
//! - `CREATE TABLE | INDEX | VIEW | TRIGGER | VIRTUAL TABLE` (never TEMP), `INSERT`/`REPLACE`
//!   into tables of the main schema, `DELETE FROM sqlite_sequence`, `ANALYZE sqlite_schema`;
//! - the header PRAGMAs `page_size`, `encoding`, `auto_vacuum` (before any table),
//!   `user_version`, `application_id`; `foreign_keys` and `journal_mode` are noted, not run
//!   (loading always runs with foreign keys off, and the journal mode is set once loaded);
//! - `BEGIN`/`COMMIT`/`END`/`SAVEPOINT`/`RELEASE` are skipped: the whole load is one
//!   transaction of litevault's own; `ROLLBACK` means the dump's writer failed, so it is refused.
//!
//! Anything else (ATTACH, SELECT, UPDATE, DROP, other PRAGMAs, dot-commands) is refused with an
//! error naming the line. Behind that list, SQLite enforces: defensive mode (no writes to
//! `sqlite_schema` or shadow tables), `trusted_schema=OFF`, no ATTACH (limit 0 and the
//! authorizer), no extensions, no TEMP objects, no recursive queries, a cap on every value's
//! size tied to its statement's length (no `zeroblob(1e9)` or nested `replace()` bombs), and
//! a guard that stops a dump whose database grows far faster than its text.
//!
//! Foreign dumps from the sqlite3 CLI write virtual tables through `PRAGMA writable_schema`
//! and their shadow tables' raw rows. Those are rebuilt the safe way: the `CREATE VIRTUAL
//! TABLE` is run as such (module allowlist), rows of an FTS `_content` shadow table are
//! re-inserted through the full-text table, FTS5 settings re-applied, external-content tables
//! rebuilt, other shadow rows skipped; R*Tree shadow rows cannot be re-read safely and are
//! refused with a message.

use crate::error::{Error, Result};
use crate::format::dump::format::{Content, Header, Trailer, MAX_STATEMENT, TRAILER_PREFIX};
use crate::model::hex;
use crate::progress::Progress;
use crate::sqlite::db::{self, quote_ident, Check};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod lexer;
mod sandbox;
mod splitter;

use lexer::*;
use sandbox::*;
pub use splitter::split_statements;
use splitter::*;

/// What loading a dump did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Which kind of dump it was.
    pub content: Content,
    /// The header of a litevault dump.
    pub header: Option<Header>,
    /// The trailer of a litevault dump, when present.
    pub trailer: Option<Trailer>,
    /// Checks of the dump text itself: structure and checksums.
    pub checks: Vec<Check>,
    /// Statements executed (skipped transaction statements not counted).
    pub statements: u64,
    /// Rows inserted by the dump's INSERT statements.
    pub inserts: u64,
    /// Things worth knowing that did not stop the load.
    pub warnings: Vec<String>,
    /// The journal mode a foreign dump asked for (`PRAGMA journal_mode`), lowercased.
    pub journal_mode: Option<String>,
}

/// What happens to rows a foreign dump writes into a shadow table.
#[derive(Debug, Clone)]
enum ShadowRows {
    /// Re-insert them through the full-text table with this statement prefix (ends in `VALUES`).
    Content(String),
    /// FTS5 settings: re-apply every key but `version`.
    Config(String),
    /// Index data the module rebuilds by itself.
    Skip,
}

struct Loader<'a> {
    conn: Connection,
    /// VM steps (in progress-handler periods) of the statement running.
    ops: Arc<AtomicU64>,
    /// Bytes of dump text read so far (the growth cap follows it).
    text_read: Arc<AtomicU64>,
    /// `text_read` when `max_page_count` was last raised.
    capped_at: u64,
    scratch: Connection,
    path: &'a Path,
    in_txn: bool,
    created: bool,
    writable_schema: bool,
    shadows: HashMap<String, ShadowRows>,
    rebuild: Vec<String>,
    journal_mode: Option<String>,
    statements: u64,
    inserts: u64,
    warnings: Vec<String>,
    /// SQLite's heap cap while loading (declared last: dropped after the connections).
    heap: HeapLimit,
}

/// Loads the dump read from `reader` (decompressed) into the new, empty database file
/// `target`. `content` says whether it is a litevault dump (its header is read and its
/// checksums checked) or a foreign one.
pub fn load(
    path: &Path,
    content: Content,
    reader: &mut dyn BufRead,
    target: &Path,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let header = match content {
        Content::LitevaultDump => Some(super::format::read_header(path, reader)?),
        Content::ForeignDump => None,
        Content::Archive => return Err(Error::bad_archive(path, "a tar archive, not an SQL dump")),
    };
    // SQLite's heap is capped while loading (and the cap raised with each statement's length).
    let heap = HeapLimit::set(HEAP_BASE);
    let text_read = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let conn = open_target(target, text_read.clone(), ops.clone())?;
    let mut scratch = Connection::open_in_memory().map_err(|e| Error::sqlite("open", target, e))?;
    scratch
        .authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
            AuthAction::Select => Authorization::Allow,
            AuthAction::Function { function_name } if allowed_value_function(function_name) => {
                Authorization::Allow
            }
            _ => Authorization::Deny,
        }))
        .map_err(|e| Error::sqlite("configure", target, e))?;
    let _ = scratch.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        MIN_VALUE_LIMIT as i32,
    );
    scratch
        .progress_handler(PROGRESS_PERIOD as i32, Some(|| true))
        .map_err(|e| Error::sqlite("configure", target, e))?;
    let mut ld = Loader {
        heap,
        conn,
        ops,
        text_read: text_read.clone(),
        capped_at: u64::MAX,
        scratch,
        path,
        in_txn: false,
        created: false,
        writable_schema: false,
        shadows: HashMap::new(),
        rebuild: Vec::new(),
        journal_mode: None,
        statements: 0,
        inserts: 0,
        warnings: Vec::new(),
    };

    let mut all = Sha256::new();
    let mut data_bytes = 0u64;
    if let Some(h) = &header {
        all.update(&h.hashed);
    }
    let mut line_no: u64 = if header.is_some() { 3 } else { 0 };
    let mut trailer: Option<(Trailer, u64)> = None;
    let mut bad_trailer = None;
    let mut split = Splitter::default();
    progress.begin("load", None);
    loop {
        // Each line is read straight into the splitter's buffer: a statement's text is held
        // once, however long it is.
        let cap = (MAX_STATEMENT + 1).saturating_sub(split.pending()) as u64;
        let n = split.read_line(&mut *reader, cap).map_err(|e| {
            crate::location::download_error(path, &e)
                .unwrap_or_else(|| Error::bad_archive(path, format!("cannot read the dump: {e}")))
        })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        text_read.fetch_add(n as u64, Ordering::Relaxed);
        crate::progress::step(progress, n as u64)?;
        let line = split.line();
        let too_long = |at: u64| {
            refuse(
                path,
                at,
                &format!("statement longer than {} MiB", MAX_STATEMENT >> 20),
            )
        };
        if n as u64 == cap && !line.ends_with(b"\n") {
            return Err(too_long(split.start_line.unwrap_or(line_no)));
        }
        if trailer.is_some() || bad_trailer.is_some() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                split.discard_line();
                continue;
            }
            return Err(refuse(path, line_no, "text after the dump's end line"));
        }
        if header.is_some() && split.idle() && line.starts_with(TRAILER_PREFIX.as_bytes()) {
            let text = String::from_utf8_lossy(&line[TRAILER_PREFIX.len()..]).into_owned();
            match super::format::parse_trailer(&text) {
                Some(t) => trailer = Some((t, line_no)),
                None => bad_trailer = Some(line_no),
            }
            split.discard_line();
            continue;
        }
        if header.is_some() {
            all.update(line);
            data_bytes += n as u64;
        }
        if split.idle() && line.first() == Some(&b'.') {
            let cmd = String::from_utf8_lossy(line)
                .trim()
                .chars()
                .take(40)
                .collect::<String>();
            return Err(refuse(
                path,
                line_no,
                &format!("{cmd:?} is a sqlite3 shell command, not SQL; refused"),
            ));
        }
        if line.contains(&0) {
            return Err(refuse(path, line_no, "a NUL byte in the SQL text"));
        }
        split.split(line_no, &mut |stmt, at| ld.statement(stmt, at))?;
        // An open statement may not outgrow the cap, whatever its lines (a long line, then
        // endless empty ones, would otherwise add a byte a line).
        if split.pending() > MAX_STATEMENT {
            return Err(too_long(split.start_line.unwrap_or(line_no)));
        }
    }
    progress.end();
    if let Some(at) = split.start_line {
        return Err(refuse(
            path,
            at,
            "the dump ends inside this statement (the file is truncated)",
        ));
    }
    ld.finish()?;

    let mut checks = Vec::new();
    let mut trailer_out = None;
    if header.is_some() {
        match (trailer, bad_trailer) {
            (Some((t, _)), _) => {
                let sum = hex(&all.finalize());
                checks.push(Check::pass("dump structure", "header, manifest and end line"));
                if sum == t.sha256 && data_bytes == t.data_bytes {
                    checks.push(Check::pass("checksum dump", format!("sha256 {sum}")));
                } else {
                    checks.push(Check::fail(
                        "checksum dump",
                        format!(
                            "the end line records sha256 {} ({} bytes), the text has {sum} ({data_bytes} bytes)",
                            t.sha256, t.data_bytes
                        ),
                    ));
                }
                trailer_out = Some(t);
            }
            (None, Some(at)) => {
                checks.push(Check::fail(
                    "dump structure",
                    format!("line {at}: unreadable end line"),
                ));
            }
            (None, None) => checks.push(Check::fail(
                "dump structure",
                "no end line: the dump is truncated",
            )),
        }
    } else {
        checks.push(Check::pass(
            "dump structure",
            format!(
                "foreign SQL dump, {} statements (no checksums to check)",
                ld.statements
            ),
        ));
    }
    Ok(LoadReport {
        content,
        header,
        trailer: trailer_out,
        checks,
        statements: ld.statements,
        inserts: ld.inserts,
        warnings: std::mem::take(&mut ld.warnings),
        journal_mode: ld.journal_mode.take(),
    })
}

fn refuse(path: &Path, line: u64, what: &str) -> Error {
    Error::bad_archive(path, format!("line {line}: {what}"))
}

impl Loader<'_> {
    fn err(&self, line: u64, e: rusqlite::Error) -> Error {
        let what = match &e {
            rusqlite::Error::SqliteFailure(f, Some(m))
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                format!(
                    "{m}: the statement ran too long or the database grew far faster than the dump's \
                     text (an expansion bomb?); refused"
                )
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OutOfMemory => format!(
                "out of memory: SQLite may use {} MiB plus 8x the statement's length while loading a \
                 dump (an expansion bomb is stopped there); refused",
                HEAP_BASE >> 20
            ),
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => format!(
                "database or disk is full: the loaded database may hold {} MiB plus {}x the dump's text read \
                 so far (an expansion bomb is stopped there), or the disk is full",
                GROWTH_ALLOWANCE >> 20,
                GROWTH_FACTOR
            ),
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("not authorized") => {
                format!("{m}: not allowed in a dump")
            }
            rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
            _ => e.to_string(),
        };
        // SQLite's messages may quote the statement: keep errors readable.
        let what: String = if what.chars().count() > 300 {
            what.chars().take(300).collect::<String>() + "..."
        } else {
            what
        };
        refuse(self.path, line, &what)
    }

    fn begin(&mut self, line: u64) -> Result<()> {
        if !self.in_txn {
            self.conn.execute_batch("BEGIN").map_err(|e| self.err(line, e))?;
            self.in_txn = true;
        }
        Ok(())
    }

    fn exec(&mut self, sql: &str, line: u64) -> Result<()> {
        let limit = MIN_VALUE_LIMIT
            .max(sql.len().saturating_mul(4))
            .min(i32::MAX as usize) as i32;
        let _ = self
            .conn
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, limit);
        self.heap
            .set_to(HEAP_BASE.saturating_add(sql.len().saturating_mul(8)));
        self.ops.store(0, Ordering::Relaxed);
        // The database may hold GROWTH_ALLOWANCE + GROWTH_FACTOR x the text read: a hard cap
        // (SQLITE_FULL), raised as the text comes in.
        let read = self.text_read.load(Ordering::Relaxed);
        if self.created && (self.capped_at == u64::MAX || read >= self.capped_at + (4 << 20)) {
            let page: i64 = self
                .conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap_or(4096)
                .max(512);
            let pages = (GROWTH_ALLOWANCE + GROWTH_FACTOR * read) / page as u64;
            let _ = self
                .conn
                .query_row(&format!("PRAGMA max_page_count={pages}"), [], |r| {
                    r.get::<_, i64>(0)
                });
            self.capped_at = read;
        }
        let run = || -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare(sql)?;
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            Ok(())
        };
        run().map_err(|e| self.err(line, e))?;
        self.statements += 1;
        Ok(())
    }

    fn statement(&mut self, raw: &[u8], line: u64) -> Result<()> {
        let sql = std::str::from_utf8(raw)
            .map_err(|_| refuse(self.path, line, "the statement is not UTF-8 text"))?;
        let sql = sql.trim_end().trim_end_matches(';');
        let w = words(sql, 4);
        let first = w.first().map(String::as_str).unwrap_or("");
        match first {
            "CREATE" => {
                let kind = w.get(1).map(String::as_str).unwrap_or("");
                if !matches!(
                    kind,
                    "TABLE" | "INDEX" | "UNIQUE" | "VIEW" | "TRIGGER" | "VIRTUAL"
                ) {
                    return Err(refuse(
                        self.path,
                        line,
                        &format!(
                            "CREATE {kind} is not allowed in a dump (only tables, indexes, views, triggers)"
                        ),
                    ));
                }
                match created_object(sql) {
                    Some((schema, _, rest)) => {
                        if schema.is_some_and(|s| !s.eq_ignore_ascii_case("main")) {
                            return Err(refuse(
                                self.path,
                                line,
                                "objects may only be created in the main schema (no temp. or other prefix)",
                            ));
                        }
                        if kind == "TABLE" && words(rest, 1).first().map(String::as_str) == Some("AS") {
                            return Err(refuse(
                                self.path,
                                line,
                                "CREATE TABLE ... AS SELECT is not allowed in a dump",
                            ));
                        }
                    }
                    None => return Err(refuse(self.path, line, "unreadable CREATE statement")),
                }
                if kind == "TABLE" && self.shadows.contains_key(&created_name(sql).unwrap_or_default()) {
                    // A foreign dump re-creating the shadow table of a virtual table rebuilt above.
                    return Ok(());
                }
                self.begin(line)?;
                self.created = true;
                self.exec(sql, line)
            }
            "INSERT" | "REPLACE" => self.insert(sql, line),
            "DELETE" => {
                let rest: Vec<String> = words(sql, 4);
                if rest.len() == 3 && rest[1] == "FROM" && rest[2] == "SQLITE_SEQUENCE" && !sql.contains('.')
                {
                    self.begin(line)?;
                    self.exec(sql, line)
                } else {
                    Err(refuse(
                        self.path,
                        line,
                        "DELETE is not allowed in a dump (only DELETE FROM sqlite_sequence)",
                    ))
                }
            }
            "ANALYZE" => {
                let target = w.get(1).map(String::as_str).unwrap_or("");
                if matches!(target, "SQLITE_SCHEMA" | "SQLITE_MASTER") && w.len() == 2 {
                    self.begin(line)?;
                    self.exec(sql, line)
                } else {
                    Err(refuse(
                        self.path,
                        line,
                        "only ANALYZE sqlite_schema is allowed in a dump",
                    ))
                }
            }
            "PRAGMA" => self.pragma(sql, line),
            "BEGIN" | "COMMIT" | "END" | "SAVEPOINT" | "RELEASE" => Ok(()),
            "ROLLBACK" => Err(refuse(
                self.path,
                line,
                "the dump rolls back its own transaction (its writer hit errors); refusing a partial dump",
            )),
            _ => {
                let shown: String = sql.chars().take(60).collect();
                Err(refuse(
                    self.path,
                    line,
                    &format!("{shown:?}: this kind of statement is not allowed in a dump"),
                ))
            }
        }
    }

    fn pragma(&mut self, sql: &str, line: u64) -> Result<()> {
        let Some((schema, name, value)) = pragma(sql) else {
            return Err(refuse(self.path, line, "unreadable PRAGMA"));
        };
        if schema.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("main")) {
            return Err(refuse(self.path, line, "PRAGMA on another schema than main"));
        }
        let is_int = |v: &Option<String>| {
            v.as_deref().is_some_and(|v| {
                v.trim_start_matches(['-', '+'])
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    && !v.is_empty()
            })
        };
        match name.as_str() {
            "page_size" | "auto_vacuum" | "encoding" => {
                if self.in_txn || self.created {
                    self.warnings.push(format!(
                        "line {line}: PRAGMA {name} after the first table has no effect; ignored"
                    ));
                    return Ok(());
                }
                let ok = match name.as_str() {
                    "encoding" => matches!(
                        value.as_deref().map(str::to_ascii_uppercase).as_deref(),
                        Some("UTF-8" | "UTF8" | "UTF-16" | "UTF16" | "UTF-16LE" | "UTF-16BE")
                    ),
                    "auto_vacuum" => matches!(
                        value.as_deref().map(str::to_ascii_lowercase).as_deref(),
                        Some("0" | "1" | "2" | "none" | "full" | "incremental")
                    ),
                    _ => is_int(&value),
                };
                if !ok {
                    return Err(refuse(
                        self.path,
                        line,
                        &format!("PRAGMA {name} with an invalid value"),
                    ));
                }
                self.exec(sql, line)
            }
            "user_version" | "application_id" => {
                if !is_int(&value) {
                    return Err(refuse(
                        self.path,
                        line,
                        &format!("PRAGMA {name} needs an integer"),
                    ));
                }
                self.exec(sql, line)
            }
            "foreign_keys" => Ok(()),
            "journal_mode" => {
                self.journal_mode = value.map(|v| v.to_ascii_lowercase());
                Ok(())
            }
            "writable_schema" => {
                self.writable_schema = matches!(
                    value.as_deref().map(str::to_ascii_lowercase).as_deref(),
                    Some("on" | "1" | "true" | "yes")
                );
                Ok(())
            }
            _ => Err(refuse(
                self.path,
                line,
                &format!("PRAGMA {name} is not allowed in a dump"),
            )),
        }
    }

    fn insert(&mut self, sql: &str, line: u64) -> Result<()> {
        let Some((schema, name, after_name)) = insert_target(sql) else {
            return Err(refuse(self.path, line, "unreadable INSERT"));
        };
        if schema.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("main")) {
            return Err(refuse(
                self.path,
                line,
                &format!("INSERT into schema {schema:?}: only main is allowed"),
            ));
        }
        // A dump inserts literal rows: `[(columns)] VALUES (...)` or `DEFAULT VALUES`, with no
        // query anywhere (a SELECT could join tables with themselves for hours or build
        // gigabytes in temp files).
        let mut body = skip_space(after_name);
        if body.starts_with('(') {
            body = match skip_parens(body) {
                Some(rest) => skip_space(rest),
                None => return Err(refuse(self.path, line, "unreadable column list")),
            };
        }
        let first = words(body, 2);
        let plain = match first.first().map(String::as_str) {
            Some("VALUES") => true,
            Some("DEFAULT") => first.get(1).map(String::as_str) == Some("VALUES"),
            _ => false,
        };
        if !plain || has_keyword(body, "SELECT") {
            return Err(refuse(
                self.path,
                line,
                "only INSERT ... VALUES (literal rows) is allowed in a dump, not INSERT ... SELECT",
            ));
        }
        let lname = name.to_ascii_lowercase();
        self.begin(line)?;
        if lname == "sqlite_schema" || lname == "sqlite_master" {
            if !self.writable_schema {
                return Err(refuse(self.path, line, "writes to sqlite_schema are not allowed"));
            }
            return self.foreign_vtab(sql, line);
        }
        if lname.starts_with("sqlite_")
            && !matches!(
                lname.as_str(),
                "sqlite_sequence" | "sqlite_stat1" | "sqlite_stat4"
            )
        {
            return Err(refuse(
                self.path,
                line,
                &format!("INSERT into {name}: not allowed in a dump"),
            ));
        }
        match self.shadows.get(&lname).cloned() {
            None => {
                self.exec(sql, line)?;
                self.inserts += 1;
                Ok(())
            }
            Some(ShadowRows::Skip) => Ok(()),
            Some(ShadowRows::Content(prefix)) => {
                let at =
                    values_offset(sql).ok_or_else(|| refuse(self.path, line, "INSERT without VALUES"))?;
                let rewritten = format!("{prefix}{}", &sql[at + "VALUES".len()..]);
                self.exec(&rewritten, line)?;
                self.inserts += 1;
                Ok(())
            }
            Some(ShadowRows::Config(table)) => {
                for row in self.eval_values(sql, line)? {
                    let [k, v] = &row[..] else {
                        return Err(refuse(self.path, line, "FTS5 setting rows have two columns"));
                    };
                    if matches!(k, rusqlite::types::Value::Text(k) if k == "version") {
                        continue;
                    }
                    let q = quote_ident(&table);
                    let sql = format!("INSERT INTO {q}({q}, rank) VALUES(?1, ?2)");
                    self.conn
                        .execute(&sql, rusqlite::params![k, v])
                        .map_err(|e| self.err(line, e))?;
                }
                Ok(())
            }
        }
    }

    /// Evaluates an INSERT's VALUES list with no database behind it.
    fn eval_values(&self, sql: &str, line: u64) -> Result<Vec<Vec<rusqlite::types::Value>>> {
        let at = values_offset(sql).ok_or_else(|| refuse(self.path, line, "INSERT without VALUES"))?;
        let select = format!("SELECT * FROM ({})", &sql[at..]);
        let run = || -> rusqlite::Result<Vec<Vec<rusqlite::types::Value>>> {
            let mut stmt = self.scratch.prepare(&select)?;
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<_>>>()
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        };
        run().map_err(|e| self.err(line, e))
    }

    /// A foreign dump's `INSERT INTO sqlite_schema(...) VALUES('table', name, name, 0, 'CREATE
    /// VIRTUAL TABLE ...')`: create the virtual table properly and plan its shadow rows.
    fn foreign_vtab(&mut self, sql: &str, line: u64) -> Result<()> {
        let rows = self.eval_values(sql, line)?;
        let cols = insert_target(sql)
            .map(|(_, _, rest)| rest.split(['V', 'v']).next().unwrap_or("").to_string())
            .unwrap_or_default();
        let cols: String = cols
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if cols != "(type,name,tbl_name,rootpage,sql)" {
            return Err(refuse(
                self.path,
                line,
                "a write to sqlite_schema in an unknown form",
            ));
        }
        use rusqlite::types::Value::{Integer, Text};
        for row in rows {
            let (kind, name, create) = match &row[..] {
                [Text(k), Text(n), Text(_), Integer(_), Text(s)] => (k.as_str(), n.clone(), s.clone()),
                _ => {
                    return Err(refuse(
                        self.path,
                        line,
                        "a write to sqlite_schema in an unknown form",
                    ))
                }
            };
            let module = db::virtual_module(&create);
            if kind != "table"
                || !create
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("CREATE VIRTUAL TABLE")
                || module.is_none()
            {
                return Err(refuse(
                    self.path,
                    line,
                    "writes to sqlite_schema are only accepted for virtual tables (as the sqlite3 shell dumps them)",
                ));
            }
            let module = module.unwrap_or_default();
            if !matches!(module.as_str(), "fts5" | "fts4" | "fts3") {
                return Err(refuse(
                    self.path,
                    line,
                    &format!(
                        "the {module} table {name:?} is dumped as raw shadow-table rows (sqlite3 .dump with \
                         writable_schema), which cannot be rebuilt safely; dump it with `litevault backup \
                         --format sql` instead"
                    ),
                ));
            }
            self.created = true;
            self.exec(&create, line)?;
            let lname = name.to_ascii_lowercase();
            let shadow_names: Vec<String> = self
                .conn
                .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")
                .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
                .map_err(|e| self.err(line, e))?;
            let content = format!("{lname}_content");
            let mut has_content = false;
            let suffixes: &[&str] = if module == "fts5" {
                &["data", "idx", "content", "docsize", "config"]
            } else {
                &["content", "segments", "segdir", "docsize", "stat"]
            };
            let own: Vec<String> = suffixes.iter().map(|x| format!("{lname}_{x}")).collect();
            for s in shadow_names {
                let ls = s.to_ascii_lowercase();
                // This table's own shadow tables only (another table may be named "t_b").
                if !own.contains(&ls) {
                    continue;
                }
                let rows = if ls == content {
                    has_content = true;
                    let cols: Vec<String> = self
                        .conn
                        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")
                        .and_then(|mut s| s.query_map([&name], |r| r.get::<_, String>(0))?.collect())
                        .map_err(|e| self.err(line, e))?;
                    let mut list = vec!["rowid".to_string()];
                    list.extend(cols.iter().map(|c| quote_ident(c)));
                    ShadowRows::Content(format!(
                        "INSERT INTO {}({}) VALUES",
                        quote_ident(&name),
                        list.join(",")
                    ))
                } else if ls == format!("{lname}_config") && module == "fts5" {
                    ShadowRows::Config(name.clone())
                } else {
                    ShadowRows::Skip
                };
                self.shadows.insert(ls, rows);
            }
            if !has_content {
                let contentless = create
                    .to_ascii_lowercase()
                    .replace(' ', "")
                    .contains("content=''")
                    || create
                        .to_ascii_lowercase()
                        .replace(' ', "")
                        .contains("content=\"\"");
                if contentless {
                    return Err(refuse(
                        self.path,
                        line,
                        &format!("the full-text table {name:?} is contentless: its text is not in the dump, so it cannot be rebuilt"),
                    ));
                }
                self.rebuild.push(name.clone());
            }
            self.warnings.push(format!(
                "line {line}: the {module} table {name:?} was dumped as raw index rows; it was rebuilt from its text instead"
            ));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.begin(0)?;
        for name in std::mem::take(&mut self.rebuild) {
            let q = quote_ident(&name);
            self.exec(&format!("INSERT INTO {q}({q}) VALUES('rebuild')"), 0)?;
        }
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(0, e))?;
        self.in_txn = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<String> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for line in text.split_inclusive('\n') {
            s.push(line.as_bytes(), 1, &mut |st, _| {
                out.push(String::from_utf8(st.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn split_statements_gives_each_statement_s_range_and_line() {
        let text = b"-- c;\nCREATE TABLE t(a); INSERT INTO t\nVALUES(';');\nCREATE TRIGGER r AFTER INSERT ON t BEGIN\n SELECT 1; END;\nSELECT";
        for track_only in [false, true] {
            let (stmts, open) = split_statements(text, track_only);
            let got: Vec<_> = stmts.iter().map(|(r, l)| (&text[r.clone()], *l)).collect();
            assert_eq!(
                got,
                vec![
                    (&b"CREATE TABLE t(a);"[..], 2),
                    (&b"INSERT INTO t\nVALUES(';');"[..], 2),
                    (
                        &b"CREATE TRIGGER r AFTER INSERT ON t BEGIN\n SELECT 1; END;"[..],
                        4
                    ),
                ]
            );
            assert!(open, "SELECT is left open");
        }
    }

    #[test]
    fn statements_are_split_where_sqlite_would() {
        let got = split(
            "PRAGMA a=1;BEGIN;\n-- c;\nINSERT INTO t VALUES('x;\ny'); /* ; */\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  DELETE FROM u; INSERT INTO u VALUES(1);\nEND;\nCOMMIT;",
        );
        assert_eq!(
            got,
            vec![
                "PRAGMA a=1;",
                "BEGIN;",
                "INSERT INTO t VALUES('x;\ny');",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  DELETE FROM u; INSERT INTO u VALUES(1);\nEND;",
                "COMMIT;"
            ]
        );
    }

    #[test]
    fn long_triggers_end_where_sqlite_says_by_their_tokens() {
        // A body past SHORT_CHECKS, so that only the token tracking decides, with every form
        // of END that does not end a trigger, and comments between the last `;`, END and `;`.
        let filler = "  INSERT INTO u VALUES('x; END;'); -- END;\n".repeat(40_000);
        assert!(filler.len() > SHORT_CHECKS);
        let tricky = "  SELECT CASE WHEN 1 THEN 2 END;\n  SELECT [END], `END`, \"END\", 'END' FROM v;\n  SELECT 1 AS end_;\n  SELECT endx;\n";
        let trigger =
            format!("CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n{filler}{tricky}/* c */ end -- x\n /* y */;");
        let text = format!("CREATE TABLE t(a);\n{trigger}\nINSERT INTO t VALUES(1);\n");
        let got = split(&text);
        assert_eq!(
            got.len(),
            3,
            "{:?}",
            got.iter().map(|g| g.len()).collect::<Vec<_>>()
        );
        assert_eq!(got[1], trigger);
        assert!(is_complete(got[1].as_bytes()), "SQLite agrees");
        assert_eq!(got[2], "INSERT INTO t VALUES(1);");
    }

    #[test]
    fn statement_parts_are_read() {
        assert_eq!(
            insert_target("INSERT OR IGNORE INTO main.\"a\"\"b\"(x) VALUES(1)").map(|(s, n, _)| (s, n)),
            Some((Some("main".into()), "a\"b".into()))
        );
        assert_eq!(
            insert_target("REPLACE INTO [t] VALUES(1)").map(|(s, n, _)| (s, n)),
            Some((None, "t".into()))
        );
        assert_eq!(
            pragma("PRAGMA main.user_version = 5"),
            Some((Some("main".into()), "user_version".into(), Some("5".into())))
        );
        assert_eq!(
            pragma("PRAGMA encoding='UTF-8'").map(|p| p.2),
            Some(Some("UTF-8".into()))
        );
        assert_eq!(values_offset("INSERT INTO \"values\"(v) VALUES(1)"), Some(24));
    }
}
