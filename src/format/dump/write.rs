//! Writing a dump's data section: what is dumped, in which order, and how each value is spelled
//! so that loading it gives back the same value bit for bit.
//!
//! Order: header PRAGMAs (page_size, encoding, auto_vacuum) and `foreign_keys=OFF` outside the
//! transaction; then `BEGIN`; ordinary tables parents-first by foreign key (each `CREATE TABLE`
//! verbatim, then its rows in primary-key order, one `INSERT` per line with an explicit column
//! list that leaves out generated columns and keeps the rowid); virtual tables (created verbatim,
//! then refilled through the module: rows re-inserted, external-content FTS rebuilt, FTS5
//! settings re-applied; shadow tables are never copied); `sqlite_stat1`/`sqlite_stat4`;
//! `sqlite_sequence`; indexes, views and triggers last, so no trigger fires while loading;
//! `user_version` and `application_id`; `COMMIT`.
//!
//! Values: integers in decimal; REALs in the shortest decimal form that parses back to the same
//! bits (infinities as `9e999`); TEXT quoted, with line breaks and other control characters as
//! `char(N)` so that a row stays on one line, and as `CAST(x'..' AS TEXT)` when it holds NUL or
//! invalid UTF-8; BLOBs as `x'..'`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::progress::Progress;
use crate::sqlite::db::{quote_ident, sql_string};

/// Which tables a dump holds.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these tables (and views); empty means all.
    pub tables: Vec<String>,
    /// Leave these tables (and views) out.
    pub exclude: Vec<String>,
}

/// One ordinary table to dump.
#[derive(Debug, Clone)]
struct TableDump {
    name: String,
    sql: String,
    /// `INSERT INTO "t"("a","b") VALUES(`
    insert_prefix: String,
    /// `SELECT ... FROM main."t" ORDER BY ...`
    select: String,
}

/// How a virtual table's content comes back.
#[derive(Debug, Clone)]
enum Refill {
    /// Re-insert the rows the table shows.
    Rows { insert_prefix: String, select: String },
    /// `INSERT INTO t(t) VALUES('rebuild')` from its external content table.
    Rebuild,
}

#[derive(Debug, Clone)]
struct VtabDump {
    name: String,
    sql: String,
    module: String,
    refill: Refill,
}

/// Everything a dump will write, worked out before the first byte so that an unsupported
/// database is refused before an output file exists.
#[derive(Debug, Clone)]
pub struct DumpPlan {
    page_size: i64,
    encoding: String,
    auto_vacuum: i64,
    user_version: i64,
    application_id: i64,
    tables: Vec<TableDump>,
    vtabs: Vec<VtabDump>,
    /// Indexes, views and triggers, in schema order.
    late: Vec<String>,
    /// Names of the tables (ordinary and virtual) and views dumped.
    pub included: Vec<String>,
    has_sequence: bool,
    stat_tables: Vec<String>,
    /// Lowercased table names whose statistics rows are kept; `None` keeps all.
    stat_filter: Option<Vec<String>>,
    utf16: Option<bool>,
}

struct SchemaRow {
    kind: String,
    name: String,
    tbl_name: String,
    sql: Option<String>,
}

fn q<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> rusqlite::Result<T> {
    conn.query_row(sql, [], |r| r.get(0))
}

