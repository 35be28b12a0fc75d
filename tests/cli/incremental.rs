//! Incremental backups: chains under a writer, every kind of change, random edit sequences,
//! kill -9, damaged and missing links, `--at`, `--full-every` and prune with chains.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helper::{spawn, wait_for};
use crate::hot::{bank_db, check_bank_invariants};
use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `backup DB --dir backups --incremental [extra]` and its report.
fn incremental(env: &Env, db: &Path, extra: &[&str]) -> serde_json::Value {
    let backups = env.backups();
    let mut args = vec!["backup", s(db), "--dir", s(&backups), "--incremental", "--json"];
    args.extend_from_slice(extra);
    let out = env.command(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restore_to(env: &Env, archive: &str, name: &str) -> PathBuf {
    let out = env.path(name);
    env.run(&["restore", archive, s(&out)]).ok();
    out
}

/// Waits until the clock's second changes, so that the next backup gets a later stamp.
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000 - now.subsec_millis() as u64 + 20));
}

#[test]
fn a_chain_taken_under_a_continuous_writer_restores_every_link() {
    let env = Env::new();
    let db = env.path("bank.db");
    bank_db(&db, "wal", 8);
    let mut writer = spawn("writer", &db, env.dir.path());
    wait_for(&env.path("writer-ready"), 60);
    let mut reports = Vec::new();
    for _ in 0..4 {
        reports.push(incremental(&env, &db, &[]));
        std::thread::sleep(Duration::from_millis(150));
    }
    std::fs::write(env.path("stop"), b"").unwrap();
    assert!(writer.wait().unwrap().success());
    // After the writer stopped: the last link must equal the source exactly.
    next_second();
    reports.push(incremental(&env, &db, &[]));
    assert_eq!(reports[0]["kind"], "full");
    assert!(reports[0]["full_reason"]
        .as_str()
        .unwrap()
        .contains("no earlier backup"));
    for (i, r) in reports.iter().enumerate().skip(1) {
        assert_eq!(r["kind"], "incremental", "{r}");
        assert_eq!(
            r["parent"],
            reports[i - 1]["archive"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
        );
        assert!(r["archive_size"].as_u64().unwrap() < reports[0]["archive_size"].as_u64().unwrap() / 2);
    }
    for (i, r) in reports.iter().enumerate() {
        let restored = restore_to(&env, r["archive"].as_str().unwrap(), &format!("r{i}.db"));
        check_bank_invariants(&restored);
    }
    let last = env.path(&format!("r{}.db", reports.len() - 1));
    assert_eq!(content_hash(&last), content_hash(&db));
    let v = env
        .run(&["verify", reports[3]["archive"].as_str().unwrap(), "--json"])
        .ok()
        .json();
    let chain = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chain")
        .unwrap();
    assert!(
        chain["detail"].as_str().unwrap().starts_with("4 links"),
        "{chain}"
    );
}

#[test]
fn every_kind_of_change_composes_back_bit_for_bit() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000)
         INSERT INTO t(v) SELECT randomblob(500) FROM n;",
    );
    let check = |r: &serde_json::Value, name: &str| {
        let restored = restore_to(&env, r["archive"].as_str().unwrap(), name);
        assert_eq!(content_hash(&restored), content_hash(&db), "{name}");
        assert_eq!(pages_masked(&restored), pages_masked(&db), "{name}: pages differ");
    };
    let full = incremental(&env, &db, &[]);
    assert_eq!(full["kind"], "full");
    // Updates in place.
    next_second();
    make_db(&db, "UPDATE t SET v = randomblob(500) WHERE id % 50 = 0;");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental");
    check(&r, "updates.db");
    // Growth.
    next_second();
    make_db(&db, "INSERT INTO t(v) SELECT randomblob(900) FROM t LIMIT 800;");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental");
    check(&r, "grown.db");
    // Shrink: deletes, then an incremental vacuum gives the free pages back.
    next_second();
    make_db(&db, "DELETE FROM t WHERE id > 3700; PRAGMA incremental_vacuum;");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental", "{r}");
    check(&r, "shrunk.db");
    // Freelist churn: rows deleted (pages to the freelist) and new ones reusing them.
    next_second();
    make_db(&db, "DELETE FROM t WHERE id BETWEEN 1000 AND 1100; INSERT INTO t(v) SELECT randomblob(300) FROM t LIMIT 60;");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental", "{r}");
    check(&r, "churn.db");
    // A VACUUM rewrites most pages: a new full backup, saying why.
    next_second();
    make_db(&db, "VACUUM;");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "full", "{r}");
    assert!(
        r["full_reason"].as_str().unwrap().contains("pages changed"),
        "{r}"
    );
    check(&r, "vacuumed.db");
    // A page-size change: full, saying so.
    next_second();
    make_db(
        &db,
        "PRAGMA journal_mode=DELETE; PRAGMA page_size=8192; VACUUM; PRAGMA journal_mode=WAL;",
    );
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "full", "{r}");
    assert!(
        r["full_reason"].as_str().unwrap().contains("page size changed"),
        "{r}"
    );
    check(&r, "pagesize.db");
}

