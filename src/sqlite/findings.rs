//! What SQLite's integrity checks found, sorted by what it means for the data.
//!
//! `PRAGMA integrity_check` speaks in messages, one per problem and one per row: an index that
//! no longer agrees with its table gives "row N missing from index X" for every row, and damaged
//! pages give lines like "Tree 5 page 9 cell 2: ...". This module reads those messages into
//! [`Finding`]s — one per object and class, counted, with the first few messages kept as
//! examples — and says which [`ProblemClass`] each is:
//!
//! - [`ProblemClass::Storage`]: pages, b-trees, the freelist, overflow chains, the page
//!   accounting. The file itself is damaged; rebuilding indexes cannot repair it.
//! - [`ProblemClass::Index`]: an index disagrees with its table (missing or extra entries,
//!   wrong counts, UNIQUE violations, values that differ). The table's rows are intact;
//!   `REINDEX` rebuilds the index from them. A database written by an older SQLite whose
//!   expression index depends on a function whose output changed (REAL to text since 3.47,
//!   collations) reads this way under ours.
//! - [`ProblemClass::Fts`]: a full-text index (FTS3/4/5) no longer matches its content.
//! - [`ProblemClass::Constraint`]: rows that break their table's declared constraints (NOT
//!   NULL, CHECK, STRICT or affinity types): readable, but not what the schema allows.
//! - [`ProblemClass::Other`]: a message this module does not know.
//!
//! It only reads messages and the schema's names; it never changes a database and runs no
//! check itself (see [`crate::sqlite::db`]).

use std::collections::HashMap;

use rusqlite::Connection;

/// How many problems an integrity check reports before it stops. Messages are tallied as they
/// are read (one [`Finding`] per object), so the limit bounds time, not memory: below it,
/// counts are exact.
pub const PROBLEM_LIMIT: usize = 10_000;

/// Examples of SQLite's messages kept per finding.
const EXAMPLES: usize = 3;

pub use crate::model::check::{Finding, ProblemClass};

/// Every finding of one check, in the order first seen, and whether the check stopped at its
/// limit before it was done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// One per (class, object).
    pub findings: Vec<Finding>,
    /// Problems in all.
    pub total: u64,
    /// The check stopped at its limit: there may be more problems, in more objects.
    pub truncated: bool,
}

impl Findings {
    /// No problem found.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// The most serious class found.
    pub fn worst(&self) -> Option<ProblemClass> {
        self.findings.iter().map(|f| f.class).max()
    }