/// Works out what to dump from the database open on `conn` (inside a read transaction).
/// `Err` carries a message for the user: an unknown table in the selection, a virtual table
/// litevault cannot refill.
pub fn plan(conn: &Connection, sel: &Selection) -> Result<DumpPlan, String> {
    let e = |err: rusqlite::Error| err.to_string();
    let encoding: String = q(conn, "PRAGMA encoding").map_err(e)?;
    let utf16 = match encoding.as_str() {
        "UTF-16le" => Some(true),
        "UTF-16be" => Some(false),
        _ => None,
    };
    let mut schema = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name, sql FROM main.sqlite_schema ORDER BY rowid")
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            schema.push(SchemaRow {
                kind: r.get(0).map_err(e)?,
                name: r.get(1).map_err(e)?,
                tbl_name: r.get(2).map_err(e)?,
                sql: r.get(3).map_err(e)?,
            });
        }
    }
    let shadow: HashSet<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")
            .map_err(e)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(e)?
            .collect::<rusqlite::Result<HashSet<_>>>()
            .map_err(e)?;
        names
    };
    let is_internal = |name: &str| name.to_ascii_lowercase().starts_with("sqlite_");
    let lower = |s: &str| s.to_ascii_lowercase();

    // Tables and views a user can name.
    let nameable: Vec<&SchemaRow> = schema
        .iter()
        .filter(|r| {
            (r.kind == "table" || r.kind == "view") && !is_internal(&r.name) && !shadow.contains(&r.name)
        })
        .collect();
    let known: HashSet<String> = nameable.iter().map(|r| lower(&r.name)).collect();
    for n in sel.tables.iter().chain(&sel.exclude) {
        if !known.contains(&lower(n)) {
            return Err(format!("no table or view named {n:?} in the database"));
        }
    }
    let wanted: HashSet<String> = sel.tables.iter().map(|n| lower(n)).collect();
    let excluded: HashSet<String> = sel.exclude.iter().map(|n| lower(n)).collect();
    let include = |name: &str| {
        let l = lower(name);
        (wanted.is_empty() || wanted.contains(&l)) && !excluded.contains(&l)
    };

    let mut ordinary = Vec::new();
    let mut vtabs = Vec::new();
    let mut included = Vec::new();
    for r in &nameable {
        if !include(&r.name) {
            continue;
        }
        let Some(sql) = &r.sql else { continue };
        included.push(r.name.clone());
        if r.kind == "view" {
            continue;
        }
        if let Some(module) = crate::sqlite::db::virtual_module(sql) {
            vtabs.push(plan_vtab(conn, &r.name, sql, &module, &shadow, &include)?);
        } else {
            ordinary.push(plan_table(conn, &r.name, sql).map_err(e)?);
        }
    }
    let ordinary = fk_order(conn, ordinary).map_err(e)?;
    let included_set: HashSet<String> = included.iter().map(|n| lower(n)).collect();
    let late = schema
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "index" | "trigger" | "view"))
        .filter(|r| included_set.contains(&lower(&r.tbl_name)))
        .filter_map(|r| r.sql.clone())
        .collect();
    // Statistics rows of what is dumped, shadow tables of dumped virtual tables included.
    let stat_filter = (!sel.tables.is_empty() || !sel.exclude.is_empty()).then(|| {
        let mut names: Vec<String> = included.iter().map(|n| lower(n)).collect();
        for v in &vtabs {
            let prefix = format!("{}_", lower(&v.name));
            names.extend(shadow.iter().map(|s| lower(s)).filter(|s| s.starts_with(&prefix)));
        }
        names.sort();
        names
    });
    let has = |name: &str| schema.iter().any(|r| r.kind == "table" && r.name == name);
    let stat_tables = ["sqlite_stat1", "sqlite_stat4"]
        .iter()
        .filter(|t| has(t))
        .map(|t| t.to_string())
        .collect();
    Ok(DumpPlan {
        page_size: q(conn, "PRAGMA page_size").map_err(e)?,
        encoding,
        auto_vacuum: q(conn, "PRAGMA auto_vacuum").map_err(e)?,
        user_version: q(conn, "PRAGMA user_version").map_err(e)?,
        application_id: q(conn, "PRAGMA application_id").map_err(e)?,
        tables: ordinary,
        vtabs,
        late,
        included,
        has_sequence: has("sqlite_sequence"),
        stat_tables,
        stat_filter,
        utf16,
    })
}

