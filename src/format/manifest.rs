//! The archive manifest: what a backup holds and how it was made.
//!
//! `manifest.json` is the first entry of every archive so that listing reads only an archive's
//! head. This module owns its fields, their JSON form and the checks applied when one is read
//! from an untrusted archive (format tag, kind, sane sizes). It never touches files.

use serde::{Deserialize, Serialize};

use crate::model::compression::Compression;
use crate::sqlite::db::DbInfo;
use crate::sqlite::snapshot::Method;

/// Longest chain `chain::compose` follows.
pub const MAX_DEPTH: u32 = 10_000;

/// The format tag of SQL dumps, and of archives without page hashes (gzip, uncompressed).
pub const FORMAT: &str = "litevault/1";

/// The format tag of archives that hold a page-hash table (`pages.hashes`, every zstd archive)
/// and may be incremental: litevault 0.1 cannot read them, and says so by this tag.
pub const FORMAT_PAGES: &str = "litevault/2";

/// The format tag of incremental archives whose database is identified by its page-hash table
/// alone: no `snapshot_sha256` (taking one would read every byte a second time); a restore
/// proves the composed database by hashing its pages under the chain's key and comparing the
/// table's SHA-256 with `page_hashes.sha256`. Readers of only [`FORMAT_PAGES`] refuse it by tag.
pub const FORMAT_PAGE_TABLE: &str = "litevault/3";

/// Everything an archive records about its database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// What the archive holds: "full" (a whole database file) or "sql" (an SQL dump).
    pub kind: String,
    /// litevault version that wrote it.
    pub tool_version: String,
    /// When the snapshot was taken, UTC, RFC 3339.
    pub created_at: String,
    /// The instant the snapshot's state was fixed (its read transaction began, or its copy
    /// ended), UTC, RFC 3339 with nanoseconds: orders backups made in the same second (older
    /// archives have none; then their names' `-N` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<String>,
    /// Absolute path of the source database.
    pub source: String,
    /// Host name of the machine that made it.
    pub host: String,
    /// SQLite library version used.
    pub sqlite_version: String,
    /// How the snapshot was taken.
    pub method: Method,
    /// Compression of the archive.
    pub compression: Compression,
    /// Compression level used (none for uncompressed archives).
    pub compression_level: Option<i32>,
    /// Size in bytes of `database.sqlite`.
    pub db_size: u64,
    /// The source's journal mode when the snapshot was taken.
    pub source_journal_mode: String,
    /// How many times the snapshot restarted because of concurrent writes.
    pub snapshot_restarts: u32,
    /// Result of SQLite's `quick_check` on the snapshot: "ok" or the problems found.
    pub quick_check: String,
    /// True when the snapshot failed `quick_check` and was archived anyway (`--allow-corrupt`).
    pub corrupt: bool,
    /// Rows `PRAGMA foreign_key_check` reported in the snapshot (data as the application left it).
    pub foreign_key_violations: u64,
    /// Header state and tables of the database.
    #[serde(flatten)]
    pub db: DbInfo,
    /// SHA-256 of the whole database this archive restores to (for an incremental archive,
    /// the database its chain composes to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_sha256: Option<String>,
    /// The archive's table of page hashes (archives made by litevault 0.1 have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_hashes: Option<crate::sqlite::pageset::PageHashes>,
    /// For an incremental archive: the archive it builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// Links between this archive and its chain's full backup (0 for a full backup).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chain_depth: u32,
    /// For an incremental archive: how many pages it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_pages: Option<u64>,
    /// Why a backup asked to be incremental is a full one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// zstd archives: the archive's bytes before its last frame (the one holding `SHA256SUMS`):
    /// a stored archive shorter than this was cut short (`list` and `show` say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size: Option<u64>,
    /// The files kept beside the database (`backup --include`), in archive order: each a
    /// `files/<path>` entry after the data entry (none in archives without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::format::files::FileEntry>,
    /// The application's own metadata (`backup --label KEY=VALUE`), by key; none in archives
    /// without them (older readers ignore the field).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::model::labels::Labels,
}