    /// The objects of the findings of `class`, once each, in order.
    pub fn objects_of(&self, class: ProblemClass) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.findings.iter().filter(|f| f.class == class) {
            let name = f.object.clone().unwrap_or_else(|| f.kind.clone());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Every object named, once each, in order.
    pub fn objects(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in &self.findings {
            let name = f.object.clone().unwrap_or_else(|| f.kind.clone());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// What to do, a clause per class found, the most serious first. Storage damage speaks
    /// alone: problems of other classes beside it may be its consequences.
    pub fn action(&self) -> Option<String> {
        let mut classes: Vec<ProblemClass> = self.findings.iter().map(|f| f.class).collect();
        classes.sort();
        classes.dedup();
        classes.reverse();
        if classes.first() == Some(&ProblemClass::Storage) {
            classes.truncate(1);
        }
        let parts: Vec<String> = classes.iter().map(|&c| c.action(&self.objects_of(c))).collect();
        (!parts.is_empty()).then(|| parts.join("; and "))
    }

    /// One line: every finding, then whether the check stopped early.
    pub fn summary(&self) -> String {
        let mut s = self
            .findings
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        if self.truncated {
            s += &format!(
                "; the check stopped after {} problems, so there may be more",
                self.total
            );
        }
        s
    }

    /// Adds one problem of `class` in an object.
    pub fn add(&mut self, class: ProblemClass, target: Target, message: &str) {
        self.total += 1;
        let found = self
            .findings
            .iter_mut()
            .find(|f| f.class == class && f.kind == target.kind && f.object == target.object);
        let finding = match found {
            Some(f) => f,
            None => {
                self.findings.push(Finding {
                    class,
                    kind: target.kind,
                    object: target.object,
                    table: target.table,
                    count: 0,
                    examples: Vec::new(),
                });
                let last = self.findings.len() - 1;
                &mut self.findings[last]
            }
        };
        finding.count += 1;
        if finding.examples.len() < EXAMPLES {
            finding.examples.push(message.to_string());
        }
    }

    /// Adds one row of `PRAGMA integrity_check` / `quick_check` output (which for the b-tree
    /// part holds many problems, one a line, after a "*** in database main ***" line).
    pub fn add_row(&mut self, row: &str, names: &SchemaNames) {
        if row == "ok" {
            return;
        }
        let mut lines = row.lines();
        if row.starts_with("*** in database") {
            lines.next();
            for line in lines.filter(|l| !l.is_empty()) {
                let (class, target) = classify_btree(line, names);
                self.add(class, target, line);
            }
        } else {
            for line in lines.filter(|l| !l.is_empty()) {
                let (class, target) = classify_row(line, names);
                self.add(class, target, line);
            }
        }
    }

    /// Adds the problems a virtual table's own integrity method reported (or the error its
    /// check failed with): full-text tables' as [`ProblemClass::Fts`], others' as
    /// [`ProblemClass::Other`].
    pub fn add_vtab(&mut self, table: &str, module: Option<&str>, message: &str) {
        let fts = module.is_some_and(|m| m.starts_with("fts"));
        let (class, kind) = if fts {
            (ProblemClass::Fts, "full-text table")
        } else {
            (ProblemClass::Other, "virtual table")
        };
        self.add(
            class,
            Target {
                kind: kind.into(),
                object: Some(table.to_string()),
                table: None,
            },
            message,
        );
    }

    /// Adds the error a check failed with instead of reporting rows: SQLite's "database disk
    /// image is malformed" (and "not a database") is storage damage; anything else is not
    /// classified.
    pub fn add_error(&mut self, err: &rusqlite::Error) {
        let class = if crate::error::is_corruption(err) {
            ProblemClass::Storage
        } else {
            ProblemClass::Other
        };
        self.add(class, Target::whole("database"), &err.to_string());
    }
}

/// What a problem is in: an object of the schema, or a part of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// See [`Finding::kind`].
    pub kind: String,
    /// See [`Finding::object`].
    pub object: Option<String>,
    /// See [`Finding::table`].
    pub table: Option<String>,
}

impl Target {
    fn whole(kind: &str) -> Target {
        Target {
            kind: kind.into(),
            object: None,
            table: None,
        }
    }
}

/// The names in a database's schema that messages refer to: b-tree root pages, indexes with
/// their tables, table names. Empty when the schema cannot be read (a damaged file): messages
/// are then classified by their text alone.
#[derive(Debug, Clone, Default)]
pub struct SchemaNames {
    /// Root page → (type, name, table).
    roots: HashMap<i64, (String, String, String)>,
    /// Index name → its table.
    indexes: HashMap<String, String>,
    /// Table names, longest first (to split "table.column" where either holds a dot).
    tables: Vec<String>,
}

impl SchemaNames {
    /// Reads the names from `conn`'s main schema; empty if it cannot be read.
    pub fn read(conn: &Connection) -> SchemaNames {
        let mut names = SchemaNames::default();
        let rows = conn
            .prepare("SELECT type, name, tbl_name, coalesce(rootpage, 0) FROM main.sqlite_schema")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            });
        // The schema table itself is b-tree 1.
        names.roots.insert(
            1,
            ("table".into(), "sqlite_schema".into(), "sqlite_schema".into()),
        );
        let Ok(rows) = rows else { return names };
        for (kind, name, table, root) in rows {
            if kind == "index" {
                names.indexes.insert(name.clone(), table.clone());
            }
            if kind == "table" {
                names.tables.push(name.clone());
            }
            if root > 0 {
                names.roots.insert(root, (kind, name, table));
            }
        }
        names.tables.sort_by_key(|t| std::cmp::Reverse(t.len()));
        names
    }

    fn index(&self, name: &str) -> Target {
        Target {
            kind: "index".into(),
            object: Some(name.to_string()),
            table: self.indexes.get(name).cloned(),
        }
    }

    fn table(&self, name: &str) -> Target {
        Target {
            kind: "table".into(),
            object: Some(name.to_string()),
            table: None,
        }
    }

    /// "t.c" → the table t (a known table name is matched first, so dots in names are safe).
    fn table_of_column(&self, qualified: &str) -> Target {
        let known = self.tables.iter().find(|t| {
            qualified.len() > t.len()
                && qualified.starts_with(t.as_str())
                && qualified[t.len()..].starts_with('.')
        });
        let name = match known {
            Some(t) => t.clone(),
            None => qualified.split('.').next().unwrap_or(qualified).to_string(),
        };
        self.table(&name)
    }