struct Column {
    name: String,
    decl: String,
    pk: i64,
    hidden: i64,
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    let cols = stmt
        .query_map([table], |r| {
            Ok(Column {
                name: r.get(0)?,
                decl: r.get(1)?,
                pk: r.get(2)?,
                hidden: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(cols)
}

fn plan_table(conn: &Connection, name: &str, sql: &str) -> rusqlite::Result<TableDump> {
    let cols = columns(conn, name)?;
    let without_rowid: bool = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap_or(false);
    // Generated columns (hidden 2 and 3) are computed, never inserted.
    let stored: Vec<&Column> = cols.iter().filter(|c| c.hidden == 0).collect();
    let mut pk: Vec<&Column> = cols.iter().filter(|c| c.pk > 0).collect();
    pk.sort_by_key(|c| c.pk);
    let qt = quote_ident(name);
    let mut insert_cols: Vec<String> = Vec::new();
    let mut select_cols: Vec<String> = Vec::new();
    let order: String = if without_rowid {
        pk.iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        let alias = pk.len() == 1
            && pk[0].decl.eq_ignore_ascii_case("INTEGER")
            && is_rowid_alias(conn, name, &pk[0].name)?;
        // The rowid under a name no column takes (a column may be called "rowid").
        let taken: HashSet<String> = cols.iter().map(|c| c.name.to_ascii_lowercase()).collect();
        let rowid = ["rowid", "_rowid_", "oid"]
            .iter()
            .find(|r| !taken.contains(**r))
            .map(|r| r.to_string());
        if !alias {
            // Keep the rowid: external-content FTS tables and applications refer to it.
            if let Some(r) = &rowid {
                insert_cols.push(r.clone());
                select_cols.push(r.clone());
            }
        }
        let mut o: Vec<String> = if alias {
            vec![quote_ident(&pk[0].name)]
        } else {
            pk.iter().map(|c| quote_ident(&c.name)).collect()
        };
        if !alias {
            match &rowid {
                Some(r) => o.push(r.clone()),
                None => o.extend(stored.iter().map(|c| quote_ident(&c.name))),
            }
        }
        o.join(", ")
    };
    for c in &stored {
        insert_cols.push(quote_ident(&c.name));
        select_cols.push(quote_ident(&c.name));
    }
    Ok(TableDump {
        name: name.to_string(),
        sql: sql.to_string(),
        insert_prefix: format!("INSERT INTO {qt}({}) VALUES(", insert_cols.join(",")),
        select: format!(
            "SELECT {} FROM main.{qt} ORDER BY {order}",
            if select_cols.is_empty() {
                "NULL".to_string()
            } else {
                select_cols.join(", ")
            }
        ),
    })
}

/// Whether an `INTEGER PRIMARY KEY` column is the rowid. It is, except for the legacy
/// `INTEGER PRIMARY KEY DESC` column constraint, whose key SQLite keeps in a separate
/// index (origin 'pk'): the schema tells them apart.
fn is_rowid_alias(conn: &Connection, table: &str, _col: &str) -> rusqlite::Result<bool> {
    let pk_index: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'",
        [table],
        |r| r.get(0),
    )?;
    Ok(pk_index == 0)
}

/// The options of a `CREATE VIRTUAL TABLE ... USING m(args)`: the `key=value` arguments with
/// keys lowercased and values unquoted.
fn vtab_options(sql: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(open) = sql.find('(') else { return out };
    let body = &sql[open + 1..sql.rfind(')').unwrap_or(sql.len())];
    let mut args = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(qc), c) if c == qc => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '[') => quote = Some(']'),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                args.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    args.push(&body[start..]);
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            let v = v.trim();
            let unq = if v.len() >= 2
                && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"')))
            {
                v[1..v.len() - 1].to_string()
            } else {
                v.to_string()
            };
            out.insert(k.trim().to_ascii_lowercase(), unq);
        }
    }
    out
}

