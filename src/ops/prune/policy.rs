//! Retention planning for prune: which backups a policy keeps and why.
//!
//! This file owns the retention *decision* and nothing else: restic's `forget` vocabulary and
//! semantics (`--keep-last`, `--keep-hourly` ... `--keep-yearly`, `--keep-within`), the parsing of
//! litevault's backup object names into (group, creation time), and the parsing of the duration
//! strings `--keep-within` takes. It is pure: no I/O, no clock, no storage; the caller lists the
//! backups, asks [`plan`], and deletes what it marks `keep: false`.
//!
//! Semantics, per group of backups (see [`plan`]):
//! - backups are ordered newest first (ties: name descending);
//! - `keep_last N` keeps the N newest;
//! - `keep_hourly/daily/weekly/monthly/yearly N` keep the newest backup of each of the N most
//!   recent hours/days/ISO weeks/months/years (UTC) that have a backup at all, so gaps do not use
//!   up the count;
//! - `keep_within` keeps every backup created at most that long before the group's newest backup
//!   (not before now, so a stopped backup job does not let prune delete its last backups);
//! - a backup is kept when any policy keeps it; its reasons name every policy that did.
//!
//! Where this differs from restic (0.17+), on purpose:
//! - restic also keeps a group's *oldest* snapshot when a count policy still has counts left at
//!   the end of the list (restic PR #4366); this planner does not: a count policy keeps exactly the
//!   newest of its N most recent periods, nothing more;
//! - restic's `--keep-within` keeps snapshots strictly after `newest - duration` and measures
//!   years, months and days on the calendar; here the bound is inclusive and the duration is plain
//!   seconds (y = 365 days);
//! - restic anchors `--keep-within` at the newest snapshot that is not in the future; this planner
//!   has no clock, so a backup stamped in the future is the anchor;
//! - restic buckets by each snapshot's own time zone; here every bucket is UTC;
//! - restic has no "-1 = unlimited" here; counts are `u32`, and 0 means "not given" as in restic.

use std::collections::BTreeMap;

pub use crate::model::naming::{parse_backup_name, sequence};
pub use crate::model::time::parse_duration;

use time::OffsetDateTime;

/// Retention policy, restic vocabulary. `None` = policy not given.
///
/// As in restic, a count or duration of 0 is the same as not giving that policy (it keeps
/// nothing), so a policy made only of zeros [`is_empty`](Policy::is_empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N most recent hours that have one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the N most recent days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N most recent ISO 8601 weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N most recent months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N most recent years that have one.
    pub keep_yearly: Option<u32>,
    /// Keep every backup created within this many seconds of the group's NEWEST backup (restic's
    /// --keep-within is relative to the latest snapshot, not to now).
    pub keep_within_secs: Option<u64>,
}

impl Policy {
    /// True when no policy that keeps anything is given (every field `None` or 0). [`plan`] then
    /// keeps everything; callers are expected to refuse such a prune instead.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|&(_, n)| n == 0) && self.keep_within_secs.unwrap_or(0) == 0
    }

    /// The count policies in the order their reasons are listed, 0 for "not given".
    fn counts(&self) -> [(Rule, u32); 6] {
        let n = |v: Option<u32>| v.unwrap_or(0);
        [
            (Rule::Last, n(self.keep_last)),
            (Rule::Every(Period::Day), n(self.keep_daily)),
            (Rule::Every(Period::Hour), n(self.keep_hourly)),
            (Rule::Every(Period::Week), n(self.keep_weekly)),
            (Rule::Every(Period::Month), n(self.keep_monthly)),
            (Rule::Every(Period::Year), n(self.keep_yearly)),
        ]
    }
}

/// One backup that prune may keep or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The object name, e.g. "app-20261201T101500Z.tar.zst".
    pub name: String,
    /// The group the policy is applied within, e.g. "app" or "app-pre-restore".
    pub group: String,
    /// Creation time, unix seconds, UTC.
    pub created: i64,
    /// Nanoseconds after the start of that second at which its snapshot was fixed (0 when
    /// unknown): orders backups of the same second before their names' `-N` does.
    pub snapshot_offset_ns: u64,
}