    fn root(&self, page: i64) -> Target {
        match self.roots.get(&page) {
            Some((kind, name, table)) if kind == "index" => Target {
                kind: "index".into(),
                object: Some(name.clone()),
                table: Some(table.clone()),
            },
            Some((kind, name, _)) => Target {
                kind: kind.clone(),
                object: Some(name.clone()),
                table: None,
            },
            None => Target {
                kind: format!("b-tree at page {page}"),
                object: None,
                table: None,
            },
        }
    }
}

/// A line of the b-tree check: always storage damage; "Tree N page ..." names the b-tree whose
/// root is page N.
fn classify_btree(line: &str, names: &SchemaNames) -> (ProblemClass, Target) {
    let target = if let Some(rest) = line.strip_prefix("Tree ") {
        let root: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        match root.parse::<i64>() {
            Ok(page) => names.root(page),
            Err(_) => Target::whole("pages"),
        }
    } else if line.starts_with("Freelist: ") {
        Target::whole("freelist")
    } else {
        // "Page N: never used", "max rootpage (..) disagrees with header", "Failed to read
        // ptrmap key=..", "Fragmentation of .. bytes reported as .. on page N", ...
        Target::whole("pages")
    };
    (ProblemClass::Storage, target)
}

/// A row of the per-table part of the check (indexes, constraints) or a lone message.
fn classify_row(line: &str, names: &SchemaNames) -> (ProblemClass, Target) {
    let index = |name: &str| (ProblemClass::Index, names.index(name));
    // Index entries against their table rows.
    if let Some(at) = line.find(" missing from index ") {
        if line.starts_with("row ") {
            return index(&line[at + " missing from index ".len()..]);
        }
    }
    for prefix in ["wrong # of entries in index ", "non-unique entry in index "] {
        if let Some(name) = line.strip_prefix(prefix) {
            return index(name);
        }
    }
    if line.starts_with("rowid not at end-of-record for row ") {
        if let Some(at) = line.find(" of index ") {
            return index(&line[at + " of index ".len()..]);
        }
    }
    if line.starts_with("row ") {
        if let Some(at) = line.find(" values differ from index ") {
            return index(&line[at + " values differ from index ".len()..]);
        }
    }
    if let Some(rest) = line.strip_prefix("index ") {
        if let Some(at) = rest.find(" stores an imprecise floating-point value") {
            return index(&rest[..at]);
        }
    }
    // Rows against their table's declared constraints.
    if let Some(name) = line.strip_prefix("CHECK constraint failed in ") {
        return (ProblemClass::Constraint, names.table(name));
    }
    if let Some(at) = line.find(" value in ") {
        let what = &line[..at];
        let typed = what == "NULL"
            || what == "NUMERIC"
            || what == "TEXT"
            || what
                .strip_prefix("non-")
                .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase()));
        if typed {
            return (
                ProblemClass::Constraint,
                names.table_of_column(&line[at + " value in ".len()..]),
            );
        }
    }
    // A WITHOUT ROWID table's b-tree out of order is the table's storage.
    if let Some(name) = line.strip_prefix("row not in PRIMARY KEY order for ") {
        return (ProblemClass::Storage, names.table(name));
    }
    if line == "database disk image is malformed" || line == "file is not a database" {
        return (ProblemClass::Storage, Target::whole("database"));
    }
    // Full-text tables report through the virtual-table pass of the same check.
    const FTS: &str = "inverted index for FTS";
    if let Some(at) = line.find(FTS) {
        // "malformed inverted index for FTS5 table main.docs", "unable to validate the
        // inverted index for FTS5 table main.docs: ..."
        let table = line[at + FTS.len()..]
            .split_once(" table ")
            .map(|(_, t)| t.split(": ").next().unwrap_or(t))
            .map(|t| t.split_once('.').map(|(_, n)| n).unwrap_or(t).to_string());
        return (
            ProblemClass::Fts,
            Target {
                kind: "full-text table".into(),
                object: table,
                table: None,
            },
        );
    }
    (ProblemClass::Other, Target::whole("database"))
}

impl crate::model::check::Check {
    /// A check that passes when nothing was found and otherwise fails with the findings: their
    /// class, objects and what to do.
    pub fn from_findings(name: impl Into<String>, found: Findings) -> crate::model::check::Check {
        if found.is_empty() {
            return crate::model::check::Check::pass(name, "ok");
        }
        let mut c = crate::model::check::Check::fail(name, found.summary());
        c.class = found.worst();
        c.objects = found.objects();
        c.action = found.action();
        c.truncated = found.truncated;
        c.findings = found.findings;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> SchemaNames {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t(v REAL); CREATE INDEX i ON t(lower(v));
             CREATE TABLE \"a.b\"(\"c.d\" NOT NULL); CREATE INDEX \"my idx\" ON \"a.b\"(\"c.d\");",
        )
        .unwrap();
        SchemaNames::read(&c)
    }

