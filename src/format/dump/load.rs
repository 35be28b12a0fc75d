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

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use super::format::{Content, Header, Trailer, MAX_STATEMENT, TRAILER_PREFIX};
use crate::error::{Error, Result};
use crate::model::hex;
use crate::progress::Progress;
use crate::sqlite::db::{self, quote_ident, Check};

/// Every value may be this large, or four times its statement's length if more.
const MIN_VALUE_LIMIT: usize = 64 << 20;
/// SQLite's whole heap may hold this much while a dump loads (page caches, full-text indexes'
/// pending data, a statement's values), plus eight times the statement being run: a statement
/// of a few bytes cannot make SQLite allocate gigabytes (e.g. `randomblob()` under the value
/// limit in each of 2,000 columns), while a 512 MiB statement keeps room for SQLite's copies.
const HEAP_BASE: usize = 512 << 20;

/// SQLite's process-wide hard heap limit while it lives (the previous hard and soft limits
/// come back when it is dropped). An allocation over it fails, and the statement with it ("out
/// of memory"). Process-wide: other SQLite work in the process meanwhile shares the limit, and
/// two loads in one process run one after the other.
struct HeapLimit {
    previous_hard: i64,
    previous_soft: i64,
    /// Loads in one process take turns: each would otherwise save and restore the other's cap.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl HeapLimit {
    fn set(bytes: usize) -> HeapLimit {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: plain calls into SQLite; a negative argument only queries.
        let (previous_hard, previous_soft) = unsafe {
            (
                rusqlite::ffi::sqlite3_hard_heap_limit64(-1),
                rusqlite::ffi::sqlite3_soft_heap_limit64(-1),
            )
        };
        let limit = HeapLimit {
            previous_hard,
            previous_soft,
            _turn: turn,
        };
        limit.set_to(bytes);
        limit
    }

    /// Sets the limit to `bytes` (never above a limit the process had set before).
    fn set_to(&self, bytes: usize) {
        let mut n = i64::try_from(bytes).unwrap_or(i64::MAX);
        if self.previous_hard > 0 {
            n = n.min(self.previous_hard);
        }
        // SAFETY: plain call into SQLite.
        unsafe { rusqlite::ffi::sqlite3_hard_heap_limit64(n) };
    }
}

impl Drop for HeapLimit {
    fn drop(&mut self) {
        // Setting the hard limit moves the soft one: both are put back. 0 means no limit.
        // SAFETY: plain calls into SQLite.
        unsafe {
            rusqlite::ffi::sqlite3_hard_heap_limit64(self.previous_hard.max(0));
            rusqlite::ffi::sqlite3_soft_heap_limit64(self.previous_soft.max(0));
        }
    }
}

/// The database may grow to this plus `GROWTH_FACTOR` times the text read so far.
const GROWTH_ALLOWANCE: u64 = 256 << 20;
const GROWTH_FACTOR: u64 = 64;

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
        progress.advance(n as u64);
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

/// Functions a value in a dump may be spelled with.
fn allowed_value_function(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "char" | "replace" | "unhex" | "unistr" | "hex" | "cast"
    )
}

/// Functions never allowed while loading, whatever calls them.
fn denied_function(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "load_extension" | "fts3_tokenizer" | "readfile" | "writefile" | "edit"
    )
}