/// What [`plan`] decided for one [`Candidate`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The candidate's object name.
    pub name: String,
    /// The candidate's group.
    pub group: String,
    /// Creation time, RFC 3339 UTC, "2026-12-01T10:15:00Z". A time outside the years 0000-9999
    /// (which no litevault name can carry) is given as `@<unix seconds>`.
    pub created_at: String,
    /// Whether the backup is kept.
    pub keep: bool,
    /// Why kept ("last 3", "daily 2026-12-01", "hourly 2026-12-01T10", "weekly 2026-W48", "monthly
    /// 2026-12", "yearly 2026", "within 30d of newest") — every policy that keeps it, in that
    /// order; or why removed: ["matches no keep policy"]. With an empty policy: ["no policy given"].
    pub reasons: Vec<String>,
}

/// The reason of a backup no policy keeps.
const NO_MATCH: &str = "matches no keep policy";
/// The reason of every backup when the policy is empty.
const NO_POLICY: &str = "no policy given";

/// A calendar period a count policy buckets backups by.
#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A count policy.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// The N newest.
    Last,
    /// The newest of each of the N most recent periods that have backups.
    Every(Period),
}

/// Plans retention per group: returns one verdict per candidate, grouped by group (groups sorted
/// by name), newest first within a group (by creation second, then the snapshot's nanoseconds,
/// then the name's `-N`; last ties: name descending).
///
/// Each group is planned on its own: counts, buckets and the `keep_within` anchor (the group's
/// newest backup) never reach across groups. The result depends only on the inputs, not on the
/// clock or the order of `candidates`.
pub fn plan(candidates: &[Candidate], policy: &Policy) -> Vec<Verdict> {
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        groups.entry(c.group.as_str()).or_default().push(c);
    }
    let mut out = Vec::with_capacity(candidates.len());
    for members in groups.values_mut() {
        members.sort_by(|a, b| {
            (b.created, b.snapshot_offset_ns, sequence(&b.name))
                .cmp(&(a.created, a.snapshot_offset_ns, sequence(&a.name)))
                .then_with(|| b.name.cmp(&a.name))
        });
        let reasons = if policy.is_empty() {
            vec![vec![NO_POLICY.to_string()]; members.len()]
        } else {
            group_reasons(members, policy)
        };
        for (c, reasons) in members.iter().zip(reasons) {
            let keep = !reasons.is_empty();
            out.push(Verdict {
                name: c.name.clone(),
                group: c.group.clone(),
                created_at: created_at(c.created),
                keep,
                reasons: if keep { reasons } else { vec![NO_MATCH.to_string()] },
            });
        }
    }
    out
}

/// The keep reasons of each member of one group (sorted newest first); empty = removed.
fn group_reasons(members: &[&Candidate], policy: &Policy) -> Vec<Vec<String>> {
    let mut reasons = vec![Vec::new(); members.len()];
    for (rule, count) in policy.counts() {
        if count == 0 {
            continue;
        }
        match rule {
            Rule::Last => {
                for r in reasons.iter_mut().take(count as usize) {
                    r.push(format!("last {count}"));
                }
            }
            Rule::Every(period) => {
                let mut left = count;
                let mut previous: Option<String> = None;
                for (c, r) in members.iter().zip(reasons.iter_mut()) {
                    if left == 0 {
                        break;
                    }
                    let bucket = bucket(c.created, period);
                    if previous.as_ref() != Some(&bucket) {
                        r.push(format!("{} {bucket}", period_word(period)));
                        previous = Some(bucket);
                        left -= 1;
                    }
                }
            }
        }
    }
    if let (Some(secs), Some(newest)) = (policy.keep_within_secs.filter(|&s| s > 0), members.first()) {
        let cutoff = i128::from(newest.created) - i128::from(secs);
        let reason = format!("within {} of newest", format_duration(secs));
        for (c, r) in members.iter().zip(reasons.iter_mut()) {
            if i128::from(c.created) >= cutoff {
                r.push(reason.clone());
            }
        }
    }
    reasons
}

