//! `litevault verify`: every check by name; damage in any entry is found and named.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::util::*;

fn checks(v: &serde_json::Value) -> Vec<(String, String)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn failed(v: &serde_json::Value) -> Vec<String> {
    checks(v)
        .into_iter()
        .filter(|(_, s)| s == "fail")
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn verify_archive_runs_every_check_by_name() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/datasette_fixtures.db");
    let archive = env.backup(&src, &[]);
    let v = env
        .run(&["verify", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["kind"], "archive");
    let names: Vec<String> = checks(&v).into_iter().map(|(n, _)| n).collect();
    for expected in [
        "archive structure",
        "checksum manifest.json",
        "checksum database.sqlite",
        "manifest header",
        "row counts",
        "integrity_check",
        "foreign_key_check",
        "fts5 integrity searchable_fts",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let quick = env
        .run(&["verify", archive.to_str().unwrap(), "--quick", "--json"])
        .ok()
        .json();
    assert!(checks(&quick).iter().any(|(n, _)| n == "quick_check"));
    let human = env.run(&["verify", archive.to_str().unwrap()]).ok().stdout;
    assert!(human.contains("checks passed"), "{human}");
}

#[test]
fn verify_database_files() {
    let env = Env::new();
    for db in fixtures_in("real") {
        if is_old_sqlite_index(&db) {
            // Intact under the SQLite that wrote it; an index disagrees under ours.
            let v = env
                .run(&["verify", db.to_str().unwrap(), "--json"])
                .code(3)
                .json();
            assert_eq!(failed(&v), ["integrity_check"]);
            assert_eq!(check(&v, "integrity_check")["class"], "index", "{v}");
            continue;
        }
        let v = env.run(&["verify", db.to_str().unwrap(), "--json"]).ok().json();
        assert_eq!(v["kind"], "database");
        assert_eq!(v["ok"], true, "{}: {v}", db.display());
    }
    let mut caught = 0;
    for db in fixtures_in("corrupt") {
        let r = env.run(&["verify", db.to_str().unwrap(), "--json"]);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(
            r.code == 3 || r.code == 1,
            "{}: exit {} {}",
            db.display(),
            r.code,
            r.stderr
        );
        if r.code == 3 {
            caught += 1;
        }
    }
    assert!(
        caught >= 25,
        "corruption found in only {caught} corrupt databases"
    );
    for db in fixtures_in("invalid") {
        env.run(&["verify", db.to_str().unwrap()]).code(1);
    }
}

#[test]
fn foreign_key_violations_fail_a_database_but_not_an_archive_that_recorded_them() {
    let env = Env::new();
    let db = env.path("fk.db");
    make_db(
        &db,
        "PRAGMA foreign_keys=OFF; CREATE TABLE p(id INTEGER PRIMARY KEY);
         CREATE TABLE c(id INTEGER PRIMARY KEY, p INT REFERENCES p(id)); INSERT INTO c VALUES (1, 99);",
    );
    let v = env
        .run(&["verify", db.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert_eq!(failed(&v), ["foreign_key_check"]);
    let archive = env.backup(&db, &[]);
    let m = env
        .run(&["show", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(m["foreign_key_violations"], 1);
    env.run(&["verify", archive.to_str().unwrap()]).ok();
}

#[test]
fn damaged_fts_index_is_found() {
    let env = Env::new();
    let db = env.path("fts.db");
    make_db(
        &db,
        "CREATE VIRTUAL TABLE docs USING fts5(body);
         INSERT INTO docs SELECT 'word' || value || ' common text' FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 200) SELECT value FROM s);
         UPDATE docs_data SET block = x'0000' WHERE id > 10;",
    );
    // A backup checks storage by default (the index's b-trees are sound); --check-fts also
    // re-reads the index and refuses.
    let r = env.run(&["backup", db.to_str().unwrap(), "--check-fts"]).code(3);
    assert!(r.stderr.contains("fts5"), "{}", r.stderr);
    let archive = env.backup(&db, &[]);
    let v = env
        .run(&["verify", archive.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert!(
        failed(&v)
            .iter()
            .any(|n| n == "fts5 integrity docs" || n == "integrity_check"),
        "{v}"
    );
    // Classified as full-text damage of that table, with what to do.
    for name in failed(&v) {
        let c = check(&v, &name);
        assert_eq!(c["class"], "fts", "{c}");
        assert_eq!(c["objects"], serde_json::json!(["docs"]), "{c}");
        assert!(c["action"].as_str().unwrap().contains("--quick"), "{c}");
    }
    // Rebuilding indexes does not touch a full-text index.
    env.run(&["verify", archive.to_str().unwrap(), "--reindex", "all"])
        .code(3);
    // --quick checks storage only and says what it left out.
    let q = env
        .run(&["verify", archive.to_str().unwrap(), "--quick", "--json"])
        .ok()
        .json();
    let skipped: Vec<&serde_json::Value> = q["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{q}");
    assert_eq!(skipped[0]["name"], "fts5 integrity docs", "{q}");
    env.run(&["verify", db.to_str().unwrap(), "--quick"]).ok();
    env.run(&["verify", db.to_str().unwrap()]).code(3);
    // The default restore refuses the damaged index; --quick restores the database as it was.
    let target = env.path("restored.db");
    let r = env
        .run(&["restore", archive.to_str().unwrap(), target.to_str().unwrap()])
        .code(3);
    assert!(
        r.stderr.contains("hint: a full-text index") && r.stderr.contains("--quick"),
        "{}",
        r.stderr
    );
    assert!(!target.exists());
    env.run(&[
        "restore",
        archive.to_str().unwrap(),
        target.to_str().unwrap(),
        "--quick",
    ])
    .ok();
    assert_eq!(content_hash(&target), content_hash(&db));
}

/// Byte ranges of each entry's content inside an uncompressed tar.
fn entry_ranges(archive: &Path) -> Vec<(String, std::ops::Range<usize>)> {
    let f = std::fs::File::open(archive).unwrap();
    let mut t = tar::Archive::new(f);
    let mut out = Vec::new();
    for e in t.entries().unwrap() {
        let e = e.unwrap();
        let start = e.raw_file_position() as usize;
        out.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            start..start + e.size() as usize,
        ));
    }
    out
}

fn tar_archive(env: &Env) -> (PathBuf, PathBuf) {
    let src = copy_fixture(env, "real/Chinook_Sqlite.sqlite");
    let out = env.path("plain.tar");
    env.run(&[
        "backup",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--compression",
        "none",
    ])
    .ok();
    (src, out)
}

#[test]
fn a_flipped_byte_in_any_entry_is_detected_and_named() {
    let env = Env::new();
    let (_, archive) = tar_archive(&env);
    let clean = std::fs::read(&archive).unwrap();
    let ranges = entry_ranges(&archive);
    let db_range = ranges[1].1.clone();
    let cases = [
        // In the manifest's JSON: changes a character inside the pretty-printed text.
        (ranges[0].1.start + 20, vec!["checksum manifest.json"]),
        // In database pages: the data and the first, middle and last page.
        (db_range.start + 5000, vec!["checksum database.sqlite"]),
        (
            db_range.start + db_range.len() / 2,
            vec!["checksum database.sqlite"],
        ),
        (db_range.end - 1, vec!["checksum database.sqlite"]),
    ];
    let bad = env.path("bad.tar");
    for (offset, expect) in cases {
        let mut b = clean.clone();
        b[offset] ^= 0x20;
        std::fs::write(&bad, &b).unwrap();
        let r = env.run(&["verify", bad.to_str().unwrap(), "--json"]).code(3);
        let v = r.json();
        let f = failed(&v);
        for e in &expect {
            assert!(
                f.iter().any(|n| n == e) || f.iter().any(|n| n == "archive structure"),
                "offset {offset}: {f:?}"
            );
        }
        // And restore refuses it, creating nothing.
        let target = env.path("never.db");
        env.run(&["restore", bad.to_str().unwrap(), target.to_str().unwrap()])
            .code(3);
        assert!(!target.exists());
    }
    // In SHA256SUMS itself: a checksum no longer matches its entry.
    let sums = ranges[2].1.clone();
    let mut b = clean.clone();
    b[sums.start + 3] = if b[sums.start + 3] == b'0' { b'1' } else { b'0' };
    std::fs::write(&bad, &b).unwrap();
    let v = env
        .run(&["verify", bad.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert_eq!(failed(&v), ["checksum manifest.json"]);
}

#[test]
fn flipped_bytes_and_truncations_of_compressed_archives_are_detected() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    for codec in ["zstd", "gzip"] {
        let out = env.path(&format!("a.{codec}"));
        env.run(&[
            "backup",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--compression",
            codec,
        ])
        .ok();
        let clean = std::fs::read(&out).unwrap();
        let bad = env.path("bad");
        let n = clean.len();
        for offset in [n / 5, n / 2, n - 10] {
            let mut b = clean.clone();
            b[offset] ^= 0x01;
            std::fs::write(&bad, &b).unwrap();
            let r = env.run(&["verify", bad.to_str().unwrap()]);
            assert_eq!(r.code, 3, "{codec} flip at {offset}: {} {}", r.stdout, r.stderr);
        }
        for len in [0, 100, n / 3, n - 600, n - 1] {
            std::fs::write(&bad, &clean[..len]).unwrap();
            let r = env.run(&["verify", bad.to_str().unwrap()]);
            assert!(
                r.code == 3 || (len == 0 && r.code == 1),
                "{codec} truncated to {len}: exit {} {}",
                r.code,
                r.stderr
            );
            let target = env.path("never.db");
            let r = env.run(&["restore", bad.to_str().unwrap(), target.to_str().unwrap()]);
            assert_ne!(r.code, 0);
            assert!(!target.exists());
        }
    }
}

/// Rebuilds an uncompressed archive with an edited manifest and consistent checksums: what an
/// attacker or a bug could produce. The manifest checks must still see through it.
fn rewrite_manifest(archive: &Path, out: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut t = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        parts.push((name, data));
    }
    let mut m: serde_json::Value = serde_json::from_slice(&parts[0].1).unwrap();
    edit(&mut m);
    parts[0].1 = serde_json::to_vec_pretty(&m).unwrap();
    let sums: String = parts[..2]
        .iter()
        .map(|(n, d)| {
            format!(
                "{}  {n}\n",
                litevault::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(d))
            )
        })
        .collect();
    parts[2].1 = sums.into_bytes();
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in &parts {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn manifest_claims_are_checked_against_the_database() {
    let env = Env::new();
    let (_, archive) = tar_archive(&env);
    let bad = env.path("edited.tar");
    rewrite_manifest(&archive, &bad, |m| {
        let t = m["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["name"] == "Track")
            .unwrap();
        t["rows"] = serde_json::json!(1);
    });
    let v = env
        .run(&["verify", bad.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert_eq!(failed(&v), ["row counts"]);
    rewrite_manifest(&archive, &bad, |m| m["user_version"] = serde_json::json!(7));
    let v = env
        .run(&["verify", bad.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert_eq!(failed(&v), ["manifest header"]);
    rewrite_manifest(&archive, &bad, |m| m["format"] = serde_json::json!("litevault/9"));
    let r = env.run(&["verify", bad.to_str().unwrap()]).code(3);
    assert!(r.stdout.contains("unsupported format"), "{}", r.stdout);
}

#[test]
fn an_index_that_disagrees_with_its_table_is_classified_once_per_index_with_a_count() {
    let env = Env::new();
    let db = copy_fixture(&env, OLD_SQLITE_INDEX);
    // The backup's storage check passes: the rows and pages are sound.
    let archive = env.backup(&db, &[]);
    let a = archive.to_str().unwrap();
    let v = env.run(&["verify", a, "--json"]).code(3).json();
    assert_eq!(failed(&v), ["integrity_check"], "{v}");
    let c = check(&v, "integrity_check");
    assert_eq!(c["class"], "index", "{c}");
    assert_eq!(c["objects"], serde_json::json!(["i"]), "{c}");
    let action = c["action"].as_str().unwrap();
    assert!(
        action.contains("the table data is intact; run with --reindex"),
        "{action}"
    );
    let findings = c["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "one finding per index, not one per row: {c}");
    let f = &findings[0];
    assert_eq!(
        (f["class"].as_str(), f["kind"].as_str()),
        (Some("index"), Some("index"))
    );
    assert_eq!(
        (f["object"].as_str(), f["table"].as_str()),
        (Some("i"), Some("t"))
    );
    assert_eq!(f["count"], 6, "{f}");
    assert_eq!(f["examples"].as_array().unwrap().len(), 3, "{f}");
    assert_eq!(f["examples"][0], "row 1 missing from index i");
    // The text report: the index once, with its count and what to do; not a line per row.
    let out = env.run(&["verify", a]).code(3).stdout;
    assert_eq!(
        out.matches("index \"i\" on table \"t\": 6 index problems")
            .count(),
        1,
        "{out}"
    );
    assert!(!out.contains("row 7 missing"), "{out}");
    assert!(out.contains("integrity_check (index)"), "{out}");
    assert!(
        out.contains("what to do: the table data is intact; run with --reindex"),
        "{out}"
    );
    // The database file itself reads the same way.
    let v = env
        .run(&["verify", db.to_str().unwrap(), "--json"])
        .code(3)
        .json();
    assert_eq!(check(&v, "integrity_check")["objects"], serde_json::json!(["i"]));
}

#[test]
fn verify_reindex_checks_a_rebuilt_copy_and_says_what_it_rebuilt() {
    let env = Env::new();
    let db = copy_fixture(&env, OLD_SQLITE_INDEX);
    let before = std::fs::read(&db).unwrap();
    let archive = env.backup(&db, &[]);
    let a = archive.to_str().unwrap();
    // The disputed index only; the other one (j, over the REAL itself) agrees.
    let v = env.run(&["verify", a, "--reindex", "--json"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["reindexed"], serde_json::json!(["i"]), "{v}");
    let r = check(&v, "reindex");
    assert_eq!(r["status"], "pass");
    assert_eq!(r["objects"], serde_json::json!(["i"]), "{r}");
    assert_eq!(r["findings"][0]["count"], 6, "what the first check found: {r}");
    assert_eq!(check(&v, "integrity_check")["status"], "pass");
    assert_eq!(check(&v, "row counts")["status"], "pass");
    let v = env.run(&["verify", "--reindex", a, "--json"]).ok().json();
    assert_eq!(v["reindexed"], serde_json::json!(["i"]), "{v}");
    let out = env.run(&["verify", a, "--reindex"]).ok().stdout;
    assert!(
        out.contains("rebuilt 1 index(es) in the checked copy: i"),
        "{out}"
    );
    // --reindex all rebuilds every index, before the checks.
    let v = env.run(&["verify", a, "--reindex", "all", "--json"]).ok().json();
    assert_eq!(v["reindexed"], serde_json::json!(["i", "j"]), "{v}");
    let v = env.run(&["verify", a, "--reindex=all", "--json"]).ok().json();
    assert_eq!(v["reindexed"], serde_json::json!(["i", "j"]), "{v}");
    // A database file is checked in a temp copy; the file is not changed.
    let v = env
        .run(&["verify", db.to_str().unwrap(), "--reindex", "--json"])
        .ok()
        .json();
    assert_eq!(v["reindexed"], serde_json::json!(["i"]), "{v}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "verify changed the database");
    env.run(&["verify", db.to_str().unwrap()]).code(3);
    // Nothing disputed: nothing rebuilt, and the report says so.
    let fine = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let fine_archive = env.backup(&fine, &[]);
    let v = env
        .run(&["verify", fine_archive.to_str().unwrap(), "--reindex", "--json"])
        .ok()
        .json();
    assert_eq!(v["reindexed"], serde_json::json!([]));
    assert!(check(&v, "reindex")["detail"]
        .as_str()
        .unwrap()
        .contains("nothing to rebuild"));
    // --quick does not check indexes against tables: there is nothing it could dispute.
    let r = env.run(&["verify", a, "--quick", "--reindex"]).code(2);
    assert!(r.stderr.contains("--reindex all"), "{}", r.stderr);
    env.run(&["verify", a, "--quick", "--reindex", "all"]).ok();
}

#[test]
fn storage_damage_is_classified_storage_and_reindex_does_not_make_it_pass() {
    let env = Env::new();
    // Damaged pages in a table and in an index, and the index's count off as a result.
    let db = fixture("corrupt/corruptL_11.db");
    let archive = env.backup(&db, &["--allow-corrupt"]);
    let a = archive.to_str().unwrap();
    for extra in [&[][..], &["--reindex"][..], &["--reindex", "all"][..]] {
        let mut args = vec!["verify", a, "--json"];
        args.extend_from_slice(extra);
        let v = env.run(&args).code(3).json();
        let c = check(&v, "integrity_check");
        assert_eq!(c["class"], "storage", "{extra:?}: {c}");
        assert!(
            c["action"].as_str().unwrap().contains("--reindex cannot repair"),
            "{extra:?}: {c}"
        );
        assert!(
            !c["action"].as_str().unwrap().contains("the table data is intact"),
            "storage damage speaks alone: {c}"
        );
        let kinds: Vec<(&str, &str)> = c["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["class"].as_str().unwrap(), f["object"].as_str().unwrap_or("")))
            .collect();
        assert!(kinds.contains(&("storage", "t1")), "{kinds:?}");
        if extra == ["--reindex"] {
            // The disputed index is not rebuilt on top of damaged pages.
            assert_eq!(check(&v, "reindex")["status"], "skipped", "{v}");
            assert_eq!(v["reindexed"], serde_json::json!([]));
        }
    }
    // A database file that is damaged reads the same way.
    let v = env
        .run(&[
            "verify",
            fixture("corrupt/corruptL_08.db").to_str().unwrap(),
            "--json",
        ])
        .code(3)
        .json();
    assert_eq!(check(&v, "integrity_check")["class"], "storage", "{v}");
    assert_eq!(
        check(&v, "integrity_check")["objects"],
        serde_json::json!(["t1"]),
        "{v}"
    );
}
