//! The bodies the API accepts, parsed and checked without touching anything: what the request
//! fuzz target drives. A request names a database of the configuration and, for a restore, an
//! archive by its plain object name inside that database's location — never a path — and one
//! of that database's own backups ([`check_archive_of`]), never another database's.

use serde::Deserialize;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// `POST /api/backup/create` and `POST /api/backup/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRequest {
    /// The database's name in the configuration.
    pub database: String,
    /// For a backup: labels recorded in its manifest besides the configuration's (the same
    /// key wins over the configuration's value).
    #[serde(default)]
    pub labels: crate::model::labels::Labels,
}

/// `POST /api/backup/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The database's name in the configuration (the restore target is its configured path).
    pub database: String,
    /// An archive's object name in the database's location.
    #[serde(default)]
    pub archive: Option<String>,
    /// Restore the newest backup instead of a named one.
    #[serde(default)]
    pub latest: bool,
    /// With `latest`: the newest backup created at or before this time (RFC 3339, "2h ago").
    #[serde(default)]
    pub at: Option<String>,
    /// Replace the existing database (a safety archive of it is written first).
    #[serde(default)]
    pub overwrite: bool,
    /// Run `quick_check` instead of `integrity_check` before the swap.
    #[serde(default)]
    pub quick: bool,
}

/// What a restore request asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// This object of the location.
    Named(String),
    /// The newest backup, at or before this time when given (seconds since the epoch).
    Latest(Option<i64>),
}

/// Parses a create or verify body.
pub fn parse_database_request(body: &[u8]) -> Result<DatabaseRequest, String> {
    let r: DatabaseRequest = parse_json(body)?;
    check_database_name(&r.database)?;
    crate::model::labels::check_all(&r.labels).map_err(|m| format!("labels: {m}"))?;
    Ok(r)
}

/// Parses and checks a restore body.
pub fn parse_restore_request(body: &[u8]) -> Result<(RestoreRequest, Which), String> {
    let r: RestoreRequest = parse_json(body)?;
    check_database_name(&r.database)?;
    let which = match (&r.archive, r.latest) {
        (Some(_), true) => return Err("give either \"archive\" or \"latest\": true, not both".into()),
        (None, false) => return Err("give \"archive\": NAME or \"latest\": true".into()),
        (Some(name), false) => {
            if r.at.is_some() {
                return Err("\"at\" goes with \"latest\": true".into());
            }
            check_archive_name(name)?;
            Which::Named(name.clone())
        }
        (None, true) => Which::Latest(match &r.at {
            Some(t) => Some(crate::ops::chain::parse_at(t).map_err(|m| format!("\"at\": {m}"))?),
            None => None,
        }),
    };
    Ok((r, which))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.len() > MAX_BODY {
        return Err(format!("the body is larger than {MAX_BODY} bytes"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty: send a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("the body is not the JSON object expected: {e}"))
}

fn check_database_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("\"database\" must name a configured database".into());
    }
    Ok(())
}

/// An archive in a request is a plain object name that litevault gives backups: no directory
/// part, no `..`, no control characters, a known extension.
pub fn check_archive_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(format!(
            "\"archive\": {name:?} is not an archive name (a name from GET /api/backups, without any path)"
        ));
    }
    if !crate::location::is_backup_name(name) {
        return Err(format!(
            "\"archive\": {name:?} is not an archive or SQL dump name (.tar.zst, .sql.zst, ...)"
        ));
    }
    Ok(())
}

/// Whether backups of group `group` (the part of an object name before its stamp) are copies
/// of database `name`: its own backups, and the safety archives made of it before a restore or
/// a merge replaced it (`<name>-pre-restore-...`, `<name>-pre-merge-...`), which hold its
/// earlier content and are what undoes a restore.
pub fn is_group_of(name: &str, group: &str) -> bool {
    group == name
        || group
            .strip_prefix(name)
            .is_some_and(|rest| rest == "-pre-restore" || rest == "-pre-merge")
}

/// An archive in a restore of database `name` must be one of its backups ([`is_group_of`]):
/// another database's archive in the same location would replace it with that database.
pub fn check_archive_of(name: &str, archive: &str) -> Result<(), String> {
    match crate::ops::prune::parse_backup_name(archive) {
        Some((group, _)) if is_group_of(name, &group) => Ok(()),
        Some((group, _)) => Err(format!(
            "\"archive\": {archive:?} is a backup of {group:?}, not of database {name:?} (GET /api/backups?database={name} lists its backups)"
        )),
        None => Err(format!(
            "\"archive\": {archive:?} is not named as a backup of database {name:?} ({name}-<stamp>...; GET /api/backups?database={name} lists them)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_requests() {
        let ok = |b: &str| parse_restore_request(b.as_bytes()).unwrap().1;
        let bad = |b: &str| parse_restore_request(b.as_bytes()).unwrap_err();
        assert_eq!(
            ok(r#"{"database":"app","archive":"app-20261201T101500Z.tar.zst"}"#),
            Which::Named("app-20261201T101500Z.tar.zst".into())
        );
        assert_eq!(ok(r#"{"database":"app","latest":true}"#), Which::Latest(None));
        assert_eq!(
            ok(r#"{"database":"app","latest":true,"at":"2026-12-01T10:00:00Z"}"#),
            Which::Latest(Some(1_796_119_200))
        );
        for (body, why) in [
            (
                r#"{"database":"app","archive":"../app-20261201T101500Z.tar.zst"}"#,
                "not an archive name",
            ),
            (
                r#"{"database":"app","archive":"/etc/passwd"}"#,
                "not an archive name",
            ),
            (r#"{"database":"app","archive":".."}"#, "not an archive name"),
            (
                r#"{"database":"app","archive":"notes.txt"}"#,
                "not an archive or SQL dump",
            ),
            (r#"{"database":"app"}"#, "give \"archive\""),
            (
                r#"{"database":"app","latest":true,"archive":"a-20261201T101500Z.tar.zst"}"#,
                "not both",
            ),
            (
                r#"{"database":"app","latest":true,"at":"yesterday-ish"}"#,
                "\"at\"",
            ),
            (r#"{"database":"app","latest":true,"path":"/x"}"#, "unknown field"),
            ("", "empty"),
            ("[1]", "JSON object"),
        ] {
            assert!(bad(body).contains(why), "{body}: {}", bad(body));
        }
        assert!(parse_database_request(&vec![b' '; MAX_BODY + 1])
            .unwrap_err()
            .contains("larger"));
    }

    #[test]
    fn an_archive_must_be_the_databases_own() {
        for ok in [
            "app-20261201T101500Z.tar.zst",
            "app-20261201T101500Z-2.sql.zst",
            "app-pre-restore-20261201T101500Z.tar.zst",
            "app-pre-merge-20261201T101500Z.tar.zst.age",
        ] {
            assert_eq!(check_archive_of("app", ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("other-20261201T101500Z.tar.zst", "a backup of \"other\""),
            (
                "other-pre-restore-20261201T101500Z.tar.zst",
                "a backup of \"other-pre-restore\"",
            ),
            ("app2-20261201T101500Z.tar.zst", "a backup of \"app2\""),
            ("app-pre-x-20261201T101500Z.tar.zst", "a backup of \"app-pre-x\""),
            ("pre-migration.tar.zst", "not named as a backup"),
        ] {
            let e = check_archive_of("app", bad).unwrap_err();
            assert!(e.contains(why) && e.contains("not"), "{bad}: {e}");
        }
    }
}
