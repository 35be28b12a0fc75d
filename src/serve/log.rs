//! The daemon's log: one line per event on stderr, as text for people or JSON for collectors.
//!
//! Lines are written whole under stderr's lock, so lines of concurrent jobs never interleave.
//! Nothing secret is ever a field (the token and request headers are not logged).

use std::io::Write;

use serde_json::{Map, Value};

/// Seconds since the epoch, now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-01T10:15:00Z info job.done database=app job=3 ...`
    #[default]
    Text,
    /// `{"time":"2026-12-01T10:15:00Z","level":"info","event":"job.done","database":"app",...}`
    Json,
}

impl LogFormat {
    /// Writes one event: `level` is "info", "warn" or "error"; `event` a dotted name such as
    /// "job.done"; `fields` in order.
    pub fn write(self, level: &str, event: &str, fields: &[(&str, Value)]) {
        let line = self.line(level, event, fields);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
    }

    fn line(self, level: &str, event: &str, fields: &[(&str, Value)]) -> String {
        let time = crate::location::format_time(now());
        match self {
            LogFormat::Json => {
                let mut m = Map::new();
                m.insert("time".into(), time.into());
                m.insert("level".into(), level.into());
                m.insert("event".into(), event.into());
                for (k, v) in fields {
                    m.insert((*k).into(), v.clone());
                }
                format!("{}\n", Value::Object(m))
            }
            LogFormat::Text => {
                let mut s = format!("{time} {level} {event}");
                for (k, v) in fields {
                    s.push(' ');
                    s.push_str(k);
                    s.push('=');
                    match v {
                        Value::String(t) if !t.is_empty() && !t.contains([' ', '"', '=', '\n']) => {
                            s.push_str(t)
                        }
                        Value::String(t) => s.push_str(&Value::String(t.clone()).to_string()),
                        other => s.push_str(&other.to_string()),
                    }
                }
                s.push('\n');
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_and_quoted_where_needed() {
        let fields = [
            ("database", Value::from("app")),
            ("error", Value::from("disk \"full\"")),
        ];
        let t = LogFormat::Text.line("error", "job.failed", &fields);
        assert!(
            t.ends_with(" error job.failed database=app error=\"disk \\\"full\\\"\"\n"),
            "{t}"
        );
        let j: Value =
            serde_json::from_str(LogFormat::Json.line("error", "job.failed", &fields).trim()).unwrap();
        assert_eq!(j["event"], "job.failed");
        assert_eq!(j["error"], "disk \"full\"");
    }
}