    fn one(row: &str) -> Finding {
        let mut f = Findings::default();
        f.add_row(row, &names());
        assert_eq!(f.findings.len(), 1, "{f:?}");
        f.findings.remove(0)
    }

    #[test]
    fn index_messages_name_the_index_and_its_table() {
        for row in [
            "row 1 missing from index i",
            "wrong # of entries in index i",
            "non-unique entry in index i",
            "rowid not at end-of-record for row 7 of index i",
            "row 3 values differ from index i",
            "index i stores an imprecise floating-point value for row 9",
        ] {
            let f = one(row);
            assert_eq!(f.class, ProblemClass::Index, "{row}");
            assert_eq!(f.object.as_deref(), Some("i"), "{row}");
            assert_eq!(f.table.as_deref(), Some("t"), "{row}");
        }
        assert_eq!(
            one("row 1 missing from index my idx").table.as_deref(),
            Some("a.b")
        );
    }

    #[test]
    fn rows_of_one_index_are_counted_once_with_a_few_examples() {
        let mut f = Findings::default();
        let n = names();
        for r in 1..=50 {
            f.add_row(&format!("row {r} missing from index i"), &n);
        }
        f.add_row("wrong # of entries in index i", &n);
        assert_eq!(f.findings.len(), 1);
        assert_eq!(f.findings[0].count, 51);
        assert_eq!(f.findings[0].examples.len(), EXAMPLES);
        assert_eq!(f.worst(), Some(ProblemClass::Index));
        assert_eq!(f.objects(), ["i"]);
        let s = f.summary();
        assert!(
            s.contains("51 index problems") && s.contains("and 48 more"),
            "{s}"
        );
        assert!(f
            .action()
            .unwrap()
            .contains("the table data is intact; run with --reindex"));
    }

    #[test]
    fn btree_lines_are_storage_by_root_page() {
        let mut f = Findings::default();
        let n = names();
        f.add_row(
            "*** in database main ***\nTree 2 page 2 cell 0: Rowid 5 out of order\nTree 2 page 9: free space corruption\nFreelist: invalid page number 99\nPage 7: never used\nTree 77 page 77: btreeInitPage() returns error code 11",
            &n,
        );
        f.add_row("wrong # of entries in index i", &n);
        let kinds: Vec<(ProblemClass, String, Option<String>, u64)> = f
            .findings
            .iter()
            .map(|x| (x.class, x.kind.clone(), x.object.clone(), x.count))
            .collect();
        assert_eq!(
            kinds,
            [
                (ProblemClass::Storage, "table".into(), Some("t".into()), 2),
                (ProblemClass::Storage, "freelist".into(), None, 1),
                (ProblemClass::Storage, "pages".into(), None, 1),
                (ProblemClass::Storage, "b-tree at page 77".into(), None, 1),
                (ProblemClass::Index, "index".into(), Some("i".into()), 1),
            ]
        );
        assert_eq!(f.worst(), Some(ProblemClass::Storage));
        let action = f.action().unwrap();
        assert!(action.starts_with("the file's pages are damaged"), "{action}");
    }

    #[test]
    fn constraint_fts_and_unknown_messages() {
        let c = one("NULL value in a.b.c.d");
        assert_eq!(
            (c.class, c.object.as_deref()),
            (ProblemClass::Constraint, Some("a.b"))
        );
        assert_eq!(one("non-INTEGER value in t.v").class, ProblemClass::Constraint);
        assert_eq!(one("CHECK constraint failed in t").object.as_deref(), Some("t"));
        let fts = one("malformed inverted index for FTS5 table main.docs");
        assert_eq!(
            (fts.class, fts.object.as_deref()),
            (ProblemClass::Fts, Some("docs"))
        );
        let fts = one("unable to validate the inverted index for FTS5 table main.docs: database disk image is malformed");
        assert_eq!(fts.object.as_deref(), Some("docs"));
        assert_eq!(
            one("database disk image is malformed").class,
            ProblemClass::Storage
        );
        assert_eq!(one("something new").class, ProblemClass::Other);
        assert_eq!(
            one("row not in PRIMARY KEY order for t").class,
            ProblemClass::Storage
        );
    }
}
