//! The daemon's configuration: the TOML file `litevault serve --config` reads, checked whole
//! before anything starts (and before a reload replaces the running configuration).
//!
//! Every mistake is reported with the file, the database it concerns and what to write instead;
//! [`Config::load`] either returns a configuration that can run or an error, never a half-read one.
//!
//! An entry whose `path` names several files (`path = "/srv/tenants/*.db"`, `*` and `?` in the
//! file name) is a pattern: every SQLite database file that matches is a database of its own,
//! named by the entry's `name` with `{stem}` replaced by the file's name without its extension.
//! [`Config::discover`] finds them (at load, and again whenever the daemon looks: new ones are
//! picked up without a restart).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::ops::backup::Format;
use crate::ops::prune::policy::{parse_duration, Policy};

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";

/// How long a client may take to send a request's head by default, in seconds.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

/// The shortest token accepted (a guessable token is no protection).
pub const MIN_TOKEN_LEN: usize = 16;

/// A configuration that was read and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, when it came from one.
    pub source: Option<PathBuf>,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The bearer token every `/api` and `/metrics` request must carry; `None` only on a
    /// loopback address (the API is then open to every local user, and a warning is logged).
    pub token: Option<Token>,
    /// How many jobs (of different databases) may run at once.
    pub max_parallel: usize,
    /// How long a shutdown waits for running jobs before it cancels them, in seconds.
    pub shutdown_grace_secs: u64,
    /// How long a client may take to send a request's head, in seconds (and as long again for
    /// its body); a keep-alive connection idle that long is closed too.
    pub header_timeout_secs: u64,
    /// Where the daemon keeps what it must remember across restarts (the drills' results).
    pub state_dir: PathBuf,
    /// The databases it looks after: those the file names, in its order, then those its
    /// patterns found ([`Config::discover`]), in name order.
    pub databases: Vec<DatabaseConfig>,
    /// The entries whose `path` is a pattern, as templates: `name` holds `{stem}` and `path`
    /// the pattern.
    pub patterns: Vec<DatabaseConfig>,
    /// How often the daemon looks for new files matching the patterns (`discover_every`,
    /// 10 s by default).
    pub discover_every: std::time::Duration,
    /// Keys to read encrypted backups with (drills, retention, incremental parents, restores):
    /// `identity_file` and `passphrase_file`, in the [`Config::context`] every job and
    /// request runs with (a reload replaces them for what starts afterwards).
    pub identities: crate::format::crypt::Identities,
}

/// A bearer token (its text is never printed: `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub(crate) String);

impl Token {
    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// One database the daemon backs up.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Its name: the API's `database`, the metrics' label and the backups' name in the location.
    pub name: String,
    /// The database file (absolute).
    pub path: PathBuf,
    /// Where its backups go: a directory or `s3://bucket/prefix`.
    pub location: PathBuf,
    /// When backups run.
    pub schedule: Schedule,
    /// An archive of the database file (incremental or not, with the files of `include`:
    /// directories taken from the configuration file's directory when relative) or an SQL dump.
    pub format: Format,
    /// Retention, applied after each successful backup (none: keep everything).
    pub keep: Option<Policy>,
    /// When restore drills run (none: never).
    pub verify: Option<Schedule>,
    /// Encrypt its backups and the safety archives of its restores (`encrypt_to`,
    /// `encrypt_to_file`, or `passphrase_file`).
    pub encrypt: Option<crate::format::crypt::Encryption>,
    /// Labels recorded in each backup's manifest (`labels = { app_version = "2.3.1" }`).
    pub labels: crate::model::labels::Labels,
    /// Commands run after its jobs (`after_backup`, `after_restore`, `on_failure`).
    pub hooks: Hooks,
    /// Continuous replication to `location` (`replicate = "1s"`: how often what was committed
    /// is shipped); none: backups only.
    pub replicate: Option<std::time::Duration>,
    /// `/healthz` fails once a transaction has waited this long to be shipped
    /// (`replicate_max_lag`, 60 s by default).
    pub replicate_max_lag: std::time::Duration,
    /// The pattern this database was found by (none when the file names it).
    pub pattern: Option<PathBuf>,
}

/// Commands the daemon runs after a database's jobs, each an argument array (no shell).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// After each successful backup.
    pub after_backup: Option<crate::ops::hook::Hook>,
    /// After each successful restore (through the API).
    pub after_restore: Option<crate::ops::hook::Hook>,
    /// After any job that failed (a backup, a drill, a restore; not one cancelled by a
    /// shutdown).
    pub on_failure: Option<crate::ops::hook::Hook>,
}