fn open_target(target: &Path, text_read: Arc<AtomicU64>, ops: Arc<AtomicU64>) -> Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn =
        Connection::open_with_flags(target, flags).map_err(|e| Error::sqlite("create", target, e))?;
    db::harden(&conn, target)?;
    // A private temp file: no journal needed (a failed load throws the file away).
    conn.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-32768; PRAGMA foreign_keys=OFF;",
    )
    .map_err(|e| Error::sqlite("configure", target, e))?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        // Nothing but the main database may be written or get new objects: a `temp.` prefix
        // would put tables, triggers and data outside the target file.
        AuthAction::CreateIndex { .. }
        | AuthAction::CreateTable { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
            if ctx.database_name.is_some_and(|d| d != "main") =>
        {
            Authorization::Deny
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Authorization::Deny,
        AuthAction::DropIndex { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropVtable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropTempView { .. } => Authorization::Deny,
        AuthAction::AlterTable { .. } | AuthAction::Recursive => Authorization::Deny,
        AuthAction::Function { function_name } if denied_function(function_name) => Authorization::Deny,
        AuthAction::CreateVtable { module_name, .. }
            if !matches!(
                module_name.to_ascii_lowercase().as_str(),
                "fts5" | "fts4" | "fts3" | "rtree" | "rtree_i32"
            ) =>
        {
            Authorization::Deny
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } if !matches!(
            pragma_name.to_ascii_lowercase().as_str(),
            "page_size" | "encoding" | "auto_vacuum" | "user_version" | "application_id"
                // read-only introspection (the loader's own queries)
                | "table_info" | "table_xinfo" | "table_list" | "index_list" | "index_info" | "foreign_key_list"
                // the loader's own growth cap
                | "max_page_count"
        ) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }))
    .map_err(|e| Error::sqlite("configure", target, e))?;
    // Stop a dump whose database grows far faster than its text (an expansion bomb such as
    // nested replace() calls), long before the disk fills.
    // ... and any one statement that runs far longer than a dump's statements do (a trigger
    // body joining tables with themselves, say): VM steps counted per statement against a budget
    // of 10^9 plus 10^4 per byte of text read.
    let path = target.to_path_buf();
    conn.progress_handler(
        PROGRESS_PERIOD as i32,
        Some(move || {
            let read = text_read.load(Ordering::Relaxed);
            let steps = ops.fetch_add(1, Ordering::Relaxed) + 1;
            if steps * PROGRESS_PERIOD > 1_000_000_000 + 10_000 * read {
                return true;
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            size > GROWTH_ALLOWANCE + GROWTH_FACTOR * read
        }),
    )
    .map_err(|e| Error::sqlite("configure", target, e))?;
    Ok(conn)
}

const PROGRESS_PERIOD: u64 = 100_000;

/// The first `n` words of a statement, uppercased (identifiers and keywords only; stops at
/// anything else).
fn words(sql: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while out.len() < n {
        rest = skip_space(rest);
        let w: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if w.is_empty() {
            break;
        }
        rest = &rest[w.len()..];
        out.push(w.to_ascii_uppercase());
    }
    out
}

/// Skips whitespace and comments.
fn skip_space(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(r) = t.strip_prefix("--") {
            s = r.find('\n').map(|i| &r[i + 1..]).unwrap_or("");
        } else if let Some(r) = t.strip_prefix("/*") {
            s = r.find("*/").map(|i| &r[i + 2..]).unwrap_or("");
        } else {
            return t;
        }
    }
}

/// Reads one identifier (bare or quoted) at the start of `s`; returns it and the rest.
fn ident(s: &str) -> Option<(String, &str)> {
    let s = skip_space(s);
    let close = match s.chars().next()? {
        '"' => '"',
        '\'' => '\'',
        '`' => '`',
        '[' => ']',
        c if c.is_alphanumeric() || c == '_' => {
            let end = s
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
                .map(|(i, _)| i)
                .unwrap_or(s.len());
            return Some((s[..end].to_string(), &s[end..]));
        }
        _ => return None,
    };
    let mut out = String::new();
    let mut it = s[1..].char_indices();
    while let Some((i, c)) = it.next() {
        if c == close {
            if close != ']' && s[1 + i + 1..].starts_with(close) {
                out.push(close);
                it.next();
                continue;
            }
            return Some((out, &s[1 + i + 1..]));
        }
        out.push(c);
    }
    None
}

/// The table an INSERT writes to: (schema, name, rest of the statement after the name).
fn insert_target(sql: &str) -> Option<(Option<String>, String, &str)> {
    let (w, mut rest) = ident(sql)?;
    if w.eq_ignore_ascii_case("INSERT") {
        let (w, r) = ident(rest)?;
        rest = r;
        if w.eq_ignore_ascii_case("OR") {
            let (_, r) = ident(rest)?;
            rest = r;
        } else if w.eq_ignore_ascii_case("INTO") {
            return table_name(rest);
        } else {
            return None;
        }
    } else if !w.eq_ignore_ascii_case("REPLACE") {
        return None;
    }
    let (w, r) = ident(rest)?;
    if !w.eq_ignore_ascii_case("INTO") {
        return None;
    }
    table_name(r)
}

/// `[schema.]name` at the start of `s`.
fn table_name(s: &str) -> Option<(Option<String>, String, &str)> {
    let (first, r) = ident(s)?;
    if let Some(after_dot) = skip_space(r).strip_prefix('.') {
        let (name, r) = ident(after_dot)?;
        return Some((Some(first), name, r));
    }
    Some((None, first, r))
}