#[test]
fn random_edit_sequences_restore_through_a_chain_like_a_full_backup() {
    // A small deterministic generator (xorshift): the same sequence every run, many shapes.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for journal in ["wal", "delete"] {
        let env = Env::new();
        let db = env.path("p.db");
        make_db(
            &db,
            &format!(
                "PRAGMA journal_mode={journal}; CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
                 CREATE INDEX a_v ON a(v);"
            ),
        );
        let mut states = Vec::new();
        for round in 0..8 {
            let mut sql = String::from("BEGIN;");
            for _ in 0..(1 + next(6)) {
                sql += &match next(5) {
                    0 | 1 => format!(
                        "INSERT INTO a(v, b) SELECT hex(randomblob({})), randomblob({}) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3);",
                        1 + next(40),
                        next(3000)
                    ),
                    2 => format!("UPDATE a SET b = randomblob({}) WHERE id % {} = 0;", next(2000), 2 + next(5)),
                    3 => format!("DELETE FROM a WHERE id % {} = 1;", 2 + next(6)),
                    _ => format!("UPDATE a SET v = 'r{round}' || v WHERE id % {} = 0;", 1 + next(4)),
                };
            }
            sql += "COMMIT;";
            make_db(&db, &sql);
            if round > 0 {
                next_second();
            }
            let r = incremental(&env, &db, &[]);
            states.push((r["archive"].as_str().unwrap().to_string(), content_hash(&db)));
            // The same state through a direct full backup, for comparison.
            let direct = env.path(&format!("direct{round}.tar.zst"));
            env.run(&["backup", s(&db), "-o", s(&direct)]).ok();
            let d = restore_to(&env, s(&direct), &format!("d{round}.db"));
            assert_eq!(content_hash(&d), states[round].1);
        }
        for (i, (archive, hash)) in states.iter().enumerate() {
            let r = restore_to(&env, archive, &format!("c{i}.db"));
            assert_eq!(&content_hash(&r), hash, "{journal}: link {i}");
            assert_eq!(integrity(&r), "ok");
            assert_eq!(
                pages_masked(&r),
                pages_masked(&env.path(&format!("d{i}.db"))),
                "{journal}: link {i} differs from the direct backup"
            );
        }
    }
}

#[test]
fn damaged_and_missing_links_are_refused_by_name_and_nothing_is_written() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 4);
    let a = incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "UPDATE items SET name = 'x' || name WHERE id % 10 = 0;");
    let b = incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "UPDATE items SET name = 'y' || name WHERE id % 10 = 1;");
    let c = incremental(&env, &db, &[]);
    let (a, b, c) = (
        a["archive"].as_str().unwrap().to_string(),
        b["archive"].as_str().unwrap().to_string(),
        c["archive"].as_str().unwrap().to_string(),
    );
    // A flipped byte in the middle link's data.
    let good = std::fs::read(&b).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&b, &bad).unwrap();
    let target = env.path("t.db");
    let r = env.run(&["restore", &c, s(&target)]).code(3);
    assert!(
        r.stderr
            .contains(Path::new(&b).file_name().unwrap().to_str().unwrap()),
        "{}",
        r.stderr
    );
    assert!(!target.exists());
    assert!(env.backup_files().iter().all(|f| !f.starts_with(".litevault")));
    let v = env.run(&["verify", &c]).code(3);
    assert!(v.stdout.contains("FAILED"), "{}", v.stdout);
    // The same link replaced by another valid archive: not the one the child was made from.
    std::fs::write(&b, &good).unwrap();
    env.run(&["restore", &c, s(&target)]).ok();
    std::fs::remove_file(&target).unwrap();
    std::fs::remove_file(&b).unwrap();
    let other = env.path("other.tar.zst");
    env.run(&["backup", s(&db), "-o", s(&other)]).ok();
    std::fs::copy(&other, &b).unwrap();
    let r = env.run(&["restore", &c, s(&target)]).code(3);
    assert!(
        r.stderr.contains("not the archive it was made from"),
        "{}",
        r.stderr
    );
    // Missing.
    std::fs::remove_file(&b).unwrap();
    let r = env.run(&["restore", &c, s(&target)]).code(3);
    assert!(r.stderr.contains("is missing"), "{}", r.stderr);
    assert!(!target.exists());
    // The base alone still restores.
    restore_to(&env, &a, "base.db");
}