/// When something runs: every fixed interval, or at the times a cron expression names (UTC).
#[derive(Debug, Clone)]
pub enum Schedule {
    /// `every 15m`: this many seconds after the previous run started.
    Every {
        /// The interval in seconds.
        secs: u64,
        /// As written.
        text: String,
    },
    /// A five-field cron expression (`0 */6 * * *`), evaluated in UTC.
    Cron {
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// As written.
        text: String,
    },
}

impl Schedule {
    /// Parses `every <duration>` (units s, m, h, d, w: `every 15m`, `every 1h30m`) or a cron
    /// expression (5 fields, or `@hourly`, `@daily`...).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            let secs = parse_duration(rest.trim())?;
            if secs == 0 {
                return Err(format!("{text:?}: the interval must be longer than 0 s"));
            }
            return Ok(Schedule::Every {
                secs,
                text: t.to_string(),
            });
        }
        if t.split_whitespace().count() != 5 && !t.starts_with('@') {
            return Err(format!(
                "{text:?} is neither \"every <duration>\" (e.g. \"every 15m\") nor a cron expression of 5 fields (e.g. \"0 */6 * * *\")"
            ));
        }
        let cron =
            croner::Cron::from_str(t).map_err(|e| format!("{text:?}: not a valid cron expression: {e}"))?;
        // An expression that never fires (e.g. 30 February) would leave the database unbacked-up.
        let now = chrono::Utc::now();
        cron.find_next_occurrence(&now, false)
            .map_err(|e| format!("{text:?}: the expression never fires: {e}"))?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            text: t.to_string(),
        })
    }

    /// As written in the file.
    pub fn text(&self) -> &str {
        match self {
            Schedule::Every { text, .. } | Schedule::Cron { text, .. } => text,
        }
    }

    /// The first time (seconds since the epoch) strictly after `after` at which this runs.
    pub fn next_after(&self, after: i64) -> i64 {
        match self {
            Schedule::Every { secs, .. } => after.saturating_add(*secs as i64),
            Schedule::Cron { cron, .. } => {
                let t = chrono::DateTime::from_timestamp(after, 0).unwrap_or_default();
                cron.find_next_occurrence(&t, false)
                    .map(|n| n.timestamp())
                    // Checked when parsed: it fires; a far future keeps a wrong clock harmless.
                    .unwrap_or(i64::MAX / 2)
            }
        }
    }

    /// The interval between two runs around `now`, in seconds (for a cron expression, the gap
    /// between its next two times).
    pub fn interval(&self, now: i64) -> u64 {
        match self {
            Schedule::Every { secs, .. } => *secs,
            Schedule::Cron { .. } => {
                let a = self.next_after(now);
                (self.next_after(a) - a).max(1) as u64
            }
        }
    }
}

/// A configuration error: what is wrong, where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    max_parallel: Option<usize>,
    shutdown_grace: Option<String>,
    header_timeout: Option<String>,
    state_dir: Option<PathBuf>,
    discover_every: Option<String>,
    #[serde(default)]
    identity_file: Vec<PathBuf>,
    passphrase_file: Option<PathBuf>,
    #[serde(default)]
    databases: Vec<RawDatabase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    name: String,
    path: PathBuf,
    location: Option<String>,
    schedule: Option<String>,
    incremental: Option<bool>,
    full_every: Option<u32>,
    format: Option<String>,
    keep: Option<RawKeep>,
    verify: Option<String>,
    include: Option<Vec<PathBuf>>,
    #[serde(default)]
    encrypt_to: Vec<String>,
    #[serde(default)]
    encrypt_to_file: Vec<PathBuf>,
    passphrase_file: Option<PathBuf>,
    #[serde(default)]
    labels: crate::model::labels::Labels,
    after_backup: Option<Vec<String>>,
    after_restore: Option<Vec<String>>,
    on_failure: Option<Vec<String>>,
    hook_timeout: Option<String>,
    replicate: Option<String>,
    replicate_max_lag: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeep {
    last: Option<u32>,
    hourly: Option<u32>,
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
    yearly: Option<u32>,
    within: Option<String>,
}

impl Config {
    /// The context the daemon's operations run with: its keys (a job's is made background
    /// work by the job, except a restore, which someone waits for).
    pub fn context(&self) -> crate::ops::Context {
        crate::ops::Context::new().with_identities(self.identities.clone())
    }