/// The word a period's reasons start with.
fn period_word(period: Period) -> &'static str {
    match period {
        Period::Hour => "hourly",
        Period::Day => "daily",
        Period::Week => "weekly",
        Period::Month => "monthly",
        Period::Year => "yearly",
    }
}

/// `created` as a UTC date-time, when it falls in the years 0000-9999.
fn utc(created: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(created)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// The label of the `period` holding `created` ("2026-12-01T10", "2026-12-01", "2026-W49",
/// "2026-12", "2026"), UTC. Labels are equal exactly when the periods are; a time outside the
/// years 0000-9999 is a period of its own.
fn bucket(created: i64, period: Period) -> String {
    let Some(t) = utc(created) else {
        return format!("@{created}");
    };
    let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
    match period {
        Period::Hour => format!("{y:04}-{m:02}-{d:02}T{:02}", t.hour()),
        Period::Day => format!("{y:04}-{m:02}-{d:02}"),
        Period::Week => {
            let (iso_year, week, _) = t.to_iso_week_date();
            format!("{iso_year:04}-W{week:02}")
        }
        Period::Month => format!("{y:04}-{m:02}"),
        Period::Year => format!("{y:04}"),
    }
}

/// `created` as RFC 3339 UTC ("2026-12-01T10:15:00Z"), or `@<secs>` outside the years 0000-9999.
fn created_at(created: i64) -> String {
    match utc(created) {
        Some(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => format!("@{created}"),
    }
}

/// Seconds as days, hours, minutes and seconds, largest first, zero parts left out ("30d",
/// "1d12h", "1m30s" for 90; 0 is "0s"). [`parse_duration`] reads it back.
fn format_duration(secs: u64) -> String {
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    /// Unix seconds of an RFC 3339 time.
    fn at(rfc3339: &str) -> i64 {
        OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap().unix_timestamp()
    }

    /// A candidate of `group` created at `rfc3339`, named the way litevault names it.
    fn cand(group: &str, rfc3339: &str) -> Candidate {
        let compact: String = rfc3339.chars().filter(|c| !matches!(c, '-' | ':')).collect();
        Candidate {
            name: format!("{group}-{compact}.tar.zst"),
            group: group.into(),
            created: at(rfc3339),
            snapshot_offset_ns: 0,
        }
    }

    fn policy() -> Policy {
        Policy::default()
    }

    /// (created_at, keep, reasons) of each verdict, for compact assertions.
    fn summary(v: &[Verdict]) -> Vec<(&str, bool, Vec<&str>)> {
        v.iter()
            .map(|v| {
                (
                    v.created_at.as_str(),
                    v.keep,
                    v.reasons.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    /// The created_at of the kept verdicts, in plan order.
    fn kept(v: &[Verdict]) -> Vec<&str> {
        v.iter()
            .filter(|v| v.keep)
            .map(|v| v.created_at.as_str())
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n_whatever_the_input_order() {
        let cands = [
            cand("app", "2026-12-03T00:00:00Z"),
            cand("app", "2026-12-05T00:00:00Z"),
            cand("app", "2026-12-01T00:00:00Z"),
            cand("app", "2026-12-04T00:00:00Z"),
            cand("app", "2026-12-02T00:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_last: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v),
            [
                ("2026-12-05T00:00:00Z", true, vec!["last 3"]),
                ("2026-12-04T00:00:00Z", true, vec!["last 3"]),
                ("2026-12-03T00:00:00Z", true, vec!["last 3"]),
                ("2026-12-02T00:00:00Z", false, vec!["matches no keep policy"]),
                ("2026-12-01T00:00:00Z", false, vec!["matches no keep policy"]),
            ]
        );
        assert_eq!(v[0].name, "app-20261205T000000Z.tar.zst");
        // More than there are: all kept.
        let v = plan(
            &cands,
            &Policy {
                keep_last: Some(10),
                ..policy()
            },
        );
        assert!(v.iter().all(|v| v.keep));
    }

    #[test]
    fn equal_times_are_ordered_by_their_sequence_then_name() {
        let t = at("2026-12-01T10:15:00Z");
        let cands = ["app-20261201T101500Z-2.tar.zst", "app-20261201T101500Z.tar.zst"].map(|n| Candidate {
            name: n.into(),
            group: "app".into(),
            created: t,
            snapshot_offset_ns: 0,
        });
        let v = plan(
            &cands,
            &Policy {
                keep_last: Some(1),
                ..policy()
            },
        );
        // "-2" was taken after the plain name in the same second: it is the newer.
        assert_eq!(v[0].name, "app-20261201T101500Z-2.tar.zst");
        assert!(v[0].keep && !v[1].keep);
        let v = plan(
            &cands,
            &Policy {
                keep_daily: Some(1),
                ..policy()
            },
        );
        // "-2" was taken after the plain name in the same second: it is the newer.
        assert_eq!(v[0].name, "app-20261201T101500Z-2.tar.zst");
        assert!(v[0].keep && !v[1].keep);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let cands = [
            cand("app", "2026-12-01T08:00:00Z"),
            cand("app", "2026-12-01T12:00:00Z"),
            cand("app", "2026-12-01T23:59:59Z"),
            cand("app", "2026-12-02T00:00:00Z"),
            cand("app", "2026-12-02T09:00:00Z"),
            cand("app", "2026-12-03T10:00:00Z"),
            cand("app", "2026-12-03T11:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_daily: Some(2),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v),
            [
                ("2026-12-03T11:00:00Z", true, vec!["daily 2026-12-03"]),
                ("2026-12-03T10:00:00Z", false, vec!["matches no keep policy"]),
                ("2026-12-02T09:00:00Z", true, vec!["daily 2026-12-02"]),
                ("2026-12-02T00:00:00Z", false, vec!["matches no keep policy"]),
                ("2026-12-01T23:59:59Z", false, vec!["matches no keep policy"]),
                ("2026-12-01T12:00:00Z", false, vec!["matches no keep policy"]),
                ("2026-12-01T08:00:00Z", false, vec!["matches no keep policy"]),
            ]
        );
        let v = plan(
            &cands,
            &Policy {
                keep_daily: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            kept(&v),
            [
                "2026-12-03T11:00:00Z",
                "2026-12-02T09:00:00Z",
                "2026-12-01T23:59:59Z"
            ]
        );
    }

    #[test]
    fn daily_counts_only_days_that_have_backups() {
        // A month-long gap does not use up the count: the job stopped, the old backups stay.
        let cands = [
            cand("app", "2026-12-20T10:00:00Z"),
            cand("app", "2026-11-02T10:00:00Z"),
            cand("app", "2026-11-01T10:00:00Z"),
            cand("app", "2026-10-31T10:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_daily: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            kept(&v),
            [
                "2026-12-20T10:00:00Z",
                "2026-11-02T10:00:00Z",
                "2026-11-01T10:00:00Z"
            ]
        );
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_hour() {
        let cands = [
            cand("app", "2026-12-01T10:05:00Z"),
            cand("app", "2026-12-01T10:55:00Z"),
            cand("app", "2026-12-01T11:00:00Z"),
            cand("app", "2026-12-01T11:30:00Z"),
            cand("app", "2026-12-01T13:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_hourly: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v).into_iter().filter(|s| s.1).collect::<Vec<_>>(),
            [
                ("2026-12-01T13:00:00Z", true, vec!["hourly 2026-12-01T13"]),
                ("2026-12-01T11:30:00Z", true, vec!["hourly 2026-12-01T11"]),
                ("2026-12-01T10:55:00Z", true, vec!["hourly 2026-12-01T10"]),
            ]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_boundary() {
        // 2026 has 53 ISO weeks: 2026-W53 runs Mon 2026-12-28 to Sun 2027-01-03.
        let cands = [
            cand("app", "2026-12-21T12:00:00Z"), // Mon, 2026-W52
            cand("app", "2026-12-27T23:00:00Z"), // Sun, 2026-W52
            cand("app", "2026-12-28T00:00:00Z"), // Mon, 2026-W53
            cand("app", "2026-12-31T12:00:00Z"), // Thu, 2026-W53
            cand("app", "2027-01-01T12:00:00Z"), // Fri, 2026-W53 (not 2027-W01)
            cand("app", "2027-01-03T23:59:59Z"), // Sun, 2026-W53
            cand("app", "2027-01-04T00:00:00Z"), // Mon, 2027-W01
            cand("app", "2027-01-05T12:00:00Z"), // Tue, 2027-W01
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_weekly: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v).into_iter().filter(|s| s.1).collect::<Vec<_>>(),
            [
                ("2027-01-05T12:00:00Z", true, vec!["weekly 2027-W01"]),
                ("2027-01-03T23:59:59Z", true, vec!["weekly 2026-W53"]),
                ("2026-12-27T23:00:00Z", true, vec!["weekly 2026-W52"]),
            ]
        );
        assert_eq!(v.len(), 8);

        // The other direction: Mon 2024-12-30 is already 2025-W01, Sun 2024-12-29 is 2024-W52.
        let cands = [
            cand("db", "2024-12-29T12:00:00Z"),
            cand("db", "2024-12-30T12:00:00Z"),
            cand("db", "2025-01-01T12:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_weekly: Some(5),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v),
            [
                ("2025-01-01T12:00:00Z", true, vec!["weekly 2025-W01"]),
                ("2024-12-30T12:00:00Z", false, vec!["matches no keep policy"]),
                ("2024-12-29T12:00:00Z", true, vec!["weekly 2024-W52"]),
            ]
        );
    }

    #[test]
    fn monthly_keeps_the_newest_of_each_month_with_backups() {
        let cands = [
            cand("app", "2026-09-15T00:00:00Z"),
            cand("app", "2026-09-30T23:59:59Z"),
            cand("app", "2026-10-01T00:00:00Z"),
            cand("app", "2026-10-31T12:00:00Z"),
            // No November.
            cand("app", "2026-12-01T00:00:00Z"),
            cand("app", "2026-12-02T00:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_monthly: Some(2),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v).into_iter().filter(|s| s.1).collect::<Vec<_>>(),
            [
                ("2026-12-02T00:00:00Z", true, vec!["monthly 2026-12"]),
                ("2026-10-31T12:00:00Z", true, vec!["monthly 2026-10"]),
            ]
        );
        let v = plan(
            &cands,
            &Policy {
                keep_monthly: Some(3),
                ..policy()
            },
        );
        assert_eq!(
            kept(&v),
            [
                "2026-12-02T00:00:00Z",
                "2026-10-31T12:00:00Z",
                "2026-09-30T23:59:59Z"
            ]
        );
    }

    #[test]
    fn yearly_keeps_the_newest_of_each_year_with_backups() {
        let cands = [
            cand("app", "2023-06-01T00:00:00Z"),
            cand("app", "2024-01-01T00:00:00Z"),
            cand("app", "2024-12-31T23:59:59Z"),
            cand("app", "2026-01-01T00:00:00Z"),
            cand("app", "2026-07-01T00:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_yearly: Some(2),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v).into_iter().filter(|s| s.1).collect::<Vec<_>>(),
            [
                ("2026-07-01T00:00:00Z", true, vec!["yearly 2026"]),
                ("2024-12-31T23:59:59Z", true, vec!["yearly 2024"]),
            ]
        );
        assert_eq!(v.iter().filter(|v| !v.keep).count(), 3);
    }

    #[test]
    fn within_is_relative_to_the_newest_backup_not_to_now() {
        // Years in the past: relative to now, a 2-day window would keep nothing.
        let cands = [
            cand("app", "2020-03-10T12:00:00Z"),
            cand("app", "2020-03-08T12:00:00Z"), // exactly 2 days before the newest: kept
            cand("app", "2020-03-08T11:59:59Z"), // one second more: removed
            cand("app", "2020-03-09T00:00:00Z"),
            cand("app", "2020-01-01T00:00:00Z"),
        ];
        let secs = parse_duration("2d").unwrap();
        let v = plan(
            &cands,
            &Policy {
                keep_within_secs: Some(secs),
                ..policy()
            },
        );
        assert_eq!(
            summary(&v),
            [
                ("2020-03-10T12:00:00Z", true, vec!["within 2d of newest"]),
                ("2020-03-09T00:00:00Z", true, vec!["within 2d of newest"]),
                ("2020-03-08T12:00:00Z", true, vec!["within 2d of newest"]),
                ("2020-03-08T11:59:59Z", false, vec!["matches no keep policy"]),
                ("2020-01-01T00:00:00Z", false, vec!["matches no keep policy"]),
            ]
        );
        let v = plan(
            &cands,
            &Policy {
                keep_within_secs: Some(parse_duration("1d12h").unwrap()),
                ..policy()
            },
        );
        assert_eq!(v[0].reasons, ["within 1d12h of newest"]);
        assert_eq!(kept(&v), ["2020-03-10T12:00:00Z", "2020-03-09T00:00:00Z"]);
        // A huge window does not overflow.
        let v = plan(
            &cands,
            &Policy {
                keep_within_secs: Some(u64::MAX),
                ..policy()
            },
        );
        assert!(v.iter().all(|v| v.keep));
    }

    #[test]
    fn policies_add_up_and_list_every_reason_in_order() {
        let cands = [
            cand("app", "2026-12-03T10:30:00Z"),
            cand("app", "2026-12-03T10:00:00Z"),
            cand("app", "2026-12-03T09:00:00Z"),
            cand("app", "2026-12-02T10:00:00Z"),
            cand("app", "2026-11-20T10:00:00Z"),
            cand("app", "2025-06-01T10:00:00Z"),
        ];
        let p = Policy {
            keep_last: Some(2),
            keep_hourly: Some(2),
            keep_daily: Some(2),
            keep_weekly: Some(1),
            keep_monthly: Some(2),
            keep_yearly: Some(2),
            keep_within_secs: Some(3_600),
        };
        let v = plan(&cands, &p);
        assert_eq!(
            summary(&v),
            [
                (
                    "2026-12-03T10:30:00Z",
                    true,
                    vec![
                        "last 2",
                        "daily 2026-12-03",
                        "hourly 2026-12-03T10",
                        "weekly 2026-W49",
                        "monthly 2026-12",
                        "yearly 2026",
                        "within 1h of newest",
                    ]
                ),
                (
                    "2026-12-03T10:00:00Z",
                    true,
                    vec!["last 2", "within 1h of newest"]
                ),
                ("2026-12-03T09:00:00Z", true, vec!["hourly 2026-12-03T09"]),
                ("2026-12-02T10:00:00Z", true, vec!["daily 2026-12-02"]),
                ("2026-11-20T10:00:00Z", true, vec!["monthly 2026-11"]),
                ("2025-06-01T10:00:00Z", true, vec!["yearly 2025"]),
            ]
        );
        // Dropping one policy drops exactly what only it kept.
        let v = plan(
            &cands,
            &Policy {
                keep_yearly: None,
                ..p.clone()
            },
        );
        assert_eq!(v[5].reasons, ["matches no keep policy"]);
        assert!(!v[5].keep && v[..5].iter().all(|v| v.keep));
        assert!(!v[0].reasons.iter().any(|r| r.starts_with("yearly")));
    }

    #[test]
    fn groups_are_planned_independently_and_sorted_by_name() {
        let cands = [
            cand("app-pre-restore", "2020-01-01T00:00:00Z"),
            cand("app", "2026-12-02T00:00:00Z"),
            cand("app-pre-restore", "2020-01-02T00:00:00Z"),
            cand("app", "2026-12-01T00:00:00Z"),
            cand("my-app", "2026-12-01T00:00:00Z"),
        ];
        let v = plan(
            &cands,
            &Policy {
                keep_last: Some(1),
                keep_within_secs: Some(86_400),
                ..policy()
            },
        );
        let rows: Vec<_> = v
            .iter()
            .map(|v| (v.group.as_str(), v.created_at.as_str(), v.keep))
            .collect();
        assert_eq!(
            rows,
            [
                ("app", "2026-12-02T00:00:00Z", true),
                ("app", "2026-12-01T00:00:00Z", true),
                ("app-pre-restore", "2020-01-02T00:00:00Z", true),
                ("app-pre-restore", "2020-01-01T00:00:00Z", true),
                ("my-app", "2026-12-01T00:00:00Z", true),
            ]
        );
        // Each group's newest is "last 1", and within is measured from each group's own newest.
        assert_eq!(v[0].reasons, ["last 1", "within 1d of newest"]);
        assert_eq!(v[1].reasons, ["within 1d of newest"]);
        assert_eq!(v[2].reasons, ["last 1", "within 1d of newest"]);
        assert_eq!(v[3].reasons, ["within 1d of newest"]);
        assert_eq!(v[4].reasons, ["last 1", "within 1d of newest"]);

        let v = plan(
            &cands,
            &Policy {
                keep_daily: Some(1),
                ..policy()
            },
        );
        assert_eq!(
            v.iter().map(|v| v.keep).collect::<Vec<_>>(),
            [true, false, true, false, true],
            "a day's bucket in one group does not hide a backup of another group"
        );
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let cands = [
            cand("app", "2026-12-01T00:00:00Z"),
            cand("app", "2026-12-02T00:00:00Z"),
        ];
        assert!(policy().is_empty());
        let zeros = Policy {
            keep_last: Some(0),
            keep_hourly: Some(0),
            keep_daily: Some(0),
            keep_weekly: Some(0),
            keep_monthly: Some(0),
            keep_yearly: Some(0),
            keep_within_secs: Some(0),
        };
        assert!(zeros.is_empty(), "0 means not given, as in restic");
        for p in [policy(), zeros] {
            let v = plan(&cands, &p);
            assert!(v.iter().all(|v| v.keep && v.reasons == ["no policy given"]));
        }
        for p in [
            Policy {
                keep_last: Some(1),
                ..policy()
            },
            Policy {
                keep_hourly: Some(1),
                ..policy()
            },
            Policy {
                keep_daily: Some(1),
                ..policy()
            },
            Policy {
                keep_weekly: Some(1),
                ..policy()
            },
            Policy {
                keep_monthly: Some(1),
                ..policy()
            },
            Policy {
                keep_yearly: Some(1),
                ..policy()
            },
            Policy {
                keep_within_secs: Some(1),
                ..policy()
            },
        ] {
            assert!(!p.is_empty(), "{p:?}");
            assert_eq!(plan(&cands, &p).iter().filter(|v| v.keep).count(), 1, "{p:?}");
        }
        assert!(plan(
            &[],
            &Policy {
                keep_last: Some(1),
                ..policy()
            }
        )
        .is_empty());
    }

    #[test]
    fn verdicts_carry_rfc3339_times_and_serialize() {
        let c = Candidate {
            name: "x-20261201T101500Z.sql".into(),
            group: "x".into(),
            created: 1_796_120_100,
            snapshot_offset_ns: 0,
        };
        let v = plan(
            std::slice::from_ref(&c),
            &Policy {
                keep_last: Some(1),
                ..policy()
            },
        );
        assert_eq!(v[0].created_at, "2026-12-01T10:15:00Z");
        assert_eq!(at(&v[0].created_at), c.created);
        // Outside what RFC 3339 can carry: still one verdict, its own bucket.
        let far = [
            Candidate {
                name: "a".into(),
                group: "g".into(),
                created: i64::MAX,
                snapshot_offset_ns: 0,
            },
            Candidate {
                name: "b".into(),
                group: "g".into(),
                created: i64::MIN,
                snapshot_offset_ns: 0,
            },
        ];
        let v = plan(
            &far,
            &Policy {
                keep_yearly: Some(5),
                ..policy()
            },
        );
        assert_eq!(v[0].created_at, format!("@{}", i64::MAX));
        assert!(v.iter().all(|v| v.keep));
        // Policy (config, --json) and Verdict (--json output) go through serde.
        fn serde_both<T: serde::Serialize + serde::de::DeserializeOwned>() {}
        serde_both::<Policy>();
        serde_both::<Verdict>();
    }

    #[test]
    fn parses_backup_names() {
        let t = at("2026-12-01T10:15:00Z");
        for (name, group) in [
            ("app-20261201T101500Z.tar.zst", "app"),
            ("app-pre-restore-20261201T101500Z.tar.zst", "app-pre-restore"),
            ("app-pre-merge-20261201T101500Z.tar.gz", "app-pre-merge"),
            ("my-app-20261201T101500Z-2.sql.zst", "my-app"),
            ("my-app-20261201T101500Z-17.tgz", "my-app"),
            ("app-20261201T101500Z.tar", "app"),
            ("app-20261201T101500Z.sql", "app"),
            ("app-20261201T101500Z.sql.gz", "app"),
            ("app-20261201T101500Z.tar.zst.age", "app"),
            ("app.v2-20261201T101500Z.tar.zst", "app.v2"),
            ("données-20261201T101500Z.tar.zst", "données"),
            // The LAST stamp wins: an earlier stamp-like part is part of the stem.
            (
                "app-20250101T000000Z-20261201T101500Z.tar.zst",
                "app-20250101T000000Z",
            ),
            // A database once restored from a backup, e.g. "db-20250101T000000Z.restored.db".
            (
                "db-20250101T000000Z.restored-20261201T101500Z.tar.zst",
                "db-20250101T000000Z.restored",
            ),
        ] {
            assert_eq!(parse_backup_name(name), Some((group.to_string(), t)), "{name}");
        }
        assert_eq!(parse_backup_name("a-19700101T000000Z.sql"), Some(("a".into(), 0)));
        assert_eq!(
            parse_backup_name("a-20240229T235959Z.sql"),
            Some(("a".into(), at("2024-02-29T23:59:59Z")))
        );
        for name in [
            "pre-migration.tar.zst",
            "app.tar.zst",
            "app-20261201T101500Z",          // no extension
            "app-20261201T101500Z.",         // empty extension
            "app-20261201T101500Z-.tar.zst", // "-" without a number
            "app-20261201T101500Z-2x.tar.zst",
            "app-20261201T101500Zjunk.tar.zst",
            "app_20261201T101500Z.tar.zst", // no dash before the stamp
            "-20261201T101500Z.tar.zst",    // empty group
            "20261201T101500Z.tar.zst",
            "app-2026121T101500Z.tar.zst", // short
            "app-20261201t101500z.tar.zst",
            "app-20261201X101500Z.tar.zst",
            "app-20261201T101500X.tar.zst",
            "app-20261301T101500Z.tar.zst", // month 13
            "app-20250229T101500Z.tar.zst", // not a leap year
            "app-20261201T246000Z.tar.zst",
            "app-20261201T235960Z.tar.zst",  // leap seconds are not stamps
            "app-2026120１T101500Z.tar.zst", // a non-ASCII digit
            "",
            "-",
        ] {
            assert_eq!(parse_backup_name(name), None, "{name}");
        }
    }

    #[test]
    fn parses_durations() {
        for (s, secs) in [
            ("30d", 30 * 86_400),
            ("12h", 12 * 3_600),
            ("90m", 90 * 60),
            ("45s", 45),
            ("2w", 14 * 86_400),
            ("1y", 365 * 86_400),
            ("1d12h", 36 * 3_600),
            ("1w2d3h4m5s", 9 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
            ("0d", 0),
            ("007h", 7 * 3_600),
        ] {
            assert_eq!(parse_duration(s), Ok(secs), "{s}");
        }
        for s in [
            "",
            "30",
            "d",
            "30x",
            "30D",
            "1M",
            "-1d",
            "+1d",
            "1.5d",
            " 1d",
            "1d ",
            "1 d",
            "1d12",
            "99999999999999999999s",
            "584942417356y",
        ] {
            let err = parse_duration(s).unwrap_err();
            assert!(err.contains(&format!("{s:?}")), "{s}: {err}");
        }
        assert!(parse_duration("30x").unwrap_err().contains("unknown unit 'x'"));
        // What keep-within reasons print reads back.
        for secs in [
            0,
            1,
            59,
            60,
            90,
            3_600,
            86_400,
            36 * 3_600,
            30 * 86_400,
            400 * 86_400 + 61,
        ] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs), "{secs}");
        }
        assert_eq!(format_duration(30 * 86_400), "30d");
        assert_eq!(format_duration(90), "1m30s");
    }
}