#[test]
fn at_picks_the_newest_backup_at_or_before_a_time_and_full_every_starts_a_new_chain() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 2);
    let mut made = Vec::new();
    for i in 0..4 {
        if i > 0 {
            next_second();
            make_db(
                &db,
                &format!("UPDATE items SET name = '{i}' || name WHERE id % 5 = {i};"),
            );
        }
        let r = incremental(&env, &db, &["--full-every", "3"]);
        made.push((
            r["archive"].as_str().unwrap().to_string(),
            r["kind"].as_str().unwrap().to_string(),
            content_hash(&db),
        ));
    }
    let kinds: Vec<&str> = made.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(kinds, ["full", "incremental", "incremental", "full"]);
    // --at the second backup's stamp: that one (not the later ones).
    let name = Path::new(&made[1].0).file_name().unwrap().to_str().unwrap();
    let stamp = &name["app-".len().."app-".len() + 16];
    let at = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let out = env.path("at.db");
    let r = env
        .run(&[
            "restore",
            "--latest",
            "--dir",
            s(&env.backups()),
            "--name",
            "app",
            "--at",
            &at,
            s(&out),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["plan"]["archive"], made[1].0.as_str());
    assert_eq!(content_hash(&out), made[1].2);
    // Before the first backup: nothing.
    env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&env.backups()),
        "--at",
        "2000-01-01T00:00:00Z",
        "app.db",
    ])
    .code(1);
    env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&env.backups()),
        "--at",
        "yesterday",
        "app.db",
    ])
    .code(2);
    // "ago": everything so far is older than now.
    let r = env
        .run(&[
            "restore",
            "--latest",
            "--dir",
            s(&env.backups()),
            "--name",
            "app",
            "--at",
            "0s ago",
            s(&env.path("ago.db")),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["plan"]["archive"], made[3].0.as_str());
}