impl Manifest {
    /// A manifest of `kind` ("full", "incremental", "sql") for a database described by `db`,
    /// with nothing else known yet: every other field empty, zero or none, `db_size` from
    /// `db`'s pages. The writers of backups fill in what they learn as they go.
    pub fn new(kind: &str, db: DbInfo) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            kind: kind.into(),
            tool_version: String::new(),
            created_at: String::new(),
            snapshot_at: None,
            source: String::new(),
            host: String::new(),
            sqlite_version: String::new(),
            method: Method::default(),
            compression: Compression::default(),
            compression_level: None,
            db_size: db.page_count * db.page_size as u64,
            source_journal_mode: String::new(),
            snapshot_restarts: 0,
            quick_check: String::new(),
            corrupt: false,
            foreign_key_violations: 0,
            db,
            snapshot_sha256: None,
            page_hashes: None,
            parent: None,
            chain_depth: 0,
            changed_pages: None,
            full_reason: None,
            body_size: None,
            files: Vec::new(),
            labels: Default::default(),
        }
    }
}

impl Manifest {
    /// How long after the start of the second `created` (unix seconds, the second its name
    /// carries) the snapshot was fixed, in nanoseconds, when the manifest records it: the name's
    /// stamp is taken just before the snapshot, which may fall in the next second. 0 when the
    /// manifest has no `snapshot_at` (or one before that second).
    pub fn snapshot_offset_ns(&self, created: i64) -> u64 {
        self.snapshot_at.as_deref().map_or(0, |at| offset_ns(at, created))
    }
}

/// Nanoseconds from the start of second `created` to the RFC 3339 time `at` (0 when `at` is
/// before it or unreadable).
fn offset_ns(at: &str, created: i64) -> u64 {
    match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
        Ok(t) => u64::try_from(t.unix_timestamp_nanos() - i128::from(created) * 1_000_000_000).unwrap_or(0),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod offset_tests {
    /// A snapshot fixed in the second after its name's stamp still counts as later than one
    /// fixed late in the stamp's second.
    #[test]
    fn a_snapshot_in_the_next_second_is_later() {
        let t = 1_796_120_100; // 2026-12-01T10:15:00Z
        let late = super::offset_ns("2026-12-01T10:15:00.900Z", t);
        let next = super::offset_ns("2026-12-01T10:15:01.050Z", t);
        assert_eq!((late, next), (900_000_000, 1_050_000_000));
        assert_eq!(super::offset_ns("2026-12-01T10:14:59.5Z", t), 0);
        assert_eq!(super::offset_ns("garbage", t), 0);
    }
}

/// Now, UTC, RFC 3339 with nanoseconds ([`Manifest::snapshot_at`]).
pub fn precise_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An incremental archive's parent: the newest backup of the same name in the location when
/// the incremental was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's object name (in the same location).
    pub name: String,
    /// SHA-256 of the parent archive's bytes.
    pub archive_sha256: String,
    /// SHA-256 of the parent's `manifest.json`.
    pub manifest_sha256: String,
    /// The parent's creation time.
    pub created_at: String,
}

