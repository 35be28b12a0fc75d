//! `litevault restore`: guarded, verified before the swap, nothing lost by accident, and safe
//! against hostile archives.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_real_database_round_trips_through_restore() {
    let env = Env::new();
    for db in fixtures_in("real") {
        let archive = env.backup(&db, &[]);
        let target = env.path(&format!("restored-{}", db.file_name().unwrap().to_string_lossy()));
        // The old SQLite's database needs its disputed index rebuilt (tested below).
        let extra: &[&str] = if is_old_sqlite_index(&db) {
            &["--reindex"]
        } else {
            &[]
        };
        let mut args = vec!["restore", s(&archive), s(&target), "--json"];
        args.extend_from_slice(extra);
        let r = env.run(&args).ok().json();
        assert_eq!(r["restored"], true);
        assert_eq!(r["plan"]["strategy"], "create");
        assert_eq!(content_hash(&db), content_hash(&target), "{}", db.display());
        assert_eq!(integrity(&target), "ok");
    }
}

#[test]
fn existing_database_is_refused_without_overwrite_and_untouched() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(
        &target,
        "CREATE TABLE mine(x); INSERT INTO mine VALUES ('precious');",
    );
    let before = std::fs::read(&target).unwrap();
    let r = env.run(&["restore", s(&archive), s(&target)]).code(4);
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--overwrite"),
        "{}",
        r.stderr
    );
    let j = env
        .run(&["restore", s(&archive), s(&target), "--json"])
        .code(4)
        .json();
    assert_eq!(j["class"], "refused");
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn overwrite_keeps_a_safety_archive_that_restores_the_old_content() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(
        &target,
        "PRAGMA journal_mode=WAL; CREATE TABLE mine(x); INSERT INTO mine VALUES ('precious');",
    );
    let old_hash = content_hash(&target);
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(r["plan"]["strategy"], "live");
    let safety = PathBuf::from(r["safety_archive"].as_str().unwrap());
    assert!(safety.starts_with(env.backups()), "{}", safety.display());
    assert!(safety
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("app-pre-restore-"));
    assert_eq!(content_hash(&target), content_hash(&src));
    assert_eq!(integrity(&target), "ok");
    let back = env.path("back.db");
    env.run(&["restore", s(&safety), s(&back)]).ok();
    assert_eq!(content_hash(&back), old_hash);
    // Human output says where the old database went.
    let r = env.run(&["restore", s(&archive), s(&target), "--overwrite"]).ok();
    assert!(r.stdout.contains("previous database kept in"), "{}", r.stdout);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/northwind_205fc66.db");
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(&target, "CREATE TABLE mine(x);");
    let before = std::fs::read(&target).unwrap();
    let files_before = env.backup_files();
    let p = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--overwrite",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(p["strategy"], "live");
    assert_eq!(p["replaces"]["is_database"], true);
    assert!(p["space_needed"].as_u64().unwrap() > 0);
    assert!(p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "integrity_check"));
    let human = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--dry-run"])
        .ok()
        .stdout;
    assert!(
        human.contains("nothing was changed") && human.contains("safety archive"),
        "{human}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert_eq!(env.backup_files(), files_before);
    // A dry run refuses what the real run would refuse.
    env.run(&["restore", s(&archive), s(&target), "--dry-run"])
        .code(4);
    let new = env.path("new.db");
    let p = env
        .run(&["restore", s(&archive), s(&new), "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(p["strategy"], "create");
    assert!(!new.exists());
}

#[test]
fn newer_schema_is_refused_unless_allowed_and_older_warns() {
    let env = Env::new();
    let newer = env.path("newer.db");
    make_db(&newer, "PRAGMA user_version=5; CREATE TABLE t(x, y);");
    let archive = env.backup(&newer, &[]);
    let target = env.path("app.db");
    make_db(&target, "PRAGMA user_version=3; CREATE TABLE t(x);");
    let before = std::fs::read(&target).unwrap();
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite"])
        .code(4);
    assert!(
        r.stderr.contains("newer") && r.stderr.contains("--allow-newer-schema"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), before);
    env.run(&[
        "restore",
        s(&archive),
        s(&target),
        "--overwrite",
        "--allow-newer-schema",
    ])
    .ok();
    assert_eq!(query_i64(&target, "PRAGMA user_version"), 5);
    // Older archive into a newer database: allowed, with a warning.
    let older = env.path("older.db");
    make_db(&older, "PRAGMA user_version=1; CREATE TABLE t(x);");
    let archive = env.backup(&older, &[]);
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    let warnings = r["plan"]["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains("older")),
        "{r}"
    );
    assert_eq!(query_i64(&target, "PRAGMA user_version"), 1);
}

#[test]
fn stale_wal_of_a_missing_database_is_never_applied() {
    let env = Env::new();
    // A WAL database whose committed rows are only in its -wal, then the main file removed:
    // the -wal and -shm are left over.
    let old = env.path("app.db");
    let c = rusqlite::Connection::open(&old).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); INSERT INTO t VALUES ('stale');").unwrap();
    let wal = std::fs::read(env.path("app.db-wal")).unwrap();
    drop(c);
    // Closing checkpointed and removed the WAL; put a copy of it back, as a crash would leave it.
    std::fs::remove_file(&old).unwrap();
    std::fs::write(env.path("app.db-wal"), &wal).unwrap();

    let src = env.path("src.db");
    make_db(&src, "CREATE TABLE fresh(y); INSERT INTO fresh VALUES (1);");
    let archive = env.backup(&src, &[]);
    let r = env.run(&["restore", s(&archive), s(&old)]).code(4);
    assert!(r.stderr.contains("app.db-wal"), "{}", r.stderr);
    assert!(!old.exists());
    let r = env
        .run(&["restore", s(&archive), s(&old), "--overwrite", "--json"])
        .ok()
        .json();
    let moved = r["moved_aside"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{r}");
    assert!(
        std::fs::read(moved[0].as_str().unwrap()).unwrap() == wal,
        "the stale WAL is kept, not deleted"
    );
    assert_eq!(content_hash(&old), content_hash(&src));
    assert_eq!(
        query_i64(&old, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"),
        0
    );
}

#[test]
fn a_file_that_is_not_a_database_is_kept_aside_when_replaced() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/dbfuzz2-seed1.db");
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    std::fs::write(&target, b"garbage that an editor saved over the database").unwrap();
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(r["plan"]["strategy"], "swap");
    let aside = r["moved_aside"][0].as_str().unwrap();
    assert_eq!(
        std::fs::read(aside).unwrap(),
        b"garbage that an editor saved over the database"
    );
    assert_eq!(content_hash(&target), content_hash(&src));
}

#[test]
fn wal_target_with_another_page_size_is_swapped_when_idle() {
    let env = Env::new();
    let src = env.path("src.db");
    make_db(
        &src,
        "PRAGMA page_size=1024; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let archive = env.backup(&src, &[]);
    let target = env.path("app.db");
    make_db(
        &target,
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; CREATE TABLE old(x);",
    );
    let r = env
        .run(&["restore", s(&archive), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(r["plan"]["strategy"], "swap");
    assert!(r["safety_archive"].is_string());
    assert_eq!(query_i64(&target, "PRAGMA page_size"), 1024);
    assert_eq!(content_hash(&target), content_hash(&src));
    assert!(
        !env.path("app.db-wal").exists() || std::fs::metadata(env.path("app.db-wal")).unwrap().len() == 0
    );
}

#[test]
fn restore_checks_free_space_first() {
    // A target directory on a tiny tmpfs is not available in every sandbox; instead check the
    // plan's arithmetic against what statvfs reports for a real directory.
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let archive = env.backup(&src, &[]);
    let p = env
        .run(&[
            "restore",
            s(&archive),
            s(&env.path("x.db")),
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        p["space_needed"].as_u64().unwrap(),
        p["manifest"]["db_size"].as_u64().unwrap()
    );
    assert!(p["space_available"].as_u64().unwrap() > 0);
}

// ---- hostile archives -------------------------------------------------------------------

/// Builds a raw tar with arbitrary entry names and types (bypassing the tar crate's path
/// checks, as an attacker would).
fn raw_tar(entries: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name);
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(*kind));
        if *kind == b'2' {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn manifest_json(db_size: u64, page_count: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "litevault/1", "kind": "full", "tool_version": "0", "created_at": "2026-01-01T00:00:00Z",
        "source": "/x", "host": "h", "sqlite_version": "3", "method": "pages", "compression": "none",
        "compression_level": null, "db_size": db_size, "source_journal_mode": "delete",
        "snapshot_restarts": 0, "quick_check": "ok", "corrupt": false, "foreign_key_violations": 0,
        "page_size": 4096, "page_count": page_count, "freelist_count": 0, "journal_mode": "delete",
        "encoding": "UTF-8", "user_version": 0, "application_id": 0, "auto_vacuum": "none", "tables": []
    }))
    .unwrap()
}

#[test]
fn hostile_entries_are_refused_and_nothing_is_written_outside() {
    let env = Env::new();
    let m = manifest_json(4096, 1);
    let page = vec![0u8; 4096];
    let sums = b"";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_tar(&[(b"../evil", b'0', &m)])),
        ("absolute", raw_tar(&[(b"/tmp/litevault-evil", b'0', &m)])),
        ("symlink", raw_tar(&[(b"manifest.json", b'2', b"")])),
        ("hardlink", raw_tar(&[(b"manifest.json", b'1', b"")])),
        ("device", raw_tar(&[(b"manifest.json", b'3', b"")])),
        ("fifo", raw_tar(&[(b"manifest.json", b'6', b"")])),
        (
            "db traversal",
            raw_tar(&[(b"manifest.json", b'0', &m), (b"../database.sqlite", b'0', &page)]),
        ),
        (
            "db is a link",
            raw_tar(&[(b"manifest.json", b'0', &m), (b"database.sqlite", b'2', b"")]),
        ),
        (
            "extra entry",
            raw_tar(&[
                (b"manifest.json", b'0', &m),
                (b"database.sqlite", b'0', &page),
                (b"SHA256SUMS", b'0', sums),
                (b"../../evil.sh", b'0', b"rm -rf /"),
            ]),
        ),
        (
            "long name extension",
            raw_tar(&[(b"././@LongLink", b'L', b"../../../evil\0")]),
        ),
    ];
    for (what, bytes) in cases {
        let a = env.path("hostile.tar");
        std::fs::write(&a, &bytes).unwrap();
        let target = env.path("t.db");
        let r = env.run(&["restore", s(&a), s(&target)]);
        assert_eq!(r.code, 3, "{what}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("bad archive"), "{what}: {}", r.stderr);
        assert!(!target.exists(), "{what}");
        let v = env.run(&["verify", s(&a)]);
        assert_eq!(v.code, 3, "{what}: {}", v.stdout);
    }
    assert!(!env.dir.path().parent().unwrap().join("evil").exists());
    assert!(!Path::new("/tmp/litevault-evil").exists());
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("evil") && !n.starts_with(".litevault-")),
        "{names:?}"
    );
}

