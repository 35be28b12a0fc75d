//! The sandbox a dump loads in: SQLite's heap and value limits, the authorizer and the
//! functions a dump may and may never call, and the target connection opened with all of them.

use crate::error::{Error, Result};
use crate::sqlite::db::{self};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Every value may be this large, or four times its statement's length if more.
pub(super) const MIN_VALUE_LIMIT: usize = 64 << 20;
/// SQLite's whole heap may hold this much while a dump loads (page caches, full-text indexes'
/// pending data, a statement's values), plus eight times the statement being run: a statement
/// of a few bytes cannot make SQLite allocate gigabytes (e.g. `randomblob()` under the value
/// limit in each of 2,000 columns), while a 512 MiB statement keeps room for SQLite's copies.
pub(super) const HEAP_BASE: usize = 512 << 20;

/// SQLite's process-wide hard heap limit while it lives (the previous hard and soft limits
/// come back when it is dropped). An allocation over it fails, and the statement with it ("out
/// of memory"). Process-wide: other SQLite work in the process meanwhile shares the limit, and
/// two loads in one process run one after the other.
pub(super) struct HeapLimit {
    previous_hard: i64,
    previous_soft: i64,
    /// Loads in one process take turns: each would otherwise save and restore the other's cap.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl HeapLimit {
    pub(super) fn set(bytes: usize) -> HeapLimit {
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
    pub(super) fn set_to(&self, bytes: usize) {
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

/// Functions a value in a dump may be spelled with.
pub(super) fn allowed_value_function(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "char" | "replace" | "unhex" | "unistr" | "hex" | "cast"
    )
}

/// Functions never allowed while loading, whatever calls them.
pub(super) fn denied_function(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "load_extension" | "fts3_tokenizer" | "readfile" | "writefile" | "edit"
    )
}

pub(super) fn open_target(
    target: &Path,
    text_read: Arc<AtomicU64>,
    ops: Arc<AtomicU64>,
) -> Result<Connection> {
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

/// The database may grow to this plus `GROWTH_FACTOR` times the text read so far.
pub(super) const GROWTH_ALLOWANCE: u64 = 256 << 20;

pub(super) const GROWTH_FACTOR: u64 = 64;

pub(super) const PROGRESS_PERIOD: u64 = 100_000;