    /// Reads and checks `path`; the token comes from `token_file` or else from
    /// `$LITEVAULT_TOKEN`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read the configuration: {e}", path.display())))?;
        let env_token = std::env::var("LITEVAULT_TOKEN").ok().filter(|t| !t.is_empty());
        let base =
            crate::fsutil::parent_dir(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        Config::parse(&text, &base, env_token)
            .map(|mut c| {
                c.source = Some(path.to_path_buf());
                c
            })
            .map_err(|ConfigError(m)| ConfigError(format!("{}: {m}", path.display())))
    }

    /// Parses and checks configuration text; relative paths are relative to `base`;
    /// `env_token` is `$LITEVAULT_TOKEN`'s value.
    pub fn parse(text: &str, base: &Path, env_token: Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_string()))?;
        let err = |m: String| Err(ConfigError(m));

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = SocketAddr::from_str(listen_text).map_err(|_| {
            ConfigError(format!(
                "listen = {listen_text:?}: expected an IP address and a port, e.g. \"127.0.0.1:8750\" or \"[::1]:8750\""
            ))
        })?;

        let token = match (&raw.token_file, env_token) {
            (Some(_), Some(_)) => {
                return err("the token is given twice (token_file and $LITEVAULT_TOKEN): keep one".into())
            }
            (Some(file), None) => Some(read_token_file(&base.join(file))?),
            (None, Some(t)) => Some(check_token(t.trim().to_string(), "$LITEVAULT_TOKEN")?),
            (None, None) => None,
        };
        if token.is_none() && !listen.ip().is_loopback() {
            return err(format!(
                "listen = {listen_text:?} is not a loopback address: a token is required (set $LITEVAULT_TOKEN or token_file = \"/etc/litevault/token\")"
            ));
        }

        let max_parallel = raw.max_parallel.unwrap_or(2);
        if max_parallel == 0 {
            return err("max_parallel must be at least 1".into());
        }
        let shutdown_grace_secs = match raw.shutdown_grace.as_deref() {
            Some(t) => parse_duration(t).map_err(|m| ConfigError(format!("shutdown_grace: {m}")))?,
            None => 8,
        };
        if shutdown_grace_secs > 600 {
            return err("shutdown_grace: at most 10m (a service manager stops waiting long before)".into());
        }
        let header_timeout_secs = match raw.header_timeout.as_deref() {
            Some(t) => parse_duration(t).map_err(|m| ConfigError(format!("header_timeout: {m}")))?,
            None => DEFAULT_HEADER_TIMEOUT_SECS,
        };
        if !(1..=300).contains(&header_timeout_secs) {
            return err(
                "header_timeout: from 1s to 5m (a client sends a request's head in well under a second)"
                    .into(),
            );
        }
        let discover_every = match raw.discover_every.as_deref() {
            Some(t) => crate::model::time::parse_interval(t)
                .map_err(|m| ConfigError(format!("discover_every: {m}")))?,
            None => std::time::Duration::from_secs(10),
        };
        if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600))
            .contains(&discover_every)
        {
            return err("discover_every: from 1s to 1h".into());
        }
        let state_dir = match raw.state_dir {
            Some(d) => base.join(d),
            None => default_state_dir(),
        };

        let mut identities = crate::format::crypt::Identities::new();
        for f in &raw.identity_file {
            identities
                .add_file(&base.join(f))
                .map_err(|e| ConfigError(format!("identity_file: {e}")))?;
        }
        if let Some(p) = &raw.passphrase_file {
            identities
                .add_passphrase_file(&base.join(p))
                .map_err(|e| ConfigError(format!("passphrase_file: {e}")))?;
        }
        if raw.databases.is_empty() {
            return err("no [[databases]]: add at least one (name, path, location, schedule)".into());
        }
        let mut databases: Vec<DatabaseConfig> = Vec::new();
        let mut patterns: Vec<DatabaseConfig> = Vec::new();
        for d in raw.databases {
            if is_pattern(&d.path) {
                patterns.push(check_pattern(d, base, !identities.is_empty())?);
                continue;
            }
            check_name(&d.name)?;
            let db = check_database(d, base, !identities.is_empty())?;
            if databases.iter().any(|o| o.name == db.name) {
                return err(format!(
                    "two databases are named {:?}: names must be unique",
                    db.name
                ));
            }
            databases.push(db);
        }
        let mut config = Config {
            source: None,
            listen,
            token,
            max_parallel,
            shutdown_grace_secs,
            header_timeout_secs,
            state_dir,
            databases,
            patterns,
            discover_every,
            identities,
        };
        config.discover();
        Ok(config)
    }

    /// Finds the database files the patterns match now: the databases the file names stay,
    /// those found by patterns are replaced by what matches today (in name order). A new
    /// matching file that is not (yet) an SQLite database is left out until it is one; `-wal`,
    /// `-shm` and `-journal` files, and names starting with a dot (unless the pattern does: temp
    /// files are hidden), never match. A file found before is kept while it is still a regular
    /// file, without opening it again: closing any descriptor of a file drops every lock this
    /// process holds on it, SQLite's too. When a directory cannot be listed, what its pattern
    /// found before stays. Returns why a matching file was left out (a name that is not valid
    /// or already taken, a file another entry names, a directory that cannot be read).
    pub fn discover(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let before: Vec<DatabaseConfig> = self
            .databases
            .iter()
            .filter(|d| d.pattern.is_some())
            .cloned()
            .collect();
        self.databases.retain(|d| d.pattern.is_none());
        for t in &self.patterns {
            let (Some(dir), Some(pattern)) = (t.path.parent(), t.path.file_name().and_then(|f| f.to_str()))
            else {
                continue;
            };
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    notes.push(format!("{}: cannot list {}: {e}", t.name, dir.display()));
                    for d in before.iter().filter(|d| d.pattern.as_ref() == Some(&t.path)) {
                        if !self.databases.iter().any(|o| o.name == d.name) {
                            self.databases.push(d.clone());
                        }
                    }
                    continue;
                }
            };
            let mut found: Vec<(String, PathBuf)> = Vec::new();
            for entry in entries.flatten() {
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                let path = entry.path();
                if ["-wal", "-shm", "-journal"].iter().any(|s| file.ends_with(s))
                    || (file.starts_with('.') && !pattern.starts_with('.'))
                    || !wildcard_match(pattern, file)
                    || !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
                {
                    continue;
                }
                if let Some(other) = self.databases.iter().find(|d| d.path == path) {
                    notes.push(format!(
                        "{} is left out of {}: it is already database {:?}",
                        path.display(),
                        t.name,
                        other.name
                    ));
                    continue;
                }
                let known = before.iter().any(|d| d.path == path);
                if !known && !is_database_file(&path) {
                    continue;
                }
                let stem = Path::new(file)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(file);
                let name = t.name.replace("{stem}", stem);
                match check_name(&name) {
                    Ok(()) => found.push((name, path)),
                    Err(e) => notes.push(format!("{} is left out: {e}", path.display())),
                }
            }
            found.sort();
            for (name, path) in found {
                if let Some(other) = self.databases.iter().find(|d| d.name == name) {
                    notes.push(format!(
                        "{} is left out: the name {name:?} is taken by {}",
                        path.display(),
                        other.path.display()
                    ));
                    continue;
                }
                self.databases.push(DatabaseConfig {
                    name,
                    path,
                    pattern: Some(t.path.clone()),
                    ..t.clone()
                });
            }
        }
        notes
    }

    /// The database called `name`.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// [`Config::header_timeout_secs`] as a duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_timeout_secs)
    }
}

