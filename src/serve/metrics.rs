//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written here and
//! checked by a real parser in the tests. Every configured database has every series (a time
//! that never happened is 0), so an alert on `time() - litevault_last_backup_success_timestamp_seconds`
//! fires for a database that never had a backup.

use std::fmt::Write;

use super::state::{Counters, DbState};

/// The metrics for the configured databases, in the configuration's order.
pub(crate) fn render(dbs: &[(String, DbState)], running: &[(String, bool)]) -> String {
    let mut out = String::new();
    let series = |out: &mut String,
                  name: &str,
                  kind: &str,
                  help: &str,
                  values: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in values {
            let _ = writeln!(out, "{name}{{{labels}}} {}", number(v));
        }
    };
    let db = |name: &str| format!("database=\"{}\"", escape(name));
    let ts = |t: Option<i64>| t.unwrap_or(0) as f64;
    // A counter's two series per database: result="success" and result="failure".
    let by_result = |pick: fn(&Counters) -> (u64, u64)| -> Vec<(String, f64)> {
        dbs.iter()
            .flat_map(|(n, s)| {
                let (ok, failed) = pick(&s.counters);
                [
                    (format!("{},result=\"success\"", db(n)), ok as f64),
                    (format!("{},result=\"failure\"", db(n)), failed as f64),
                ]
            })
            .collect()
    };

    series(
        &mut out,
        "litevault_last_backup_success_timestamp_seconds",
        "gauge",
        "When the newest successful backup finished, seconds since the epoch (0: none known).",
        &mut dbs
            .iter()
            .map(|(n, s)| (db(n), ts(s.last_success.as_ref().map(|b| b.time)))),
    );
    series(
        &mut out,
        "litevault_backups_total",
        "counter",
        "Backups run by this daemon since it started, by result.",
        &mut by_result(|c| (c.backups_ok, c.backups_failed)).into_iter(),
    );
    series(
        &mut out,
        "litevault_backup_duration_seconds",
        "gauge",
        "How long the newest successful backup took.",
        &mut dbs.iter().map(|(n, s)| {
            let d = s
                .counters
                .last_duration
                .or_else(|| s.last_success.as_ref().map(|b| b.duration_ms as f64 / 1000.0));
            (db(n), d.unwrap_or(0.0))
        }),
    );
    series(
        &mut out,
        "litevault_backup_size_bytes",
        "gauge",
        "Bytes of the newest successful backup's archive.",
        &mut dbs
            .iter()
            .map(|(n, s)| (db(n), s.last_success.as_ref().map_or(0.0, |b| b.size as f64))),
    );
    series(
        &mut out,
        "litevault_last_verify_success_timestamp_seconds",
        "gauge",
        "When a restore drill last passed, seconds since the epoch (0: never).",
        &mut dbs.iter().map(|(n, s)| (db(n), ts(s.last_verify_success))),
    );
    series(
        &mut out,
        "litevault_last_verify_ok",
        "gauge",
        "1 when the newest restore drill passed, 0 when it failed or none ran.",
        &mut dbs.iter().map(|(n, s)| {
            (
                db(n),
                if s.last_verify.as_ref().is_some_and(|v| v.ok) {
                    1.0
                } else {
                    0.0
                },
            )
        }),
    );
    series(
        &mut out,
        "litevault_verifies_total",
        "counter",
        "Restore drills run by this daemon since it started, by result.",
        &mut by_result(|c| (c.verifies_ok, c.verifies_failed)).into_iter(),
    );
    series(
        &mut out,
        "litevault_restores_total",
        "counter",
        "Restores asked through the API since the daemon started, by result.",
        &mut by_result(|c| (c.restores_ok, c.restores_failed)).into_iter(),
    );
    series(
        &mut out,
        "litevault_job_running",
        "gauge",
        "1 while a job (backup, restore or drill) of the database runs.",
        &mut running.iter().map(|(n, r)| (db(n), if *r { 1.0 } else { 0.0 })),
    );
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped as the format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_for_every_database() {
        let mut s = DbState::default();
        s.counters.backups_ok = 3;
        s.counters.last_duration = Some(1.25);
        let text = render(
            &[("app".into(), s), ("b\"x".into(), DbState::default())],
            &[("app".into(), true)],
        );
        assert!(
            text.contains("litevault_backups_total{database=\"app\",result=\"success\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("litevault_backup_duration_seconds{database=\"app\"} 1.25\n"));
        assert!(text.contains("litevault_last_backup_success_timestamp_seconds{database=\"b\\\"x\"} 0\n"));
        assert!(text.contains("litevault_job_running{database=\"app\"} 1\n"));
        assert_eq!(text.matches("# TYPE ").count(), 9);
    }
}