fn plan_vtab(
    conn: &Connection,
    name: &str,
    sql: &str,
    module: &str,
    shadow: &HashSet<String>,
    include: &dyn Fn(&str) -> bool,
) -> Result<VtabDump, String> {
    let e = |err: rusqlite::Error| format!("virtual table {name:?}: {err}");
    let qt = quote_ident(name);
    let refill = match module {
        "fts5" | "fts4" | "fts3" => {
            let opts = vtab_options(sql);
            if shadow.contains(&format!("{name}_content")) {
                let cols = columns(conn, name).map_err(e)?;
                let visible: Vec<String> = cols
                    .iter()
                    .filter(|c| c.hidden == 0)
                    .map(|c| quote_ident(&c.name))
                    .collect();
                let mut insert = vec!["rowid".to_string()];
                let mut select = vec!["rowid".to_string()];
                insert.extend(visible.iter().cloned());
                select.extend(visible.iter().cloned());
                if let Some(lid) = opts.get("languageid") {
                    insert.push(quote_ident(lid));
                    select.push(quote_ident(lid));
                }
                Refill::Rows {
                    insert_prefix: format!("INSERT INTO {qt}({}) VALUES(", insert.join(",")),
                    select: format!("SELECT {} FROM main.{qt} ORDER BY rowid", select.join(", ")),
                }
            } else {
                match opts.get("content").map(String::as_str) {
                    Some("") | None => {
                        return Err(format!(
                            "the full-text table {name:?} is contentless (content=''): its text is not \
                             stored, so no dump can rebuild it; leave it out with --exclude-table {name} or \
                             use the archive format"
                        ))
                    }
                    Some(table) => {
                        if !include(table) {
                            return Err(format!(
                                "the full-text table {name:?} indexes the table {table:?}, which the dump \
                                 leaves out; include both or neither"
                            ));
                        }
                        Refill::Rebuild
                    }
                }
            }
        }
        "rtree" | "rtree_i32" => {
            let cols = columns(conn, name).map_err(e)?;
            let visible: Vec<String> = cols
                .iter()
                .filter(|c| c.hidden == 0)
                .map(|c| quote_ident(&c.name))
                .collect();
            Refill::Rows {
                insert_prefix: format!("INSERT INTO {qt}({}) VALUES(", visible.join(",")),
                select: format!("SELECT {} FROM main.{qt} ORDER BY 1", visible.join(", ")),
            }
        }
        other => {
            return Err(format!(
                "virtual table {name:?} uses the module {other:?}, which litevault cannot dump (it dumps \
                 fts5, fts4, fts3 and rtree); leave it out with --exclude-table {name} or use the archive \
                 format"
            ))
        }
    };
    Ok(VtabDump {
        name: name.to_string(),
        sql: sql.to_string(),
        module: module.to_string(),
        refill,
    })
}