/// The daemon's state directory: `$LITEVAULT_STATE_DIR/serve`, else the platform state
/// directory's `litevault/serve` (e.g. `~/.local/state/litevault/serve`).
fn default_state_dir() -> PathBuf {
    crate::ops::chain::state_dir()
        .unwrap_or_else(|| PathBuf::from(".litevault-state"))
        .join("serve")
}

fn read_token_file(path: &Path) -> Result<Token, ConfigError> {
    let meta =
        std::fs::metadata(path).map_err(|e| ConfigError(format!("token_file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError(format!(
            "token_file {}: readable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("token_file {}: {e}", path.display())))?;
    check_token(text.trim().to_string(), &format!("token_file {}", path.display()))
}

fn check_token(token: String, from: &str) -> Result<Token, ConfigError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConfigError(format!(
            "{from}: the token is shorter than {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
        )));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError(format!(
            "{from}: the token must not contain spaces or control characters"
        )));
    }
    Ok(Token(token))
}

/// Database names become object names, URL query values and metric labels: keep them plain.
fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "database name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-' (not first)"
        )))
    }
}

/// Whether `path` names several files: `*` or `?` in its file name.
fn is_pattern(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.contains(['*', '?']))
}

/// Whether `name` matches `pattern`, where `*` is any run of characters (none included) and
/// `?` any one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // Where the last `*` was, and where in `name` it resumes when what follows it fails.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether `path` is a regular file that starts as an SQLite database does.
fn is_database_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && &head == b"SQLite format 3\0"
}