#[test]
fn decompression_bomb_is_refused_before_it_expands() {
    let env = Env::new();
    // The manifest claims one 4 KiB page; the database entry declares 1 GiB of zeros, which
    // zstd shrinks to a few tens of KiB.
    let m = manifest_json(4096, 1);
    let a = env.path("bomb.tar.zst");
    {
        let f = std::fs::File::create(&a).unwrap();
        let mut z = zstd::stream::write::Encoder::new(f, 19).unwrap();
        z.write_all(&raw_tar(&[(b"manifest.json", b'0', &m)])[..(512 + m.len()).div_ceil(512) * 512])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..15].copy_from_slice(b"database.sqlite");
        h.set_size(1 << 30);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        z.write_all(h.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            z.write_all(&zeros).unwrap();
        }
        z.finish().unwrap();
    }
    assert!(
        std::fs::metadata(&a).unwrap().len() < 1 << 20,
        "the bomb is small"
    );
    let target = env.path("t.db");
    let r = env.run(&["restore", s(&a), s(&target)]).code(3);
    assert!(r.stderr.contains("database.sqlite"), "{}", r.stderr);
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".litevault-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_backup_whose_index_disagrees_under_this_sqlite_is_refused_with_a_hint_and_restored_with_reindex() {
    let env = Env::new();
    let db = copy_fixture(&env, OLD_SQLITE_INDEX);
    let archive = env.backup(&db, &[]);
    let target = env.path("restored.db");
    // Refused, naming the class and the way out; nothing is created.
    let r = env.run(&["restore", s(&archive), s(&target)]).code(3);
    assert!(
        r.stderr.contains("index \"i\" on table \"t\": 6 index problems"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: the table data is intact; run with --reindex"),
        "{}",
        r.stderr
    );
    let j = env
        .run(&["restore", s(&archive), s(&target), "--json"])
        .code(3)
        .json();
    assert_eq!(j["class"], "corrupt");
    assert!(j["hint"].as_str().unwrap().contains("--reindex"), "{j}");
    assert!(!target.exists());
    // The plan says what --reindex will do.
    let plan = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--reindex",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert!(plan["checks"].to_string().contains("reindex"), "{plan}");
    // --reindex: the disputed index is rebuilt in the extracted copy; the rows are the same.
    let r = env
        .run(&["restore", s(&archive), s(&target), "--reindex", "--json"])
        .ok()
        .json();
    assert_eq!(r["reindexed"], serde_json::json!(["i"]), "{r}");
    assert_eq!(check(&r, "reindex")["objects"], serde_json::json!(["i"]), "{r}");
    assert_eq!(check(&r, "integrity_check")["status"], "pass", "{r}");
    assert_eq!(integrity(&target), "ok");
    assert_eq!(content_hash(&target), content_hash(&db), "table data changed");
    env.run(&["verify", s(&target)]).ok();
    let out = env
        .run(&["restore", s(&archive), s(&env.path("again.db")), "--reindex"])
        .ok()
        .stdout;
    assert!(
        out.contains("rebuilt 1 index(es) in the restored copy: i"),
        "{out}"
    );
    // The option may come first: a bare --reindex does not take the archive for its value.
    let r = env
        .run(&[
            "restore",
            "--reindex",
            s(&archive),
            s(&env.path("first.db")),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["reindexed"], serde_json::json!(["i"]), "{r}");
    // --reindex all, over an existing database (a live copy into it): every index rebuilt.
    let live = env.path("live.db");
    make_db(
        &live,
        "PRAGMA journal_mode=WAL; CREATE TABLE other(x); INSERT INTO other VALUES (1);",
    );
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&live),
            "--reindex",
            "all",
            "--overwrite",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["plan"]["strategy"], "live");
    assert_eq!(r["reindexed"], serde_json::json!(["i", "j"]), "{r}");
    assert_eq!(integrity(&live), "ok");
    assert_eq!(content_hash(&live), content_hash(&db));
    // With --quick there is nothing disputed to find: a usage error, unless all.
    env.run(&[
        "restore",
        s(&archive),
        s(&env.path("q.db")),
        "--quick",
        "--reindex",
    ])
    .code(2);
    env.run(&[
        "restore",
        s(&archive),
        s(&env.path("q.db")),
        "--quick",
        "--reindex",
        "all",
    ])
    .ok();
}

