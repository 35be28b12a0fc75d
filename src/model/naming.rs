//! Names: object references as users write them (a local path, `s3://bucket/key` or
//! `mem://bucket/key`) and which kind of place they name ([`Scheme`]), the
//! object names litevault gives (`<name>-<YYYYMMDDTHHMMSSZ>[-N]<ext>`), made, told apart and
//! parsed, and the times they carry.

use std::path::Path;

use time::{Date, Month, PrimitiveDateTime, Time};

/// The file-name suffix of an encrypted backup (`app-<stamp>.tar.zst.age`).
pub const AGE_EXTENSION: &str = ".age";

/// Prefix of every temp file and directory litevault creates, so leftovers are recognisable.
pub const TEMP_PREFIX: &str = ".litevault-";

/// Which kind of place a location or object reference names, told by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A path on this machine: anything that starts with no scheme below.
    Local,
    /// `s3://bucket/prefix`: an S3-compatible bucket.
    S3,
    /// `mem://bucket/prefix`: a bucket in this process's memory ([`crate::location::memory`]).
    Memory,
}

impl Scheme {
    /// The scheme of the reference `s`.
    pub fn of_str(s: &str) -> Scheme {
        if s.starts_with("s3://") {
            Scheme::S3
        } else if s.starts_with("mem://") {
            Scheme::Memory
        } else {
            Scheme::Local
        }
    }

    /// The scheme of the reference `path` (a path that is not UTF-8 is local).
    pub fn of(path: &Path) -> Scheme {
        path.to_str().map_or(Scheme::Local, Scheme::of_str)
    }

    /// What references of this scheme start with (`s3://`, `mem://`; empty for local paths).
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Local => "",
            Scheme::S3 => "s3://",
            Scheme::Memory => "mem://",
        }
    }
}

/// Whether `path` names an object or prefix in a bucket (`s3://...` or `mem://...`): not a path
/// on this machine.
pub fn is_remote(path: &Path) -> bool {
    Scheme::of(path) != Scheme::Local
}

/// A bucket prefix as locations keep it: without leading or trailing `/`, then with one `/`
/// at its end ("" for the bucket's top). `None` for a prefix with an empty, `.` or `..` part.
pub fn object_prefix(prefix: &str) -> Option<String> {
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return None;
    }
    Some(if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    })
}

/// Whether a file name looks like a litevault archive (by extension).
pub fn is_archive_name(name: &str) -> bool {
    let name = name.strip_suffix(AGE_EXTENSION).unwrap_or(name);
    !name.starts_with(TEMP_PREFIX)
        && [".tar.zst", ".tar.gz", ".tgz", ".tar"]
            .iter()
            .any(|e| name.ends_with(e))
}

/// Whether a file name looks like an SQL dump (by extension).
pub fn is_dump_name(name: &str) -> bool {
    let name = name.strip_suffix(AGE_EXTENSION).unwrap_or(name);
    !name.starts_with(TEMP_PREFIX) && [".sql", ".sql.zst", ".sql.gz"].iter().any(|e| name.ends_with(e))
}

/// Whether `name` is one of the kinds of objects litevault writes (archive or SQL dump).
pub fn is_backup_name(name: &str) -> bool {
    is_archive_name(name) || is_dump_name(name)
}

/// `name` with `-2`, `-3`, ... before its extension (`.tar...` or `.sql...`).
pub(crate) fn numbered_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.find(".tar").or_else(|| name.rfind(".sql")) {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    (2u32..).map(move |n| format!("{stem}-{n}{ext}"))
}

/// The `-N` a name got when its stamp was taken (`app-<stamp>-2.tar.zst` is 2, no suffix 1):
/// backups made in the same second are in this order.
pub fn sequence(name: &str) -> u32 {
    let Some(dot) = name.find(".tar").or_else(|| name.rfind(".sql")) else {
        return 1;
    };
    let stem = &name[..dot];
    match stem.rsplit_once('-') {
        Some((before, n))
            if before.ends_with('Z') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            n.parse().unwrap_or(1)
        }
        _ => 1,
    }
}

/// Parses a backup object name made by litevault: `<stem>-<YYYYMMDDTHHMMSSZ>[-N]<ext>`, where ext
/// starts at the first '.' after the stamp (".tar.zst", ".sql.gz", ".tar.zst.age", ...). Returns
/// (group, created unix secs).
///
/// The group is everything before `-<stamp>` (so "app-pre-restore-20261201T101500Z.tar.zst" has
/// group "app-pre-restore", and "my-app-20261201T101500Z-2.sql.zst" has group "my-app"). The stamp
/// is the LAST `-<YYYYMMDDTHHMMSSZ>` in the name that is followed by an optional `-<digits>` and
/// then an extension; it must be a real UTC date and time. None for a name that does not match
/// (e.g. "pre-migration.tar.zst"), or whose group would be empty.
pub fn parse_backup_name(name: &str) -> Option<(String, i64)> {
    let bytes = name.as_bytes();
    (1..bytes.len())
        .rev()
        .filter(|&i| bytes[i] == b'-')
        .find_map(|i| {
            let created = parse_stamp(bytes.get(i + 1..i + 17)?)?;
            // The stamp is ASCII, so `i` and `i + 17` are on char boundaries.
            has_backup_tail(bytes.get(i + 17..)?).then(|| (name[..i].to_string(), created))
        })
}

/// Whether `tail` (what follows the stamp) is `[-<digits>].<something>`.
fn has_backup_tail(tail: &[u8]) -> bool {
    let ext = match tail.strip_prefix(b"-") {
        Some(rest) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            &rest[digits..]
        }
        None => tail,
    };
    ext.len() > 1 && ext[0] == b'.'
}

/// `YYYYMMDDTHHMMSSZ` (16 bytes) as unix seconds, if it is a real UTC date and time.
fn parse_stamp(s: &[u8]) -> Option<i64> {
    if s.len() != 16 || s[8] != b'T' || s[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        s[from..to].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4, 6)?).ok()?).ok()?;
    let day = u8::try_from(num(6, 8)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let [hour, minute, second] = [num(9, 11)?, num(11, 13)?, num(13, 15)?].map(|v| u8::try_from(v).ok());
    let time = Time::from_hms(hour?, minute?, second?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp())
}

/// `secs` since the epoch as RFC 3339 UTC (`2026-12-01T10:15:00Z`).
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
