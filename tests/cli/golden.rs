//! Golden reports: a fixed set of commands over a fixture, their `--json` reports compared with
//! the files in tests/golden/ once what changes from run to run (times, stamps, temp paths,
//! sizes and checksums of bytes that embed a time, random keys) is taken out. A restructuring
//! that changes no behaviour leaves them identical; a change of behaviour shows here, field by
//! field. `LITEVAULT_BLESS=1 cargo test --test cli golden` writes the files anew (review the
//! diff before committing it).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// Keys whose values differ between two runs of the same commands.
const VARYING: &[&str] = &[
    // Clocks.
    "duration_ms",
    "snapshot_ms",
    "phases",
    "created_at",
    "snapshot_at",
    "modified",
    "mtime",
    // The machine and the moment.
    "host",
    "space_available",
    // Bytes that embed the clock (the manifest's times) or a random chain key.
    "archive_size",
    "archive_sha256",
    "manifest_sha256",
    "freed_bytes",
    "size",
    "body_size",
    "frame",
    "key",
    "sha256",
    "compressed_bytes",
];

/// `v` with the varying keys (and every `*_ms`) taken out, the workspace's path and name stamps
/// replaced, and the SHA-256 in a check's detail (of bytes that embed a time) masked.
fn normalize(v: &Value, dir: &str) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !VARYING.contains(&k.as_str()) && !k.ends_with("_ms"))
                .map(|(k, v)| match (k.as_str(), v) {
                    ("detail", Value::String(s)) => {
                        (k.clone(), Value::String(mask_sha256(&normalize_text(s, dir))))
                    }
                    _ => (k.clone(), normalize(v, dir)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| normalize(v, dir)).collect()),
        Value::String(s) => Value::String(normalize_text(s, dir)),
        other => other.clone(),
    }
}

fn normalize_text(s: &str, dir: &str) -> String {
    let s = s.replace(dir, "<dir>");
    // Name stamps (20261206T101500Z) and RFC 3339 times.
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let stamp = b.len() >= i + 16
            && b[i..i + 8].iter().all(u8::is_ascii_digit)
            && b[i + 8] == b'T'
            && b[i + 9..i + 15].iter().all(u8::is_ascii_digit)
            && b[i + 15] == b'Z';
        let rfc = b.len() >= i + 20
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 7] == b'-'
            && b[i + 10] == b'T'
            && b[i + 13] == b':'
            && b[i + 19] == b'Z';
        if stamp {
            out.push_str("<stamp>");
            i += 16;
        } else if rfc {
            out.push_str("<time>");
            i += 20;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every run of 64 hex digits in `s` as `<sha256>`.
fn mask_sha256(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in s.chars() {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        out.push_str(if run.len() == 64 { "<sha256>" } else { &run });
        run.clear();
        out.push(ch);
    }
    out.push_str(if run.len() == 64 { "<sha256>" } else { &run });
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Runs `args` (with `--json`) and compares its normalized report with `tests/golden/<name>.json`.
fn check(env: &Env, name: &str, args: &[&str], diffs: &mut Vec<String>) -> Value {
    let mut argv = args.to_vec();
    argv.push("--json");
    let r = env.run(&argv);
    assert!(r.code == 0 || r.code == 3, "{name}: {args:?}: {}", r.stderr);
    let report = r.json();
    let dir = env.dir.path().to_str().unwrap().to_string();
    let mut got = normalize(&report, &dir);
    if name == "backup-sql" {
        // A dump's database_sha256 is its text's, which holds its creation time.
        got.as_object_mut().unwrap().remove("database_sha256");
    }
    let file = golden_dir().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
    if std::env::var_os("LITEVAULT_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&file, &text).unwrap();
    } else {
        let want = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (LITEVAULT_BLESS=1 writes it)", file.display()));
        if want != text {
            diffs.push(format!(
                "{name}: {args:?}\n--- {}\n{want}\n+++ now\n{text}",
                file.display()
            ));
        }
    }
    report
}

#[test]
fn json_reports_match_the_golden_files() {
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let db_s = db.to_str().unwrap();
    let mut diffs = Vec::new();
    let backup = check(&env, "backup", &["backup", db_s], &mut diffs);
    let archive = backup["archive"].as_str().unwrap().to_string();
    let dump = check(
        &env,
        "backup-sql",
        &["backup", db_s, "--format", "sql", "-o", "app-dump.sql.zst"],
        &mut diffs,
    );
    let dump = dump["archive"].as_str().unwrap().to_string();
    check(&env, "list", &["list"], &mut diffs);
    check(&env, "show", &["show", &archive], &mut diffs);
    check(&env, "verify-archive", &["verify", &archive], &mut diffs);
    check(&env, "verify-dump", &["verify", &dump], &mut diffs);
    check(&env, "verify-database", &["verify", db_s], &mut diffs);
    check(
        &env,
        "restore-plan",
        &["restore", &archive, "new.db", "--dry-run"],
        &mut diffs,
    );
    check(&env, "restore", &["restore", &archive, "new.db"], &mut diffs);
    make_db(
        &env.path("new.db"),
        "DELETE FROM InvoiceLine WHERE InvoiceLineId % 3 = 0; UPDATE Artist SET Name = Name || '!' WHERE ArtistId % 5 = 0;",
    );
    check(
        &env,
        "merge-plan",
        &["merge", &dump, "new.db", "--dry-run"],
        &mut diffs,
    );
    check(&env, "merge", &["merge", &dump, "new.db"], &mut diffs);
    make_db(&db, "UPDATE Track SET Name = Name || '.' WHERE TrackId % 50 = 0;");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    check(
        &env,
        "backup-incremental",
        &["backup", db_s, "--incremental"],
        &mut diffs,
    );
    check(
        &env,
        "prune-plan",
        &["prune", "--keep-last", "1", "--dry-run"],
        &mut diffs,
    );
    assert!(diffs.is_empty(), "reports changed:\n{}", diffs.join("\n"));
}