#[test]
fn reindex_all_leaves_every_real_database_s_rows_as_they_were() {
    let env = Env::new();
    for db in fixtures_in("real") {
        let archive = env.backup(&db, &[]);
        let target = env.path(&format!(
            "reindexed-{}",
            db.file_name().unwrap().to_string_lossy()
        ));
        let r = env
            .run(&["restore", s(&archive), s(&target), "--reindex", "all", "--json"])
            .ok()
            .json();
        let indexes = query_i64(&db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'");
        assert_eq!(
            r["reindexed"].as_array().unwrap().len() as i64,
            indexes,
            "{}",
            db.display()
        );
        assert_eq!(content_hash(&db), content_hash(&target), "{}", db.display());
        assert_eq!(integrity(&target), "ok", "{}", db.display());
    }
}

#[test]
fn storage_damage_is_refused_even_with_reindex() {
    let env = Env::new();
    let archive = env.backup(&fixture("corrupt/corruptL_11.db"), &["--allow-corrupt"]);
    let target = env.path("never.db");
    for extra in [&[][..], &["--reindex"][..], &["--reindex", "all"][..]] {
        let mut args = vec!["restore", s(&archive), s(&target)];
        args.extend_from_slice(extra);
        let r = env.run(&args).code(3);
        assert!(r.stderr.contains("storage problem"), "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("hint: the backup holds a damaged database"),
            "{extra:?}: {}",
            r.stderr
        );
        assert!(!target.exists());
    }
}