/// The object a CREATE statement makes: (schema, name, the text after the name).
fn created_object(sql: &str) -> Option<(Option<String>, String, &str)> {
    let (_, mut r) = ident(sql)?; // CREATE
    loop {
        let (w, after) = ident(r)?;
        match w.to_ascii_uppercase().as_str() {
            "UNIQUE" | "TABLE" | "INDEX" | "VIEW" | "TRIGGER" | "VIRTUAL" | "TEMP" | "TEMPORARY" => r = after,
            "IF" => {
                let (_, a) = ident(after)?; // NOT
                let (_, a) = ident(a)?; // EXISTS
                r = a;
            }
            _ => return table_name(r),
        }
    }
}

/// Skips a parenthesised group (quotes respected); returns the text after it.
fn skip_parens(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        if let Some(end) = literal_end(b, i) {
            i = end + 1;
            continue;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[i + 1..]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `keyword` appears as a word outside quotes and comments.
fn has_keyword(sql: &str, keyword: &str) -> bool {
    find_keyword(sql, keyword).is_some()
}

/// The lowercased name a `CREATE TABLE [IF NOT EXISTS] name` creates.
fn created_name(sql: &str) -> Option<String> {
    let (_, r) = ident(sql)?; // CREATE
    let (_, mut r) = ident(r)?; // TABLE
    let (w, after) = ident(r)?;
    if w.eq_ignore_ascii_case("IF") {
        let (_, a) = ident(after)?; // NOT
        let (_, a) = ident(a)?; // EXISTS
        r = a;
    }
    table_name(r).map(|(_, n, _)| n.to_ascii_lowercase())
}

/// Byte offset of the top-level keyword `VALUES` in an INSERT (outside quotes and comments).
fn values_offset(sql: &str) -> Option<usize> {
    find_keyword(sql, "VALUES")
}

/// If a quoted string, bracketed name or comment starts at `i`, the index of its last byte
/// (or the end of the text when it is not closed).
fn literal_end(b: &[u8], i: usize) -> Option<usize> {
    let after = |needle: u8, from: usize| memchr::memchr(needle, &b[from..]).map_or(b.len(), |o| from + o);
    match b[i] {
        q @ (b'\'' | b'"' | b'`') => Some(after(q, i + 1)),
        b'[' => Some(after(b']', i + 1)),
        b'-' if b.get(i + 1) == Some(&b'-') => Some(after(b'\n', i)),
        b'/' if b.get(i + 1) == Some(&b'*') => {
            Some(memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |o| i + 2 + o + 1))
        }
        _ => None,
    }
}

/// Byte offset of `keyword` as a whole word outside quotes and comments.
fn find_keyword(sql: &str, keyword: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = literal_end(b, i) {
            i = end + 1;
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            if b[start..i].eq_ignore_ascii_case(keyword.as_bytes()) {
                return Some(start);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// A PRAGMA's name and value (unquoted), e.g. `PRAGMA main.user_version = 5`.
fn pragma(sql: &str) -> Option<(Option<String>, String, Option<String>)> {
    let (_, r) = ident(sql)?;
    let (first, r) = ident(r)?;
    let (schema, name, r) = match skip_space(r).strip_prefix('.') {
        Some(after) => {
            let (n, r) = ident(after)?;
            (Some(first), n, r)
        }
        None => (None, first, r),
    };
    let r = skip_space(r).trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let value = if let Some(v) = r.strip_prefix('=') {
        Some(v.trim().to_string())
    } else if let Some(v) = r.strip_prefix('(') {
        Some(v.trim_end_matches(')').trim().to_string())
    } else if r.is_empty() {
        None
    } else {
        return None;
    };
    let value = value.map(|v| {
        let v = v.trim();
        for q in ['\'', '"'] {
            if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
                return inner.to_string();
            }
        }
        v.to_string()
    });
    Some((schema, name.to_ascii_lowercase(), value))
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

/// Splits text into statements as it arrives line by line.
#[derive(Default)]
struct Splitter {
    buf: Vec<u8>,
    /// Where the line read last starts in `buf`.
    line_start: usize,
    scan: usize,
    state: Lex,
    /// Offset in `buf` where the current statement's first token is.
    start: Option<usize>,
    start_line: Option<u64>,
    /// In a block comment: the previous byte was a '*' of the comment's body.
    star: bool,
    /// Bytes of the current statement scanned for its end so far.
    checked: usize,
    /// Where a CREATE TRIGGER statement is, in SQLite's terms for finding its end.
    trig: Trig,
    /// Ask SQLite's rule only where the token tracking says a trigger may end, even for a short
    /// statement (as for one past [`SHORT_CHECKS`]): for [`split_statements`].
    track_only: bool,
}

/// The states of `sqlite3_complete()` inside a trigger's body, followed token by token
/// (comments count as whitespace, quoted names and strings as other tokens).
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Trig {
    /// Not inside a trigger body (or not known to be).
    #[default]
    Unknown,
    /// Inside the body.
    Body,
    /// Just after a `;` of the body.
    Semi,
    /// After `; END`: a `;` now ends the trigger.
    SemiEnd,
}

impl Trig {
    /// The state after a token that is not `;` (`is_end`: the word END).
    fn token(self, is_end: bool) -> Trig {
        match (self, is_end) {
            (Trig::Unknown, _) => Trig::Unknown,
            (Trig::Semi, true) => Trig::SemiEnd,
            _ => Trig::Body,
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Lex {
    #[default]
    Normal,
    Quote(u8),
    LineComment,
    BlockComment,
}

impl Splitter {
    fn idle(&self) -> bool {
        self.start.is_none() && self.state == Lex::Normal
    }

    /// Bytes of the statement still open (after [`Splitter::split`]: nothing else is kept).
    fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Appends the next line of `reader` (at most `cap` bytes) to the buffer; its length.
    fn read_line(&mut self, reader: &mut dyn BufRead, cap: u64) -> std::io::Result<usize> {
        self.line_start = self.buf.len();
        reader.take(cap).read_until(b'\n', &mut self.buf)
    }

    /// The line read last.
    fn line(&self) -> &[u8] {
        &self.buf[self.line_start..]
    }

    /// Forgets the line read last (one that is not SQL: the end line).
    fn discard_line(&mut self) {
        self.buf.truncate(self.line_start);
    }

    #[cfg(test)]
    fn push(
        &mut self,
        line: &[u8],
        line_no: u64,
        on_stmt: &mut dyn FnMut(&[u8], u64) -> Result<()>,
    ) -> Result<()> {
        self.line_start = self.buf.len();
        self.buf.extend_from_slice(line);
        self.split(line_no, on_stmt)
    }

    /// Hands every statement completed by the line read last to `on_stmt`.
    fn split(&mut self, line_no: u64, on_stmt: &mut dyn FnMut(&[u8], u64) -> Result<()>) -> Result<()> {
        let mut i = self.scan;
        while i < self.buf.len() {
            let b = self.buf[i];
            match self.state {
                // Quoted text and comments are most of a dump: jump to their end.
                Lex::Quote(q) => match memchr::memchr(q, &self.buf[i..]) {
                    Some(off) => {
                        i += off;
                        self.state = Lex::Normal;
                    }
                    None => i = self.buf.len(),
                },
                Lex::LineComment => match memchr::memchr(b'\n', &self.buf[i..]) {
                    Some(off) => {
                        i += off;
                        self.state = Lex::Normal;
                    }
                    None => i = self.buf.len(),
                },
                Lex::BlockComment => {
                    if b == b'/' && self.star {
                        self.state = Lex::Normal;
                    }
                    // Only a '*' inside the comment (not the opener's) can close it.
                    self.star = b == b'*';
                }
                Lex::Normal => match b {
                    b'\'' | b'"' | b'`' => {
                        self.begin_token(i, line_no);
                        self.state = Lex::Quote(b);
                        self.trig = self.trig.token(false);
                    }
                    b'[' => {
                        self.begin_token(i, line_no);
                        self.state = Lex::Quote(b']');
                        self.trig = self.trig.token(false);
                    }
                    b'-' if self.buf.get(i + 1) == Some(&b'-') => self.state = Lex::LineComment,
                    b'/' if self.buf.get(i + 1) == Some(&b'*') => {
                        self.state = Lex::BlockComment;
                        self.star = false;
                        i += 1;
                    }
                    b';' => {
                        if let Some(start) = self.start {
                            let stmt = &self.buf[start..=i];
                            // SQLite's own rule says where a CREATE statement ends (a trigger:
                            // at `; END ;`). It rescans the whole statement, so it is asked at
                            // the first `;`, then where the tokens seen say a trigger ends, and
                            // at other `;` only while the statement is short. Past the budget
                            // the statement goes as it is (SQLite then refuses it).
                            let complete = if !starts_create(stmt) || self.checked > COMPLETE_BUDGET {
                                true
                            } else if self.trig == Trig::Unknown
                                || self.trig == Trig::SemiEnd
                                || (!self.track_only && self.checked <= SHORT_CHECKS)
                            {
                                self.checked += stmt.len();
                                is_complete(stmt)
                            } else {
                                false
                            };
                            if complete {
                                let at = self.start_line.unwrap_or(line_no);
                                on_stmt(stmt, at)?;
                                self.start = None;
                                self.start_line = None;
                                self.checked = 0;
                                self.trig = Trig::Unknown;
                            } else {
                                self.trig = Trig::Semi;
                            }
                        }
                    }
                    b if b.is_ascii_whitespace() => {}
                    // A word (as SQLite's tokenizer reads identifiers and keywords): only
                    // END matters, to follow where a trigger ends.
                    b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                        self.begin_token(i, line_no);
                        let end = self.buf[i..]
                            .iter()
                            .position(|&c| {
                                !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
                            })
                            .map_or(self.buf.len(), |o| i + o);
                        self.trig = self.trig.token(self.buf[i..end].eq_ignore_ascii_case(b"END"));
                        i = end - 1;
                    }
                    _ => {
                        self.begin_token(i, line_no);
                        self.trig = self.trig.token(false);
                    }
                },
            }
            i += 1;
        }
        // Drop what is behind the current statement, and the room a long one needed.
        let keep_from = self.start.unwrap_or(self.buf.len());
        self.buf.drain(..keep_from);
        if let Some(s) = self.start.as_mut() {
            *s = 0;
        }
        if self.buf.capacity() > 64 << 20 && self.buf.len() < 1 << 20 {
            self.buf.shrink_to(1 << 20);
        }
        self.scan = self.buf.len();
        self.line_start = self.buf.len();
        Ok(())
    }

    fn begin_token(&mut self, i: usize, line_no: u64) {
        if self.start.is_none() {
            self.start = Some(i);
            self.start_line = Some(line_no);
        }
    }
}

/// Whether a statement ending in `;` is complete: always, except inside `CREATE TRIGGER ...
/// BEGIN ... END`, which SQLite's own `sqlite3_complete` tells.
/// Bytes of one statement that may be scanned for its end (at each `;` inside a CREATE
/// TRIGGER's body, the whole statement so far is): far more than any real trigger needs.
const COMPLETE_BUDGET: usize = 256 << 20;
/// While a statement has cost less than this, its end is also asked for at every `;` (as
/// SQLite's own rule, not the token tracking, would say): a short trigger never depends on
/// the tracking.
const SHORT_CHECKS: usize = 1 << 20;

/// Splits `text` into statements, line by line, as [`load`] does: the byte range of each
/// statement in `text` and the line it starts on, and whether a statement is left open at the
/// end. With `track_only`, where a trigger ends is decided as for a statement past 1 MiB (by
/// the token tracking, with SQLite's rule asked only where it says). For the fuzz targets in
/// `fuzz/`, which compare it with SQLite's own `sqlite3_complete`.
#[doc(hidden)]
pub fn split_statements(text: &[u8], track_only: bool) -> (Vec<(std::ops::Range<usize>, u64)>, bool) {
    let mut s = Splitter {
        track_only,
        ..Splitter::default()
    };
    let mut out = Vec::new();
    let mut pushed = 0usize;
    for (n, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        s.line_start = s.buf.len();
        s.buf.extend_from_slice(line);
        pushed += line.len();
        // `buf` holds the tail of the text pushed so far; statements are slices of it.
        let base = s.buf.as_ptr() as usize;
        let base_off = pushed - s.buf.len();
        let _ = s.split(n as u64 + 1, &mut |stmt, at| {
            let start = base_off + (stmt.as_ptr() as usize - base);
            out.push((start..start + stmt.len(), at));
            Ok(())
        });
    }
    (out, s.start.is_some())
}

/// Whether a statement starts with CREATE (only then can a `;` fall inside it: a trigger body).
fn starts_create(stmt: &[u8]) -> bool {
    stmt[..stmt.len().min(6)].eq_ignore_ascii_case(b"CREATE")
}

/// Whether a CREATE statement ending in `;` is complete (SQLite's own rule, which knows that a
/// trigger ends at its END).
fn is_complete(stmt: &[u8]) -> bool {
    if !starts_create(stmt) {
        return true;
    }
    let mut c = Vec::with_capacity(stmt.len() + 1);
    c.extend_from_slice(stmt);
    c.push(0);
    // SAFETY: `c` is NUL-terminated and lives across the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr().cast()) != 0 }
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