/// Checks an entry whose `path` is a pattern; returns it as a template ([`Config::patterns`]).
fn check_pattern(d: RawDatabase, base: &Path, can_read: bool) -> Result<DatabaseConfig, ConfigError> {
    let at = |m: String| ConfigError(format!("database {:?}: {m}", d.name));
    if d.path.parent().is_some_and(is_pattern) {
        return Err(at(format!(
            "path {}: only the file name may hold * or ? (e.g. \"/srv/tenants/*.db\")",
            d.path.display()
        )));
    }
    if d.name.matches("{stem}").count() != 1 {
        return Err(at(
            "a path with * or ? names several databases: put {stem} once in name (e.g. name = \"tenant-{stem}\")"
                .into(),
        ));
    }
    check_name(&d.name.replace("{stem}", "a")).map_err(|e| at(e.0))?;
    let mut t = check_database(d, base, can_read)?;
    t.pattern = Some(t.path.clone());
    Ok(t)
}

/// Checks one entry (its name is checked by the caller).
fn check_database(d: RawDatabase, base: &Path, can_read: bool) -> Result<DatabaseConfig, ConfigError> {
    let name = d.name;
    let at = |m: String| ConfigError(format!("database {name:?}: {m}"));
    let path = base.join(&d.path);
    if path.is_dir() {
        return Err(at(format!(
            "path {} is a directory, not a database file",
            path.display()
        )));
    }
    let location = match d.location {
        Some(l) if crate::model::naming::is_remote(Path::new(&l)) => PathBuf::from(l),
        Some(l) if !l.is_empty() => base.join(l),
        _ => {
            return Err(at(
                "no location: add location = \"/backups/app\" or \"s3://bucket/app\"".into(),
            ))
        }
    };
    let replicate = match &d.replicate {
        Some(r) => Some(crate::model::time::parse_interval(r).map_err(|m| at(format!("replicate: {m}")))?),
        None => None,
    };
    let replicate_max_lag = match &d.replicate_max_lag {
        Some(t) => std::time::Duration::from_secs(
            crate::model::time::parse_duration(t).map_err(|m| at(format!("replicate_max_lag: {m}")))?,
        ),
        None => std::time::Duration::from_secs(60),
    };
    // Replicated databases get a daily backup when no schedule is given.
    let schedule_text = match (&d.schedule, replicate) {
        (Some(s), _) => s.as_str(),
        (None, Some(_)) => "every 24h",
        (None, None) => {
            return Err(at(
                "no schedule: add schedule = \"every 15m\" or a cron expression (or replicate = \"1s\")"
                    .into(),
            ))
        }
    };
    let schedule = Schedule::parse(schedule_text).map_err(|m| at(format!("schedule {m}")))?;
    let sql = match d.format.as_deref() {
        None | Some("archive") => false,
        Some("sql") => true,
        Some(other) => return Err(at(format!("format {other:?}: expected \"archive\" or \"sql\""))),
    };
    let incremental = d.incremental.unwrap_or(false);
    if incremental && sql {
        return Err(at(
            "incremental backups are archives: remove format = \"sql\" or incremental".into(),
        ));
    }
    if d.full_every.is_some() && !incremental {
        return Err(at(
            "full_every is for incremental backups: add incremental = true".into(),
        ));
    }
    if d.full_every == Some(0) {
        return Err(at("full_every must be at least 1".into()));
    }
    let keep = match d.keep {
        None => None,
        Some(k) => {
            let policy = Policy {
                keep_last: k.last,
                keep_hourly: k.hourly,
                keep_daily: k.daily,
                keep_weekly: k.weekly,
                keep_monthly: k.monthly,
                keep_yearly: k.yearly,
                keep_within_secs: match k.within.as_deref() {
                    Some(w) => Some(parse_duration(w).map_err(|m| at(format!("keep.within: {m}")))?),
                    None => None,
                },
            };
            if policy.is_empty() {
                return Err(at(
                    "keep keeps nothing: give at least one non-zero count (e.g. keep = { last = 4, daily = 7 })".into(),
                ));
            }
            Some(policy)
        }
    };
    let verify = match d.verify.as_deref() {
        Some(v) => Some(Schedule::parse(v).map_err(|m| at(format!("verify {m}")))?),
        None => None,
    };
    // Relative to the configuration file, like `path`; checked (is it a directory, no escaping
    // symlink) by each backup, which fails naming what is wrong.
    let include: Vec<PathBuf> = d
        .include
        .unwrap_or_default()
        .iter()
        .map(|p| base.join(p))
        .collect();
    if !include.is_empty() && sql {
        return Err(at(
            "include: files beside the database go into archives, not SQL dumps: remove format = \"sql\" or include"
                .into(),
        ));
    }
    let labels = d.labels;
    crate::model::labels::check_all(&labels).map_err(|m| at(format!("labels: {m}")))?;
    let files: Vec<PathBuf> = d.encrypt_to_file.iter().map(|f| base.join(f)).collect();
    let encrypt = match (
        crate::format::crypt::Encryption::to_recipients(&d.encrypt_to, &files).map_err(|e| at(e.to_string()))?,
        &d.passphrase_file,
    ) {
        (Some(_), Some(_)) => {
            return Err(at(
                "passphrase_file cannot be combined with encrypt_to/encrypt_to_file (age encrypts to a passphrase alone)"
                    .into(),
            ))
        }
        (Some(e), None) => Some(e),
        (None, Some(p)) => Some(
            crate::format::crypt::Encryption::with_passphrase_file(&base.join(p)).map_err(|e| at(e.to_string()))?,
        ),
        (None, None) => None,
    };
    if encrypt.is_some() && !can_read {
        let needs = match (&verify, &keep, incremental) {
            (Some(_), _, _) => Some("verify (restore drills)"),
            (_, Some(_), _) => Some("keep (retention reads the manifests to keep parents)"),
            _ => None,
        };
        if let Some(what) = needs {
            return Err(at(format!(
                "its backups are encrypted and {what} must read them: add identity_file = \"key.txt\" (or passphrase_file) at the top of the file"
            )));
        }
    }
    let timeout = match &d.hook_timeout {
        Some(t) => std::time::Duration::from_secs(
            crate::model::time::parse_duration(t).map_err(|m| at(format!("hook_timeout: {m}")))?,
        ),
        None => std::time::Duration::from_secs(300),
    };
    let hook = |what: &str,
                argv: &Option<Vec<String>>|
     -> Result<Option<crate::ops::hook::Hook>, ConfigError> {
        match argv {
            None => Ok(None),
            Some(a) if a.first().is_none_or(|p| p.trim().is_empty()) => Err(at(format!(
                "{what}: a command as an array, program first (e.g. [\"/usr/local/bin/rebuild-index\", \"--quick\"])"
            ))),
            Some(a) => Ok(Some(crate::ops::hook::Hook {
                argv: a.clone(),
                timeout,
            })),
        }
    };
    let hooks = Hooks {
        after_backup: hook("after_backup", &d.after_backup)?,
        after_restore: hook("after_restore", &d.after_restore)?,
        on_failure: hook("on_failure", &d.on_failure)?,
    };
    if replicate.is_some() && sql {
        return Err(at(
            "replicate: replication ships the WAL's pages after archives, not SQL dumps: remove format = \"sql\"".into(),
        ));
    }
    Ok(DatabaseConfig {
        replicate,
        replicate_max_lag,
        hooks,
        name,
        path,
        location,
        schedule,
        format: if sql {
            Format::Sql(Default::default())
        } else {
            Format::Archive(crate::ops::backup::ArchiveOptions {
                incremental,
                full_every: d.full_every,
                include,
            })
        },
        keep,
        verify,
        encrypt,
        labels,
        pattern: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/srv"), None)
    }

    #[test]
    fn the_issue_example_parses() {
        let c = Config::parse(
            r#"
listen = "127.0.0.1:8750"
[[databases]]
name = "app"
path = "app.db"
location = "s3://backups/app"
schedule = "every 15m"
incremental = true
full_every = 24
format = "archive"
keep = { last = 4, hourly = 24, daily = 7, weekly = 4, monthly = 12 }
verify = "0 */6 * * *"
include = ["uploads", "/var/lib/app/exports"]
"#,
            Path::new("/srv"),
            Some(TOKEN.into()),
        )
        .unwrap();
        let d = &c.databases[0];
        assert_eq!(d.path, Path::new("/srv/app.db"));
        assert_eq!(d.location, Path::new("s3://backups/app"));
        assert!(matches!(d.schedule, Schedule::Every { secs: 900, .. }));
        assert_eq!(d.keep.as_ref().unwrap().keep_monthly, Some(12));
        // Relative to the configuration file, like `path`; passed to each backup.
        assert_eq!(
            d.format.include(),
            [Path::new("/srv/uploads"), Path::new("/var/lib/app/exports")]
        );
        assert_eq!(c.token.as_ref().unwrap().expose(), TOKEN);
        assert!(!format!("{c:?}").contains(TOKEN), "the token is never printed");
        // 00:00, 06:00, 12:00, 18:00 UTC.
        let v = d.verify.as_ref().unwrap();
        let t0 = 1_764_547_200; // 2025-12-01T00:00:00Z
        assert_eq!(v.next_after(t0), t0 + 6 * 3600);
        assert_eq!(v.next_after(t0 + 1), t0 + 6 * 3600);
        assert_eq!(v.interval(t0), 6 * 3600);
    }

    #[test]
    fn labels_go_into_each_backup() {
        let c = parse(
            "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"/b\"\nschedule = \"every 1h\"\nlabels = { app_version = \"2.3.1\", tracked_files = \"1523\" }\n",
        )
        .unwrap();
        let labels = &c.databases[0].labels;
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["app_version"], "2.3.1");
        assert_eq!(labels["tracked_files"], "1523");
    }

    #[test]
    fn mistakes_are_named() {
        let db =
            "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n";
        assert!(parse(db).is_ok());
        let cases = [
            (format!("listen = \"0.0.0.0:8750\"\n{db}"), "token is required"),
            (format!("listen = \"localhost\"\n{db}"), "IP address and a port"),
            (db.replace("every 1h", "every 1x"), "unknown unit"),
            (db.replace("every 1h", "* * *"), "neither"),
            (db.replace("every 1h", "0 0 30 2 *"), "never fires"),
            (db.replace("every 1h", "99 * * * *"), "cron"),
            (db.replace("location = \"/b\"\n", ""), "no location"),
            (db.replace("name = \"app\"", "name = \"a/b\""), "database name"),
            (format!("{db}keep = {{ last = 0 }}\n"), "keeps nothing"),
            (
                format!("{db}format = \"sql\"\nincremental = true\n"),
                "incremental backups are archives",
            ),
            (
                format!("{db}format = \"sql\"\ninclude = [\"uploads\"]\n"),
                "not SQL dumps",
            ),
            (format!("{db}colour = \"blue\"\n"), "unknown field"),
            (
                format!("{db}labels = {{ \"bad key\" = \"1\" }}\n"),
                "labels: label key",
            ),
            (format!("{db}labels = {{ k = \"a\\nb\" }}\n"), "control character"),
            (
                format!("header_timeout = \"0s\"\n{db}"),
                "header_timeout: from 1s",
            ),
            (format!("header_timeout = \"soon\"\n{db}"), "header_timeout"),
            (format!("{db}{db}"), "unique"),
            (String::new(), "no [[databases]]"),
        ];
        for (text, expected) in cases {
            let e = parse(&text).expect_err(&text).0;
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        assert!(Config::parse(db, Path::new("/"), Some("short".into()))
            .unwrap_err()
            .0
            .contains("shorter"));
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = "token_file = \"token\"\n[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"b\"\nschedule = \"every 1h\"\n";
        let e = Config::parse(text, dir.path(), None).unwrap_err().0;
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::parse(text, dir.path(), None).unwrap();
        assert_eq!(c.token.unwrap().expose(), TOKEN);
        assert!(Config::parse(text, dir.path(), Some(TOKEN.into()))
            .unwrap_err()
            .0
            .contains("twice"));
    }

    #[test]
    fn wildcards_match_star_and_question_mark() {
        for (p, n, want) in [
            ("*.db", "acme.db", true),
            ("*.db", ".db", true),
            ("*.db", "acme.db-wal", false),
            ("*.db", "acme.sqlite", false),
            ("t-?.db", "t-1.db", true),
            ("t-?.db", "t-12.db", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxa", false),
            ("app.db", "app.db", true),
            ("*", "", true),
            ("?", "", false),
            ("*b", "*ab", true),
            ("a*", "a*", true),
        ] {
            assert_eq!(wildcard_match(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn a_pattern_finds_each_database_file_and_names_it_by_its_stem() {
        let dir = tempfile::tempdir().unwrap();
        let db = |name: &str| {
            let c = rusqlite::Connection::open(dir.path().join(name)).unwrap();
            c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
                .unwrap();
        };
        db("acme.db");
        db("globex.db");
        db("other.sqlite");
        std::fs::write(dir.path().join("empty.db"), b"").unwrap();
        std::fs::write(dir.path().join("notes.db"), b"not a database at all").unwrap();
        std::fs::create_dir(dir.path().join("dir.db")).unwrap();
        let text = format!(
            "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n\
             [[databases]]\nname = \"tenant-{{stem}}\"\npath = \"{}/*.db\"\nlocation = \"/b\"\nreplicate = \"1s\"\n",
            dir.path().display()
        );
        let mut c = parse(&text).unwrap();
        let names: Vec<&str> = c.databases.iter().map(|d| d.name.as_str()).collect();
        // The -wal and -shm files, a file that is not (yet) a database and a directory are not.
        assert_eq!(names, ["app", "tenant-acme", "tenant-globex"]);
        assert_eq!(c.databases[1].path, dir.path().join("acme.db"));
        assert_eq!(c.databases[1].replicate, Some(std::time::Duration::from_secs(1)));
        assert_eq!(
            c.databases[1].pattern.as_deref(),
            Some(dir.path().join("*.db").as_path())
        );
        assert_eq!(c.patterns.len(), 1);
        // A new one is found by the next look, a removed one is gone.
        db("initech.db");
        std::fs::remove_file(dir.path().join("globex.db")).unwrap();
        assert!(c.discover().is_empty());
        let names: Vec<&str> = c.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["app", "tenant-acme", "tenant-initech"]);
        // A name already taken is left out, and said.
        let taken = text.replace("name = \"app\"", "name = \"tenant-acme\"");
        let mut c = parse(&taken).unwrap();
        let notes = c.discover();
        assert_eq!(c.databases.iter().filter(|d| d.name == "tenant-acme").count(), 1);
        assert!(notes.iter().any(|n| n.contains("is taken")), "{notes:?}");
    }

    #[test]
    fn pattern_mistakes_are_named() {
        let entry = |name: &str, path: &str| {
            format!("[[databases]]\nname = \"{name}\"\npath = \"{path}\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n")
        };
        for (text, want) in [
            (entry("tenant", "/srv/*.db"), "put {stem} once in name"),
            (entry("{stem}-{stem}", "/srv/*.db"), "put {stem} once in name"),
            (entry("t/{stem}", "/srv/*.db"), "database name"),
            (entry("t-{stem}", "/srv/*/app.db"), "only the file name may hold"),
            (
                format!("discover_every = \"0s\"\n{}", entry("a", "/a.db")),
                "discover_every",
            ),
        ] {
            let e = parse(&text).unwrap_err().0;
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(parse(&entry("{stem}", "/nonexistent-dir/*.db")).is_ok());
    }

    #[test]
    fn hidden_files_and_files_another_entry_names_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.db", ".partial.db", "b.db"] {
            let c = rusqlite::Connection::open(dir.path().join(name)).unwrap();
            c.execute_batch("CREATE TABLE t(x);").unwrap();
        }
        let d = dir.path().display();
        let text = format!(
            "[[databases]]\nname = \"fixed\"\npath = \"{d}/b.db\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n\
             [[databases]]\nname = \"p-{{stem}}\"\npath = \"{d}/*\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n\
             [[databases]]\nname = \"q-{{stem}}\"\npath = \"{d}/?.db\"\nlocation = \"/b\"\nschedule = \"every 1h\"\n"
        );
        let mut c = parse(&text).unwrap();
        let names: Vec<&str> = c.databases.iter().map(|d| d.name.as_str()).collect();
        // b.db is the fixed entry's; a.db is the first pattern's; .partial.db is hidden.
        assert_eq!(names, ["fixed", "p-a"]);
        let notes = c.discover();
        assert_eq!(
            notes.iter().filter(|n| n.contains("already database")).count(),
            3,
            "{notes:?}"
        );
        // A directory that cannot be listed keeps what its pattern found.
        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).unwrap();
        let notes = c.discover();
        assert!(notes.iter().any(|n| n.contains("cannot list")), "{notes:?}");
        let names: Vec<&str> = c.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["fixed", "p-a"]);
        std::fs::rename(&moved, dir.path()).unwrap();
    }
}