/// Orders tables parents-first by their foreign keys, by name otherwise (a function of names
/// and keys alone, so a restored database, whose schema order differs, dumps in the same
/// order). Loading runs with foreign keys off: the order is a courtesy to readers and to tools
/// that load with them on; tables in a cycle keep name order.
fn fk_order(conn: &Connection, mut tables: Vec<TableDump>) -> rusqlite::Result<Vec<TableDump>> {
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut parents: Vec<Vec<String>> = Vec::with_capacity(tables.len());
    for t in &tables {
        let mut stmt = conn.prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")?;
        let names = stmt
            .query_map([&t.name], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        parents.push(names);
    }
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let parents: Vec<Vec<&str>> = parents
        .iter()
        .map(|p| p.iter().map(String::as_str).collect())
        .collect();
    let order = crate::model::sql::parents_first(&names, &parents);
    let mut slots: Vec<Option<TableDump>> = tables.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// What writing a data section produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataStats {
    /// Statements written.
    pub statements: u64,
    /// Rows written (ordinary and virtual tables).
    pub rows: u64,
}

/// Writes the data section for `plan` from `conn` (inside the same read transaction as `plan`).
pub fn write_data(
    conn: &Connection,
    plan: &DumpPlan,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<DataStats> {
    let mut w = Lines {
        out,
        buf: Vec::with_capacity(1 << 16),
        stats: DataStats::default(),
        utf16: plan.utf16,
        progress,
    };
    w.stmt(&format!("PRAGMA page_size={}", plan.page_size))?;
    w.stmt(&format!("PRAGMA encoding={}", sql_string(&plan.encoding)))?;
    w.stmt(&format!("PRAGMA auto_vacuum={}", plan.auto_vacuum))?;
    w.stmt("PRAGMA foreign_keys=OFF")?;
    w.stmt("BEGIN TRANSACTION")?;
    for t in &plan.tables {
        w.stmt(&t.sql)?;
        w.rows(conn, &t.select, &t.insert_prefix)?;
    }
    for v in &plan.vtabs {
        w.stmt(&v.sql)?;
        let qt = quote_ident(&v.name);
        match &v.refill {
            Refill::Rows {
                insert_prefix,
                select,
            } => w.rows(conn, select, insert_prefix)?,
            Refill::Rebuild => w.stmt(&format!("INSERT INTO {qt}({qt}) VALUES('rebuild')"))?,
        }
        if v.module == "fts5" {
            // Persistent settings (rank, automerge, ...) live in the _config shadow table.
            let select = format!(
                "SELECT k, v FROM main.{} WHERE k <> 'version' ORDER BY k",
                quote_ident(&format!("{}_config", v.name))
            );
            w.rows(conn, &select, &format!("INSERT INTO {qt}({qt},\"rank\") VALUES("))?;
        }
    }
    if !plan.stat_tables.is_empty() {
        w.stmt("ANALYZE sqlite_schema")?;
        for st in &plan.stat_tables {
            let cols = columns(conn, st).map_err(to_io)?;
            let mut names: Vec<String> = vec!["rowid".into()];
            names.extend(cols.iter().map(|c| quote_ident(&c.name)));
            let filter = match &plan.stat_filter {
                None => String::new(),
                Some(list) => format!(
                    " WHERE lower(tbl) IN (SELECT value FROM json_each({}))",
                    sql_string(&serde_json::to_string(list).unwrap_or_default())
                ),
            };
            let select = format!(
                "SELECT {} FROM main.{st}{filter} ORDER BY rowid",
                names.join(", ")
            );
            w.rows(
                conn,
                &select,
                &format!("INSERT INTO {st}({}) VALUES(", names.join(",")),
            )?;
        }
    }
    let autoincrement = plan
        .tables
        .iter()
        .any(|t| t.sql.to_ascii_uppercase().contains("AUTOINCREMENT"));
    if plan.has_sequence && autoincrement {
        // Loading rows into an AUTOINCREMENT table already wrote sequence rows: replace them.
        w.stmt("DELETE FROM sqlite_sequence")?;
        let names: Vec<String> = plan.tables.iter().map(|t| t.name.clone()).collect();
        let list = serde_json::to_string(&names).unwrap_or_default();
        let select = format!(
            "SELECT name, seq FROM main.sqlite_sequence WHERE name IN (SELECT value FROM json_each({})) ORDER BY name",
            sql_string(&list)
        );
        w.rows(conn, &select, "INSERT INTO sqlite_sequence(name,seq) VALUES(")?;
    }
    for sql in &plan.late {
        w.stmt(sql)?;
    }
    if plan.user_version != 0 {
        w.stmt(&format!("PRAGMA user_version={}", plan.user_version))?;
    }
    if plan.application_id != 0 {
        w.stmt(&format!("PRAGMA application_id={}", plan.application_id))?;
    }
    w.stmt("COMMIT")?;
    w.out.flush()?;
    Ok(w.stats)
}

fn to_io(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

struct Lines<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    stats: DataStats,
    utf16: Option<bool>,
    progress: &'a dyn Progress,
}

impl Lines<'_> {
    fn stmt(&mut self, sql: &str) -> io::Result<()> {
        self.out.write_all(sql.as_bytes())?;
        self.out.write_all(b";\n")?;
        self.stats.statements += 1;
        Ok(())
    }

    fn rows(&mut self, conn: &Connection, select: &str, prefix: &str) -> io::Result<()> {
        let mut stmt = conn.prepare(select).map_err(to_io)?;
        let ncol = stmt.column_count();
        let mut rows = stmt.query([]).map_err(to_io)?;
        while let Some(row) = rows.next().map_err(to_io)? {
            self.buf.clear();
            self.buf.extend_from_slice(prefix.as_bytes());
            for i in 0..ncol {
                if i > 0 {
                    self.buf.push(b',');
                }
                let v = row.get_ref(i).map_err(to_io)?;
                if let ValueRef::Text(b) | ValueRef::Blob(b) = v {
                    // Checked before it is spelled: hex doubles it.
                    if b.len() > MAX_VALUE {
                        return Err(too_long(b.len() as u64 * 2));
                    }
                }
                push_value(&mut self.buf, v, self.utf16);
                // Checked as the row grows, so that it never takes much more than the cap.
                if self.buf.len() > super::format::MAX_STATEMENT {
                    return Err(too_long(self.buf.len() as u64));
                }
            }
            self.buf.extend_from_slice(b");\n");
            if self.buf.len() > super::format::MAX_STATEMENT {
                return Err(too_long(self.buf.len() as u64));
            }
            self.out.write_all(&self.buf)?;
            self.stats.statements += 1;
            self.stats.rows += 1;
            if self.stats.rows.is_multiple_of(4096) {
                crate::progress::step_io(self.progress, 4096)?;
            }
        }
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The largest TEXT or BLOB a dump holds: its hex spelling must fit in a statement.
const MAX_VALUE: usize = (super::format::MAX_STATEMENT - (1 << 20)) / 2;

fn too_long(sql_bytes: u64) -> io::Error {
    io::Error::other(format!(
        "a row whose INSERT takes {} MiB of SQL, over the {} MiB a dump's statement may have (so that \
         loading any dump stays within bounded memory); back this table up as an archive \
         (--format archive) or leave it out (--exclude-table)",
        sql_bytes >> 20,
        super::format::MAX_STATEMENT >> 20
    ))
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len() * 2 + 3);
    buf.extend_from_slice(b"x'");
    for &b in bytes {
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 15) as usize]);
    }
    buf.push(b'\'');
}

