//! Checks and what they find, as data: a named [`Check`] and its [`CheckStatus`], the
//! [`ProblemClass`] of a failed one and its [`Finding`]s. Reports (verify, restore, merge),
//! errors and the daemon's answers carry these; the checks themselves run in [`crate::sqlite::db`], and
//! [`crate::sqlite::findings`] reads SQLite's messages into findings. No I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of problem a check found. Ordered from the least to the most serious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemClass {
    /// An index disagrees with its table; the table's rows are intact and `REINDEX` (litevault's
    /// `--reindex`) rebuilds the index from them.
    Index,
    /// A full-text index no longer matches its content.
    Fts,
    /// Rows break their table's declared constraints (NOT NULL, CHECK, column types).
    Constraint,
    /// A message this version of litevault does not recognise.
    Other,
    /// The file's pages or b-trees are damaged.
    Storage,
}

impl ProblemClass {
    /// The class's name as reports spell it ("storage", "index", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemClass::Index => "index",
            ProblemClass::Fts => "fts",
            ProblemClass::Constraint => "constraint",
            ProblemClass::Other => "other",
            ProblemClass::Storage => "storage",
        }
    }

    /// What to do about problems of this class, in a sentence naming the `objects` concerned.
    pub fn action(self, objects: &[String]) -> String {
        let names = objects.join(", ");
        match self {
            ProblemClass::Index => format!(
                "the table data is intact; run with --reindex to rebuild {names} from it (in a \
                 database in place, REINDEX does it when run by SQLite {}, the version that checked it)",
                rusqlite::version()
            ),
            ProblemClass::Fts => {
                let t = objects
                    .first()
                    .map(|t| super::sql::quote_ident(t))
                    .unwrap_or_else(|| "t".into());
                format!(
                    "the full-text index of {names} no longer matches its content: --quick restores the \
                     database as it is; then rebuild the index with INSERT INTO {t}({t}) VALUES('rebuild')"
                )
            }
            ProblemClass::Constraint => format!(
                "rows of {names} break their table's declared constraints (NOT NULL, CHECK, column \
                 types); they are readable: correct them in the database they came from"
            ),
            ProblemClass::Other => "see SQLite's message".to_string(),
            ProblemClass::Storage => "the file's pages are damaged and --reindex cannot repair that: use \
                 another backup, or salvage the rows with sqlite3's .recover"
                .to_string(),
        }
    }

    /// A short hint for an error that refuses a backup with problems of this class.
    pub fn hint(self) -> &'static str {
        match self {
            ProblemClass::Index => {
                "the table data is intact; run with --reindex to rebuild the disputed indexes in the \
                 copy being restored (--reindex all rebuilds every index)"
            }
            ProblemClass::Fts => {
                "a full-text index no longer matches its content: --quick restores the database as it \
                 is; then rebuild the index with INSERT INTO t(t) VALUES('rebuild')"
            }
            ProblemClass::Constraint => {
                "rows break their table's declared constraints; correct them in the database they came \
                 from and take a new backup"
            }
            ProblemClass::Other => "see SQLite's message; `litevault verify` reports every check",
            ProblemClass::Storage => {
                "the backup holds a damaged database: use another backup, or salvage its rows with \
                 sqlite3's .recover (--reindex rebuilds indexes only; it cannot repair storage)"
            }
        }
    }
}

impl fmt::Display for ProblemClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The problems a check found in one object, of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of problem.
    pub class: ProblemClass,
    /// What the object is: "index", "table", "full-text table", "virtual table",
    /// "freelist", "pages" (the page accounting) or "database" (the file as a whole).
    pub kind: String,
    /// The schema object's name; `None` for the freelist, the pages and the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The table an index belongs to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// How many problems SQLite reported for it.
    pub count: u64,
    /// The first few of SQLite's messages, verbatim.
    pub examples: Vec<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.object, &self.table) {
            (Some(o), Some(t)) => write!(f, "{} {o:?} on table {t:?}", self.kind)?,
            (Some(o), None) => write!(f, "{} {o:?}", self.kind)?,
            (None, _) => write!(f, "{}", self.kind)?,
        }
        let plural = if self.count == 1 { "" } else { "s" };
        write!(f, ": {} {} problem{plural} (", self.count, self.class)?;
        write!(f, "{}", self.examples.join(", "))?;
        let more = self.count.saturating_sub(self.examples.len() as u64);
        if more > 0 {
            write!(f, ", and {more} more")?;
        }
        write!(f, ")")
    }
}

/// Outcome of one named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check ran and found nothing wrong.
    Pass,
    /// The check ran and found a problem.
    Fail,
    /// The check could not run (e.g. a module this build lacks); not a failure.
    Skipped,
}

/// One named check and its outcome, as verify and restore report them.
///
/// A failed integrity or full-text check also says what kind of problem it found
/// ([`ProblemClass`]: storage, index, fts, constraint, other), in which objects, and what to
/// do; those fields are left out of the JSON when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Name, e.g. "integrity_check", "checksum manifest.json", "fts5 integrity docs_fts".
    pub name: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was found, in a line.
    pub detail: String,
    /// The most serious class of problem found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ProblemClass>,
    /// The objects concerned (indexes, tables, full-text tables; "freelist", "pages" or
    /// "database" for problems outside any object), once each. For the `reindex` check: the
    /// indexes rebuilt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The problems, one entry per object and class, counted. For the `reindex` check: what
    /// the first check had found in the indexes it rebuilt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// The check stopped at its limit (`crate::sqlite::findings::PROBLEM_LIMIT` problems): there
    /// may be more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Check {
    pub(crate) fn new(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            class: None,
            objects: Vec::new(),
            action: None,
            findings: Vec::new(),
            truncated: false,
        }
    }
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, CheckStatus::Pass, detail)
    }
    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, CheckStatus::Fail, detail)
    }
    /// A check that could not run.
    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, CheckStatus::Skipped, detail)
    }
    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Fail
    }
}