#[test]
fn prune_keeps_every_parent_of_a_kept_link_and_deletes_children_first() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 2);
    let mut chain = Vec::new();
    for i in 0..3 {
        if i > 0 {
            next_second();
            make_db(
                &db,
                &format!("UPDATE items SET name = '{i}' || name WHERE id % 4 = {i};"),
            );
        }
        chain.push(
            incremental(&env, &db, &[])["archive"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let dir = env.backups();
    let r = env
        .run(&[
            "prune",
            "--dir",
            s(&dir),
            "--keep-last",
            "1",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    for v in r["verdicts"].as_array().unwrap() {
        assert_eq!(v["keep"], true, "{v}");
    }
    let reasons: Vec<String> = r["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reasons"][0].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons.iter().filter(|r| r.starts_with("parent of")).count() == 2,
        "{reasons:?}"
    );
    // A new full backup: the old chain can go, children first, and the full one restores.
    next_second();
    let full = env.backup(&db, &["--dir", s(&dir)]);
    let r = env
        .run(&["prune", "--dir", s(&dir), "--keep-last", "1", "--json"])
        .ok()
        .json();
    let deleted: Vec<String> = r["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let mut newest_first = chain.clone();
    newest_first.reverse();
    assert_eq!(deleted, newest_first);
    assert_eq!(env.backup_files(), [full.file_name().unwrap().to_str().unwrap()]);
}

#[test]
fn kill_9_during_an_incremental_leaves_the_chain_usable() {
    let env = Env::new();
    let db = env.path("big.db");
    make_sized_db(&db, 300);
    make_db(&db, "PRAGMA journal_mode=WAL;");
    let first = incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "UPDATE items SET body = randomblob(3800) WHERE id % 3 = 0;");
    let dir = env.backups();
    let mut child = env
        .command(&["backup", s(&db), "--dir", s(&dir), "--incremental"])
        .spawn()
        .unwrap();
    // Killed as soon as its unfinished archive exists (it lives for the whole page pass).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !env.backup_files().iter().any(|f| f.ends_with(".partial")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never started its archive"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finals: Vec<String> = env
        .backup_files()
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert_eq!(
        finals.len(),
        1,
        "only the first backup has a final name: {finals:?}"
    );
    next_second();
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental");
    assert_eq!(
        r["parent"],
        first["archive"].as_str().unwrap().rsplit('/').next().unwrap()
    );
    let restored = restore_to(&env, r["archive"].as_str().unwrap(), "r.db");
    assert_eq!(content_hash(&restored), content_hash(&db));
}

#[test]
fn names_with_dots_keep_their_whole_stem() {
    let env = Env::new();
    let a = env.path("notes.db");
    let b = env.path("notes.old.db");
    make_db(&a, "CREATE TABLE t(x); INSERT INTO t VALUES ('a');");
    make_db(&b, "CREATE TABLE t(x); INSERT INTO t VALUES ('b');");
    let ra = incremental(&env, &a, &[]);
    let rb = incremental(&env, &b, &[]);
    let name_b = rb["archive"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(name_b.starts_with("notes.old-"), "{name_b}");
    assert!(ra["archive"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .starts_with("notes-2"));
    // --latest for notes.db finds notes.db's backup, not notes.old.db's.
    let out = env.path("notes.db.restored");
    env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&env.backups()),
        "--name",
        "notes",
        s(&out),
    ])
    .ok();
    assert_eq!(query_i64(&out, "SELECT count(*) FROM t WHERE x = 'a'"), 1);
    env.run(&["backup", s(&a), "--name", "../x"]).code(2);
}

#[test]
fn an_incremental_is_never_built_on_a_broken_chain() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 2);
    let a = incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "UPDATE items SET name = 'x' || name WHERE id % 9 = 0;");
    let b = incremental(&env, &db, &[]);
    assert_eq!(b["kind"], "incremental");
    // The base disappears (deleted by hand): the next backup must not extend the chain.
    std::fs::remove_file(a["archive"].as_str().unwrap()).unwrap();
    next_second();
    make_db(&db, "UPDATE items SET name = 'y' || name WHERE id % 9 = 1;");
    let c = incremental(&env, &db, &[]);
    assert_eq!(c["kind"], "full", "{c}");
    assert!(c["full_reason"].as_str().unwrap().contains("broken"), "{c}");
    let out = restore_to(&env, c["archive"].as_str().unwrap(), "c.db");
    assert_eq!(content_hash(&out), content_hash(&db));
}

#[test]
fn merge_reads_an_incremental_through_its_chain() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 2);
    incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "INSERT INTO items(name, body) VALUES ('new one', x'00');");
    let r = incremental(&env, &db, &[]);
    assert_eq!(r["kind"], "incremental");
    let archive = r["archive"].as_str().unwrap();
    // Into a copy that lacks the last row: exactly that row comes in.
    let other = env.path("other.db");
    std::fs::copy(&db, &other).unwrap();
    make_db(&other, "DELETE FROM items WHERE name = 'new one';");
    let m = env
        .run(&["merge", archive, s(&other), "--no-safety-copy", "--json"])
        .ok()
        .json();
    let inserted: u64 = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["inserted"].as_u64().unwrap())
        .sum();
    assert_eq!(inserted, 1, "{m}");
    assert_eq!(content_hash(&other), content_hash(&db));
}