/// Appends the SQL literal (or constant expression) that loads back as exactly `v`.
/// `utf16` is the database's UTF-16 byte order (`Some(true)` little-endian), `None` for UTF-8.
pub fn push_value(buf: &mut Vec<u8>, v: ValueRef<'_>, utf16: Option<bool>) {
    match v {
        ValueRef::Null => buf.extend_from_slice(b"NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(buf, "{i}");
        }
        ValueRef::Real(f) => {
            if f.is_nan() {
                buf.extend_from_slice(b"NULL");
            } else if f.is_infinite() {
                buf.extend_from_slice(if f > 0.0 { b"9e999" } else { b"-9e999" });
            } else {
                // Rust's shortest round-trip form; always has a '.' or an exponent, so SQLite
                // reads it as REAL.
                let _ = write!(buf, "{f:?}");
            }
        }
        ValueRef::Blob(b) => push_hex(buf, b),
        ValueRef::Text(t) => push_text(buf, t, utf16),
    }
}

fn push_text(buf: &mut Vec<u8>, t: &[u8], utf16: Option<bool>) {
    let Ok(s) = std::str::from_utf8(t) else {
        // Bytes that are not UTF-8: only a UTF-8 database can hold them, and CAST keeps them.
        buf.extend_from_slice(b"CAST(");
        push_hex(buf, t);
        buf.extend_from_slice(b" AS TEXT)");
        return;
    };
    if s.contains('\0') {
        push_cast_text(buf, s, t, utf16);
        return;
    }
    let special = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let controls = t.iter().filter(|&&b| special(b)).count();
    if controls == 0 {
        push_quoted(buf, t);
        return;
    }
    if controls > MAX_CHAR_PIECES {
        // 'a'||char(10)||... nests one level per piece and SQLite caps expression depth (and
        // char()'s arguments): text with many line breaks goes as one flat hex literal.
        push_cast_text(buf, s, t, utf16);
        return;
    }
    // Split at control characters: 'a'||char(10)||'b'.
    let mut first = true;
    let mut i = 0;
    while i < t.len() {
        if !first {
            buf.extend_from_slice(b"||");
        }
        first = false;
        if special(t[i]) {
            buf.extend_from_slice(b"char(");
            let mut j = i;
            while j < t.len() && special(t[j]) {
                if j > i {
                    buf.push(b',');
                }
                let _ = write!(buf, "{}", t[j]);
                j += 1;
            }
            buf.push(b')');
            i = j;
        } else {
            let mut j = i;
            while j < t.len() && !special(t[j]) {
                j += 1;
            }
            push_quoted(buf, &t[i..j]);
            i = j;
        }
    }
}

