//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written here and
//! checked by a real parser in the tests. Every configured database has every series (a time
//! that never happened is 0), so an alert on `time() - litevault_last_backup_success_timestamp_seconds`
//! fires for a database that never had a backup.

use std::fmt::Write;

use super::state::{Counters, DbState};

/// The metrics for the configured databases, in the configuration's order.
pub(crate) fn render(
    dbs: &[(String, DbState)],
    running: &[(String, bool)],
    replication: &[(String, Option<super::replication::View>)],
) -> String {
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
    // Replication (`replicate = "1s"`): 0 for a database that does not replicate.
    let rep = |pick: fn(&super::replication::View) -> f64| -> Vec<(String, f64)> {
        replication
            .iter()
            .map(|(n, v)| (db(n), v.as_ref().map_or(0.0, pick)))
            .collect()
    };
    fn st(v: &super::replication::View, f: fn(&crate::ops::replicate::ReplicateStatus) -> u64) -> f64 {
        v.status.as_ref().map_or(0.0, |s| f(s) as f64)
    }
    series(
        &mut out,
        "litevault_replication_lag_seconds",
        "gauge",
        "How long the oldest transaction read and not shipped yet has waited (0: none waits).",
        &mut rep(|v| v.lag_secs).into_iter(),
    );
    series(
        &mut out,
        "litevault_replication_transactions_total",
        "counter",
        "Transactions shipped by the replicator since it started.",
        &mut rep(|v| st(v, |s| s.shipped)).into_iter(),
    );
    series(
        &mut out,
        "litevault_replication_pending_transactions",
        "gauge",
        "Transactions read and not shipped yet.",
        &mut rep(|v| st(v, |s| s.pending)).into_iter(),
    );
    series(
        &mut out,
        "litevault_replication_bytes_total",
        "counter",
        "Bytes of pages shipped (before compression).",
        &mut rep(|v| st(v, |s| s.bytes)).into_iter(),
    );
    series(
        &mut out,
        "litevault_replication_segments_total",
        "counter",
        "Segments (objects) written.",
        &mut rep(|v| st(v, |s| s.segments)).into_iter(),
    );
    series(
        &mut out,
        "litevault_replication_gaps_total",
        "counter",
        "Gaps found (history that could not be read; a new base follows each).",
        &mut rep(|v| st(v, |s| s.gaps)).into_iter(),
    );
    let _ = writeln!(
        out,
        "# HELP litevault_s3_requests_total S3 requests this daemon sent, by kind (every attempt; PUT and POST are what object storage bills as writes)."
    );
    let _ = writeln!(out, "# TYPE litevault_s3_requests_total counter");
    for (kind, n) in crate::location::s3_request_counts() {
        let _ = writeln!(out, "litevault_s3_requests_total{{kind=\"{kind}\"}} {n}");
    }
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
            &[("app".into(), None), ("b\"x".into(), None)],
        );
        assert!(
            text.contains("litevault_backups_total{database=\"app\",result=\"success\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("litevault_backup_duration_seconds{database=\"app\"} 1.25\n"));
        assert!(text.contains("litevault_last_backup_success_timestamp_seconds{database=\"b\\\"x\"} 0\n"));
        assert!(text.contains("litevault_job_running{database=\"app\"} 1\n"));
        assert!(text.contains("litevault_replication_lag_seconds{database=\"app\"} 0\n"));
        assert!(text.contains("litevault_replication_gaps_total{database=\"b\\\"x\"} 0\n"));
        assert_eq!(text.matches("# TYPE ").count(), 16);
        // The S3 requests of the process, every kind (0 until one is sent).
        for kind in crate::location::store::S3_REQUEST_KINDS {
            assert!(
                text.contains(&format!("litevault_s3_requests_total{{kind=\"{kind}\"}} ")),
                "{text}"
            );
        }
    }
}