/// Rewrites an archive's entries (zstd tar): `edit` gets each entry's name and bytes.
fn rewrite_archive(path: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>)) {
    use std::io::Read;
    let raw = zstd::stream::decode_all(&std::fs::read(path).unwrap()[..]).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ar = tar::Archive::new(&raw[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    for (name, data) in &mut entries {
        edit(name, data);
    }
    // SHA256SUMS again, over every other entry.
    let sums: String = entries
        .iter()
        .filter(|(n, _)| n != "SHA256SUMS")
        .map(|(n, d)| {
            format!(
                "{}  {n}\n",
                litevault::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(d))
            )
        })
        .collect();
    let mut out = tar::Builder::new(Vec::new());
    for (name, data) in &entries {
        let data = if name == "SHA256SUMS" {
            sums.as_bytes().to_vec()
        } else {
            data.clone()
        };
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, name, &data[..]).unwrap();
    }
    let tar_bytes = out.into_inner().unwrap();
    std::fs::write(path, zstd::stream::encode_all(&tar_bytes[..], 3).unwrap()).unwrap();
}

#[test]
fn an_incremental_that_claims_a_larger_database_than_its_pages_reach_is_refused_early() {
    let env = Env::new();
    let db = env.path("big-pages.db");
    make_db(
        &db,
        "PRAGMA page_size=65536; PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(1000));",
    );
    incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "INSERT INTO t VALUES ('two');");
    let child = incremental(&env, &db, &[]);
    assert_eq!(child["kind"], "incremental");
    let archive = PathBuf::from(child["archive"].as_str().unwrap());
    env.run(&["verify", s(&archive)]).ok();
    // The manifest claims 16,384 more pages (1 GiB more), with a page-hash table to match.
    let extra = 16_384u64;
    let mut table_sha = String::new();
    rewrite_archive(&archive, |name, data| {
        if name == "pages.hashes" {
            data.resize(data.len() + extra as usize * 16, 0);
            table_sha = litevault::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data[..]));
        }
    });
    rewrite_archive(&archive, |name, data| {
        if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(data).unwrap();
            let pages = m["page_count"].as_u64().unwrap() + extra;
            m["page_count"] = pages.into();
            m["db_size"] = (pages * 65536).into();
            m["page_hashes"]["count"] = pages.into();
            m["page_hashes"]["sha256"] = table_sha.clone().into();
            *data = serde_json::to_vec_pretty(&m).unwrap();
        }
    });
    let v = env.run(&["verify", s(&archive)]).code(3);
    assert!(v.stdout.contains("pages and its parent's end at"), "{v:?}");
    let r = env.run(&["restore", s(&archive), s(&env.path("r.db"))]).code(3);
    assert!(r.stderr.contains("pages and its parent's end at"), "{r:?}");
    assert!(!env.path("r.db").exists());
}

#[test]
fn an_incremental_is_identified_by_its_page_hashes_and_a_changed_page_fails_the_restore() {
    let env = Env::new();
    let db = env.path("ident.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO t SELECT randomblob(500) FROM n;",
    );
    incremental(&env, &db, &[]);
    next_second();
    make_db(&db, "UPDATE t SET x = 'changed' WHERE rowid % 50 = 0;");
    let child = incremental(&env, &db, &[]);
    assert_eq!(child["kind"], "incremental");
    // No second pass over the database for a SHA-256: the page-hash table identifies it.
    assert!(child["database_sha256"].is_null(), "{child}");
    let archive = PathBuf::from(child["archive"].as_str().unwrap());
    let shown = env.run(&["show", s(&archive), "--json"]).ok();
    let m: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(m["format"], "litevault/3", "{m}");
    assert!(m.get("snapshot_sha256").is_none(), "{m}");
    let good = restore_to(&env, s(&archive), "good.db");
    assert_eq!(content_hash(&good), content_hash(&db));
    // One byte of one changed page, with every checksum of the archive made to match: only the
    // composed database's page hashes can tell.
    rewrite_archive(&archive, |name, data| {
        if name == "pages.bin" {
            let last = data.len() - 1;
            data[last] ^= 0x5a;
        }
    });
    let v = env.run(&["verify", s(&archive)]).code(3);
    assert!(v.stdout.contains("page-hash table"), "{v:?}");
    let r = env.run(&["restore", s(&archive), s(&env.path("bad.db"))]).code(3);
    assert!(r.stderr.contains("page-hash table"), "{r:?}");
    assert!(!env.path("bad.db").exists());
}