/// Control characters spelled as `char(N)` pieces at most; beyond, a hex literal.
const MAX_CHAR_PIECES: usize = 64;

/// `CAST(x'..' AS TEXT)` with the bytes in the database's encoding.
fn push_cast_text(buf: &mut Vec<u8>, s: &str, t: &[u8], utf16: Option<bool>) {
    buf.extend_from_slice(b"CAST(");
    match utf16 {
        None => push_hex(buf, t),
        Some(le) => {
            let units: Vec<u8> = s
                .encode_utf16()
                .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
                .collect();
            push_hex(buf, &units);
        }
    }
    buf.extend_from_slice(b" AS TEXT)");
}

fn push_quoted(buf: &mut Vec<u8>, t: &[u8]) {
    buf.push(b'\'');
    for &b in t {
        if b == b'\'' {
            buf.push(b'\'');
        }
        buf.push(b);
    }
    buf.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: ValueRef<'_>) -> String {
        let mut b = Vec::new();
        push_value(&mut b, v, None);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn values_are_spelled_to_load_back_exactly() {
        assert_eq!(lit(ValueRef::Integer(i64::MIN)), "-9223372036854775808");
        assert_eq!(lit(ValueRef::Real(1.0)), "1.0");
        assert_eq!(lit(ValueRef::Real(-0.0)), "-0.0");
        assert_eq!(lit(ValueRef::Real(f64::INFINITY)), "9e999");
        assert_eq!(lit(ValueRef::Text(b"it's")), "'it''s'");
        assert_eq!(
            lit(ValueRef::Text(b"a\nb\r\n")),
            "'a'||char(10)||'b'||char(13,10)"
        );
        assert_eq!(lit(ValueRef::Text(b"a\0b")), "CAST(x'610062' AS TEXT)");
        assert_eq!(lit(ValueRef::Text(b"\xff")), "CAST(x'ff' AS TEXT)");
        assert_eq!(lit(ValueRef::Blob(b"\x00\xab")), "x'00ab'");
        // Every one of them is one SQLite expression giving back the value.
        let conn = Connection::open_in_memory().unwrap();
        use rusqlite::types::Value;
        for (v, want) in [
            (ValueRef::Text(b"a\nb\r\n"), Value::Text("a\nb\r\n".into())),
            (ValueRef::Text(b"a\0b"), Value::Text("a\0b".into())),
            (ValueRef::Real(-0.0), Value::Real(-0.0)),
            (ValueRef::Real(5e-324), Value::Real(5e-324)),
            (ValueRef::Integer(i64::MIN), Value::Integer(i64::MIN)),
        ] {
            let back: Value = conn
                .query_row(&format!("SELECT {}", lit(v)), [], |r| r.get(0))
                .unwrap();
            match (&back, &want) {
                (Value::Real(a), Value::Real(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(back, want),
            }
        }
    }

    #[test]
    fn vtab_options_are_parsed() {
        let o = vtab_options("CREATE VIRTUAL TABLE f USING fts5(a, b, content='docs', content_rowid=\"id\")");
        assert_eq!(o.get("content").map(String::as_str), Some("docs"));
        assert_eq!(o.get("content_rowid").map(String::as_str), Some("id"));
        let o = vtab_options("CREATE VIRTUAL TABLE f USING fts5(a, content='')");
        assert_eq!(o.get("content").map(String::as_str), Some(""));
    }
}