impl Manifest {
    /// Checks what a reader relies on: the format tag, the kind and a size consistent with the
    /// page size and count. Returns the reason when the manifest cannot be used.
    pub fn validate(&self) -> Result<(), String> {
        if ![FORMAT, FORMAT_PAGES, FORMAT_PAGE_TABLE].contains(&self.format.as_str()) {
            return Err(format!(
                "unsupported format {:?} (this litevault reads {FORMAT} to {FORMAT_PAGE_TABLE}; is it from a newer litevault?)",
                self.format
            ));
        }
        if self.format == FORMAT_PAGE_TABLE
            && (self.kind != "incremental" || self.page_hashes.is_none() || self.snapshot_sha256.is_some())
        {
            return Err(format!(
                "an archive tagged {FORMAT_PAGE_TABLE} that is not an incremental identified by its page hashes"
            ));
        }
        if self.format == FORMAT_PAGES && self.kind == "sql" {
            return Err(format!("an SQL dump tagged {FORMAT_PAGES}"));
        }
        if self.format == FORMAT && (self.kind == "incremental" || self.page_hashes.is_some()) {
            return Err(format!("page hashes in an archive tagged {FORMAT}"));
        }
        if !["full", "sql", "incremental"].contains(&self.kind.as_str()) {
            return Err(format!("unsupported archive kind {:?}", self.kind));
        }
        crate::model::labels::check_all(&self.labels)?;
        let ps = self.db.page_size as u64;
        if self.db.tables.len() > 1_000_000 {
            return Err(format!("{} tables listed", self.db.tables.len()));
        }
        if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
            return Err(format!("invalid page size {ps}"));
        }
        // SQLite's own limit on pages; also keeps every size computed from these in range.
        if self.db.page_count == 0 || self.db.page_count > 4_294_967_294 {
            return Err(format!("invalid page count {}", self.db.page_count));
        }
        if let Some(ph) = &self.page_hashes {
            if ph.count != self.db.page_count {
                return Err(format!(
                    "{} page hashes for {} pages",
                    ph.count, self.db.page_count
                ));
            }
            let table = ph.count.saturating_mul(crate::sqlite::pageset::HASH_LEN as u64);
            if ph.frame.is_some_and(|(start, len)| {
                start.checked_add(len).is_none() || len > table.saturating_add(64 << 10)
            }) {
                return Err("the page-hash frame's byte range does not fit its table".into());
            }
        }
        if self.chain_depth > MAX_DEPTH {
            return Err(format!("chain depth {} is over {}", self.chain_depth, MAX_DEPTH));
        }
        if self.kind == "incremental" {
            let p = self
                .parent
                .as_ref()
                .ok_or("an incremental archive without a parent")?;
            if p.name.is_empty() || p.name.contains('/') || p.name.contains('\\') {
                return Err(format!("invalid parent name {:?}", p.name));
            }
            if self.changed_pages.is_none_or(|n| n > self.db.page_count) || self.chain_depth == 0 {
                return Err("incremental archive without a valid page count or chain depth".into());
            }
            if self.snapshot_sha256.is_none() && self.format != FORMAT_PAGE_TABLE {
                return Err("incremental archive without the snapshot's SHA-256".into());
            }
        }
        if !self.files.is_empty() && self.kind == "sql" {
            return Err("files listed in an SQL dump's manifest".into());
        }
        crate::format::files::check_entries(&self.files)?;
        if Some(self.db_size) != self.db.page_count.checked_mul(ps) {
            return Err(format!(
                "database size {} does not match {} pages of {} bytes",
                self.db_size, self.db.page_count, ps
            ));
        }
        Ok(())
    }

    /// Sum of the recorded row counts of ordinary tables (`u64::MAX` if that overflows: the
    /// counts of a manifest read from an archive are untrusted).
    pub fn total_rows(&self) -> u64 {
        self.db
            .tables
            .iter()
            .filter(|t| t.kind == "table")
            .filter_map(|t| t.rows)
            .fold(0u64, u64::saturating_add)
    }
}

/// Compares the header state a manifest records with a database's. A database rebuilt from an
/// SQL dump (`logical`) has its own page count, so that one is not compared.
pub(crate) fn compare_header(m: &Manifest, info: &DbInfo, logical: bool) -> crate::model::check::Check {
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, recorded: String, found: String| {
        if recorded != found {
            diffs.push(format!("{what}: manifest {recorded}, database {found}"));
        }
    };
    cmp(
        "page_size",
        m.db.page_size.to_string(),
        info.page_size.to_string(),
    );
    if !logical {
        cmp(
            "page_count",
            m.db.page_count.to_string(),
            info.page_count.to_string(),
        );
    }
    cmp("encoding", m.db.encoding.clone(), info.encoding.clone());
    cmp(
        "user_version",
        m.db.user_version.to_string(),
        info.user_version.to_string(),
    );
    cmp(
        "application_id",
        m.db.application_id.to_string(),
        info.application_id.to_string(),
    );
    cmp("auto_vacuum", m.db.auto_vacuum.clone(), info.auto_vacuum.clone());
    cmp(
        "journal_mode",
        m.db.journal_mode.clone(),
        info.journal_mode.clone(),
    );
    if !diffs.is_empty() {
        return crate::model::check::Check::fail("manifest header", diffs.join("; "));
    }
    crate::model::check::Check::pass(
        "manifest header",
        if logical {
            format!(
                "page_size {}, {}, user_version {}, application_id {}",
                info.page_size, info.encoding, info.user_version, info.application_id
            )
        } else {
            format!(
                "page_size {}, {} pages, user_version {}",
                info.page_size, info.page_count, info.user_version
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::sqlite::db::TableEntry;

    // Found by the `manifest` fuzz target: `sum()` panicked ("attempt to add with overflow")
    // in a build with overflow checks, and wrapped around in a release build.
    #[test]
    fn total_rows_of_untrusted_counts_saturates() {
        let mut m = crate::format::dump::check::foreign_manifest(
            std::path::Path::new("/nonexistent/x.sql"),
            crate::Compression::None,
        );
        for (name, rows) in [("a", u64::MAX), ("b", 2), ("v", 7)] {
            m.db.tables.push(TableEntry {
                name: name.into(),
                kind: if name == "v" { "virtual" } else { "table" }.into(),
                rows: Some(rows),
            });
        }
        assert_eq!(m.total_rows(), u64::MAX);
        m.db.tables[0].rows = Some(40);
        assert_eq!(m.total_rows(), 42);
    }
}
