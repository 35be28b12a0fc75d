//! SQL dumps: `backup --format sql`, and restore / verify / list / show of dumps, litevault's
//! and foreign ones (untrusted SQL).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Dumps `db` to `out` (plain text unless the name says otherwise) and returns `out`.
#[track_caller]
fn dump(env: &Env, db: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let out = env.path(out);
    let comp = if s(&out).ends_with(".zst") {
        "zstd"
    } else if s(&out).ends_with(".gz") {
        "gzip"
    } else {
        "none"
    };
    let mut args = vec![
        "backup",
        s(db),
        "--format",
        "sql",
        "--compression",
        comp,
        "-o",
        s(&out),
    ];
    args.extend_from_slice(extra);
    env.run(&args).ok();
    out
}

/// A database built to hold every value and schema feature a dump must carry exactly.
fn make_hard_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA foreign_keys=OFF; PRAGMA page_size=8192; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;
         CREATE TABLE vals(id INTEGER PRIMARY KEY AUTOINCREMENT, v ANY) STRICT;
         CREATE TABLE loose(a, b TEXT, c REAL);
         CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
         CREATE TABLE named(rowid TEXT, x);
         CREATE TABLE textkey(code TEXT PRIMARY KEY, n INTEGER);
         CREATE TABLE gen(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL,
                          c TEXT GENERATED ALWAYS AS (upper(d)) STORED, d TEXT);
         CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
         CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id), note TEXT);
         CREATE INDEX child_partial ON child(note) WHERE note IS NOT NULL;
         CREATE INDEX parent_expr ON parent(lower(name));
         CREATE VIEW v_child AS SELECT c.id, p.name FROM child c JOIN parent p ON p.id = c.parent_id;
         CREATE VIRTUAL TABLE docs_fts USING fts5(title, body);
         CREATE TABLE articles(id INTEGER PRIMARY KEY, body TEXT);
         CREATE VIRTUAL TABLE articles_fts USING fts5(body, content='articles', content_rowid='id');
         CREATE VIRTUAL TABLE old_fts USING fts4(a, b);
         CREATE VIRTUAL TABLE geo USING rtree(id, x0, x1, y0, y1);",
    )
    .unwrap();
    let reals = [
        0.0,
        -0.0,
        5e-324,
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        1.0 / 3.0,
        -1.5e-310,
        1e300,
        123456789.0,
    ];
    for r in reals {
        c.execute("INSERT INTO vals(v) VALUES(?1)", [r]).unwrap();
    }
    for i in [i64::MIN, i64::MAX, 0, -1, 1 << 53] {
        c.execute("INSERT INTO vals(v) VALUES(?1)", [i]).unwrap();
    }
    for t in [
        "",
        "it's",
        "line1\nline2\r\n",
        "tab\there",
        "nul\0inside",
        "ctl\x01\x1f\x7f",
        "crab 🦀 ü",
        "'; DROP TABLE vals; --",
    ] {
        c.execute("INSERT INTO vals(v) VALUES(?1)", [t]).unwrap();
    }
    c.execute_batch("INSERT INTO vals(v) VALUES(CAST(x'ff00fe41' AS TEXT)), (NULL), (x''), (x'00ff10')")
        .unwrap();
    // A BLOB and a TEXT on overflow pages.
    let big: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    c.execute("INSERT INTO vals(v) VALUES(?1)", [&big]).unwrap();
    c.execute("INSERT INTO vals(v) VALUES(?1)", ["x".repeat(300_000) + "\nend"])
        .unwrap();
    c.execute_batch(
        "DELETE FROM vals WHERE id = 3;
         INSERT INTO loose(rowid, a, b, c) VALUES(5, 1, 'one', 1.5), (100, 'two', NULL, -0.0), (7, x'01', '3', 3);
         INSERT INTO kv VALUES('b', x'02'), ('a', x'01'), ('c', NULL);
         INSERT INTO named(rowid, x) VALUES('not the rowid', 1), ('x', 2);
         INSERT INTO textkey(rowid, code, n) VALUES(50, 'zz', 1), (10, 'aa', 2);
         INSERT INTO gen(a, d) VALUES(21, 'abc'), (NULL, NULL);
         INSERT INTO parent VALUES(1, 'Ann'), (2, 'Bob');
         INSERT INTO child VALUES(1, 1, 'first'), (2, 2, NULL), (3, 99, 'orphan: a violation the source has');
         INSERT INTO docs_fts(rowid, title, body) VALUES(3, 'alpha', 'the quick brown fox'), (9, 'beta', 'lazy dog');
         INSERT INTO docs_fts(docs_fts, rank) VALUES('automerge', 8);
         INSERT INTO articles VALUES(1, 'sqlite backups'), (4, 'restore without loss');
         INSERT INTO articles_fts(articles_fts) VALUES('rebuild');
         INSERT INTO old_fts(docid, a, b) VALUES(5, 'hello world', 'x'), (7, 'goodbye', 'world');
         INSERT INTO geo VALUES(1, 0.1, 0.2, -5, 5), (2, 10, 20, 30, 40);
         ANALYZE;
         CREATE TRIGGER child_ai AFTER INSERT ON child BEGIN SELECT app_only_function(new.id); END;
         CREATE TRIGGER parent_au AFTER UPDATE ON parent BEGIN UPDATE child SET note = 'changed' WHERE parent_id = new.id; END;
         PRAGMA user_version=42; PRAGMA application_id=1234567;",
    )
    .unwrap();
}

fn header(path: &Path) -> (i64, i64, i64, i64, String, i64) {
    let c = Connection::open(path).unwrap();
    let q = |p: &str| {
        c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let enc: String = c.query_row("PRAGMA encoding", [], |r| r.get(0)).unwrap();
    let wal = std::fs::read(path).unwrap()[18] as i64;
    (
        q("page_size"),
        q("auto_vacuum"),
        q("user_version"),
        q("application_id"),
        enc,
        wal,
    )
}

#[test]
fn hard_values_and_schema_round_trip_exactly() {
    let env = Env::new();
    let src = env.path("hard.db");
    make_hard_db(&src);
    let out = dump(&env, &src, "hard.sql", &[]);
    let text = std::fs::read_to_string(&out).unwrap();
    // The restore order that makes triggers safe: no trigger before the last row.
    let last_insert = text.rfind("INSERT INTO \"child\"").unwrap();
    assert!(text.find("CREATE TRIGGER").unwrap() > last_insert);
    // Never shadow tables, never writable_schema.
    assert!(
        !text.contains("INSERT INTO \"docs_fts_data\"") && !text.contains("CREATE TABLE 'docs_fts_data'")
    );
    assert!(!text.contains("writable_schema"));
    // One row per line, even for text with line breaks.
    assert!(
        text.contains("'line1'||char(10)||'line2'||char(13,10)"),
        "line breaks not encoded"
    );

    let restored = env.path("restored.db");
    let r = env.run(&["restore", s(&out), s(&restored), "--json"]).ok().json();
    let checks: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "checksum dump",
        "round trip",
        "integrity_check",
        "foreign_key_check",
        "fts5 integrity docs_fts",
    ] {
        assert!(checks.contains(&name), "{name} not run: {checks:?}");
    }
    assert_eq!(
        content_hash(&src),
        content_hash(&restored),
        "content differs after the round trip"
    );
    assert_eq!(header(&src), header(&restored));
    assert_eq!(header(&restored), (8192, 2, 42, 1234567, "UTF-8".into(), 2));
    // The restored full-text indexes answer the same queries.
    let c = Connection::open(&restored).unwrap();
    let ids = |sql: &str| -> Vec<i64> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(
        ids("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'fox'"),
        vec![3]
    );
    assert_eq!(
        ids("SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'restore'"),
        vec![4]
    );
    assert_eq!(
        ids("SELECT docid FROM old_fts WHERE old_fts MATCH 'world' ORDER BY docid"),
        vec![5, 7]
    );
    assert_eq!(ids("SELECT id FROM geo WHERE x0 >= 5"), vec![2]);
    assert_eq!(
        ids("SELECT v FROM docs_fts_config WHERE k = 'automerge'"),
        vec![8]
    );
    assert_eq!(
        ids("SELECT seq FROM sqlite_sequence WHERE name = 'vals'"),
        ids("SELECT max(id) FROM vals")
    );
    // Bits, not just equality: -0.0 and the smallest subnormal.
    let bits: Vec<i64> = ids("SELECT id FROM vals WHERE typeof(v) = 'real' ORDER BY id");
    assert_eq!(bits.len(), 13, "one REAL deleted of 14");
}

#[test]
fn utf16_databases_keep_their_encoding_and_text() {
    let env = Env::new();
    let src = env.path("u16.db");
    make_db(
        &src,
        "PRAGMA encoding='UTF-16le'; CREATE TABLE t(a TEXT, b);
         INSERT INTO t VALUES('plain', 1), ('two' || char(10) || 'lines', 2), ('nul' || char(0) || 'x', 3), ('ünï', 4);",
    );
    let out = dump(&env, &src, "u16.sql.zst", &[]);
    let restored = env.path("u16-restored.db");
    env.run(&["restore", s(&out), s(&restored)]).ok();
    assert_eq!(content_hash(&src), content_hash(&restored));
    assert_eq!(header(&restored).4, "UTF-16le");
}

#[test]
fn every_real_fixture_round_trips_and_loads_in_the_sqlite3_cli() {
    // .ci/run installs the sqlite3 CLI; this test needs it.
    let cli = std::process::Command::new("sqlite3")
        .arg("--version")
        .output()
        .is_ok();
    assert!(cli, "the sqlite3 CLI is needed: apt-get install sqlite3");
    for db in fixtures_in("real") {
        let env = Env::new();
        let name = db.file_name().unwrap().to_string_lossy().into_owned();
        let out = dump(&env, &db, &format!("{name}.sql"), &[]);
        let restored = env.path("restored.db");
        env.run(&["restore", s(&out), s(&restored)]).ok();
        assert_eq!(
            content_hash(&db),
            content_hash(&restored),
            "{name}: content differs"
        );
        env.run(&["verify", s(&out)]).ok();
        if cli {
            let loaded = env.path("cli.db");
            let st = std::process::Command::new("sqlite3")
                .arg(&loaded)
                .stdin(std::fs::File::open(&out).unwrap())
                .output()
                .unwrap();
            assert!(
                st.status.success() && st.stderr.is_empty(),
                "{name}: sqlite3 CLI: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            // The CLI may add statistics tables its own build enables; compare the user tables.
            let rows = |p: &Path| {
                Connection::open(p)
                    .unwrap()
                    .query_row(
                        "SELECT group_concat(name || ':' || ncol, ',') FROM (SELECT name, ncol FROM pragma_table_list WHERE schema='main' AND name NOT LIKE 'sqlite_%' ORDER BY name)",
                        [],
                        |r| r.get::<_, Option<String>>(0),
                    )
                    .unwrap()
            };
            assert_eq!(
                rows(&db),
                rows(&loaded),
                "{name}: tables differ after the sqlite3 CLI load"
            );
        }
    }
}

#[test]
fn dumps_are_deterministic_and_a_one_row_change_is_a_one_line_diff() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let a = std::fs::read_to_string(dump(&env, &src, "a.sql", &[])).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = std::fs::read_to_string(dump(&env, &src, "b.sql", &[])).unwrap();
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_eq!(la.len(), lb.len());
    let differ: Vec<usize> = (0..la.len()).filter(|&i| la[i] != lb[i]).collect();
    assert_eq!(differ, vec![1], "only the created_at line may differ");
    assert!(la[1].starts_with("-- created_at: "));

    make_db(
        &src,
        "UPDATE Artist SET Name = 'AC/DC (live)' WHERE ArtistId = 1;",
    );
    let c = std::fs::read_to_string(dump(&env, &src, "c.sql", &[])).unwrap();
    let lc: Vec<&str> = c.lines().collect();
    assert_eq!(la.len(), lc.len());
    let data_diff: Vec<&str> = (3..la.len() - 1)
        .filter(|&i| la[i] != lc[i])
        .map(|i| lc[i])
        .collect();
    assert_eq!(data_diff.len(), 1, "{data_diff:?}");
    assert!(data_diff[0].contains("AC/DC (live)"));
    // Rows come in primary-key order.
    let artists: Vec<&&str> = lc
        .iter()
        .filter(|l| l.starts_with("INSERT INTO \"Artist\""))
        .collect();
    assert!(artists[0].contains("VALUES(1,") && artists[1].contains("VALUES(2,"));
}

#[test]
fn compressed_dumps_restore_and_read_with_standard_tools() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/datasette_fixtures.db");
    let zst = env.backup(&src, &["--format", "sql"]);
    assert!(s(&zst).ends_with(".sql.zst"), "{}", zst.display());
    let gz = dump(&env, &src, "fx.sql.gz", &[]);
    for (file, tool) in [(&zst, "zstd"), (&gz, "gzip")] {
        let restored = env.path(&format!("{tool}.db"));
        env.run(&["restore", s(file), s(&restored)]).ok();
        assert_eq!(content_hash(&src), content_hash(&restored));
        let out = std::process::Command::new(tool)
            .args(["-dc", s(file)])
            .output()
            .unwrap();
        assert!(out.stdout.starts_with(b"-- litevault SQL dump"), "{tool} -dc");
    }
}

#[test]
fn list_show_and_verify_work_on_dumps() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let dumpfile = env.backup(&src, &["--format", "sql"]);
    env.backup(&src, &[]);
    let v = env.run(&["list", "--json"]).ok().json();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["manifest"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"sql") && kinds.contains(&"full"), "{v}");
    // The manifest is in the first lines: a dump cut to a fifth (a few zstd blocks) still shows it.
    let bytes = std::fs::read(&dumpfile).unwrap();
    let cut = env.path("cut.sql.zst");
    std::fs::write(&cut, &bytes[..bytes.len() / 5]).unwrap();
    let m = env.run(&["show", s(&cut), "--json"]).ok().json();
    assert_eq!(m["kind"], "sql");
    assert_eq!(m["tables"].as_array().unwrap().len(), 11);
    assert!(!m["created_at"].as_str().unwrap().is_empty());
    let r = env.run(&["verify", s(&dumpfile), "--json"]).ok().json();
    assert_eq!(r["kind"], "dump");
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "round trip" && c["status"] == "pass"),
        "{r}"
    );
    // ... and verify finds the truncation.
    let r = env.run(&["verify", s(&cut), "--json"]).code(3).json();
    assert_eq!(r["ok"], false);
}

#[test]
fn tampered_and_truncated_dumps_fail_verification_and_are_not_restored() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let out = dump(&env, &src, "ch.sql", &[]);
    let text = std::fs::read_to_string(&out).unwrap();
    let tampered = env.path("tampered.sql");
    std::fs::write(&tampered, text.replacen("'AC/DC'", "'AC/DC!'", 1)).unwrap();
    let r = env.run(&["verify", s(&tampered), "--json"]).code(3).json();
    let failed: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"checksum dump") && failed.contains(&"round trip"),
        "{failed:?}"
    );
    let target = env.path("t.db");
    env.run(&["restore", s(&tampered), s(&target)]).code(3);
    assert!(!target.exists());
    // Cut before the end: the statement or the end line is missing.
    let lines: Vec<&str> = text.lines().collect();
    let truncated = env.path("truncated.sql");
    std::fs::write(&truncated, lines[..lines.len() - 40].join("\n") + "\n").unwrap();
    let r = env.run(&["restore", s(&truncated), s(&target)]).code(3);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    assert!(!target.exists());
}

#[test]
fn restore_of_a_dump_keeps_the_archive_guarantees() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let out = dump(&env, &src, "ch.sql.zst", &[]);
    let target = copy_fixture(&env, "real/northwind_205fc66.db");
    let before = content_hash(&target);
    let r = env.run(&["restore", s(&out), s(&target)]).code(4);
    assert!(r.stderr.contains("--overwrite"), "{}", r.stderr);
    assert_eq!(content_hash(&target), before);
    let r = env
        .run(&["restore", s(&out), s(&target), "--overwrite", "--json"])
        .ok()
        .json();
    let safety = PathBuf::from(r["safety_archive"].as_str().unwrap());
    assert!(safety.exists());
    assert_eq!(content_hash(&target), content_hash(&src));
    // The safety archive holds the replaced database.
    let back = env.path("back.db");
    env.run(&["restore", s(&safety), s(&back)]).ok();
    assert_eq!(content_hash(&back), before);
}

#[test]
fn table_selection_dumps_only_what_is_asked() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let out = dump(&env, &src, "two.sql", &["--table", "Artist", "--table", "Album"]);
    let restored = env.path("two.db");
    env.run(&["restore", s(&out), s(&restored)]).ok();
    let names = |p: &Path| -> String {
        Connection::open(p)
            .unwrap()
            .query_row(
                "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema ORDER BY name)",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(names(&restored), "Album,Artist,IFK_AlbumArtistId");
    assert_eq!(query_i64(&restored, "SELECT count(*) FROM Album"), 347);
    let out = dump(&env, &src, "most.sql", &["--exclude-table", "PlaylistTrack"]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("PlaylistTrack") && text.contains("CREATE TABLE [Playlist]"));
    let r = env
        .run(&[
            "backup",
            s(&src),
            "--format",
            "sql",
            "--table",
            "Nope",
            "-o",
            s(&env.path("x.sql")),
        ])
        .code(2);
    assert!(r.stderr.contains("Nope"), "{}", r.stderr);
    assert!(!env.path("x.sql").exists());
}

#[test]
fn contentless_full_text_tables_are_refused_with_a_reason() {
    let env = Env::new();
    let src = env.path("cl.db");
    make_db(
        &src,
        "CREATE VIRTUAL TABLE f USING fts5(a, content=''); INSERT INTO f(rowid, a) VALUES(1, 'x');",
    );
    let out = env.path("cl.sql");
    let r = env
        .run(&["backup", s(&src), "--format", "sql", "-o", s(&out)])
        .code(2);
    assert!(
        r.stderr.contains("contentless") && r.stderr.contains("--exclude-table"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    assert!(std::fs::read_dir(env.path("")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".litevault")));
}

#[test]
fn foreign_sqlite3_cli_dumps_restore_with_full_text_rebuilt_safely() {
    let env = Env::new();
    let target = env.path("cli.db");
    let r = env
        .run(&[
            "restore",
            s(&fixture("dumps/sqlite3-cli-fts.sql")),
            s(&target),
            "--json",
        ])
        .ok()
        .json();
    let warnings = r["plan"]["warnings"].to_string();
    assert!(warnings.contains("rebuilt from its text"), "{warnings}");
    let c = Connection::open(&target).unwrap();
    let ids = |sql: &str| -> Vec<i64> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(
        ids("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'fox' ORDER BY rowid"),
        vec![1, 3]
    );
    assert_eq!(ids("SELECT rowid FROM notes WHERE notes MATCH 'run'"), vec![10]);
    assert_eq!(
        ids("SELECT docid FROM old WHERE old MATCH 'world' ORDER BY docid"),
        vec![5, 7]
    );
    assert_eq!(ids("SELECT v FROM notes_config WHERE k = 'automerge'"), vec![8]);
    assert_eq!(
        ids("SELECT seq FROM sqlite_sequence WHERE name = 'docs'"),
        vec![3]
    );
    assert_eq!(integrity(&target), "ok");
    // R*Tree shadow rows cannot be re-read safely: refused with the reason, nothing created.
    let rt = env.path("rt.db");
    let r = env
        .run(&["restore", s(&fixture("dumps/sqlite3-cli-rtree.sql")), s(&rt)])
        .code(3);
    assert!(
        r.stderr.contains("rtree") && r.stderr.contains("line 4"),
        "{}",
        r.stderr
    );
    assert!(!rt.exists());
}

#[test]
fn hostile_dumps_are_refused_naming_the_line_and_create_nothing() {
    let bomb = {
        let mut e = "'aaaa'".to_string();
        for _ in 0..14 {
            e = format!("replace({e},'a','aaaa')");
        }
        e
    };
    let cases: Vec<(String, &str)> = vec![
        ("ATTACH DATABASE 'evil.db' AS e;".into(), "line 1"),
        ("CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\nVACUUM INTO 'evil.db';".into(), "line 3"),
        ("SELECT load_extension('/tmp/evil.so');".into(), "line 1"),
        ("PRAGMA writable_schema=ON;\nUPDATE sqlite_schema SET sql = 'x';".into(), "line 2"),
        (
            "PRAGMA writable_schema=ON;\nINSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql) VALUES('table','t','t',2,'CREATE TABLE t(a)');"
                .into(),
            "line 2",
        ),
        ("CREATE TEMP TABLE x(a);".into(), "line 1"),
        ("PRAGMA temp_store_directory='/tmp';".into(), "line 1"),
        ("CREATE TABLE t(a);\nINSERT INTO t VALUES(zeroblob(1000000000));".into(), "line 2"),
        (format!("CREATE TABLE t(a);\nINSERT INTO t VALUES({bomb});"), "line 2"),
        (".shell touch evil.db".into(), "line 1"),
        ("CREATE VIRTUAL TABLE x USING fts3tokenize(simple);".into(), "line 1"),
        ("CREATE TABLE t(a);\nINSERT INTO sqlite_dbpage VALUES(1, x'00');".into(), "line 2"),
        ("BEGIN;\nCREATE TABLE t(a);\nROLLBACK;".into(), "line 3"),
        ("CREATE TABLE t(a);\nINSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c;".into(), "line 2"),
        ("CREATE TABLE t(a);\nDELETE FROM t;".into(), "line 2"),
        // Found in review: a `temp.` prefix, CREATE ... AS SELECT, INSERT ... SELECT, subqueries,
        // a query smuggled into a foreign dump's sqlite_schema row, a malformed PRAGMA value.
        ("CREATE TABLE temp.x(a);".into(), "line 1"),
        ("CREATE VIRTUAL TABLE temp.rt USING rtree(id, a, b);".into(), "line 1"),
        ("CREATE TABLE t(a);\nCREATE TRIGGER temp.tr AFTER INSERT ON main.t BEGIN SELECT 1; END;".into(), "line 2"),
        ("CREATE TABLE t AS SELECT zeroblob(50000000) AS b FROM (VALUES(1),(2)) a;".into(), "line 1"),
        ("CREATE TABLE t(a);\nINSERT INTO t SELECT 1;".into(), "line 2"),
        ("CREATE TABLE t(a);\nINSERT INTO t VALUES((SELECT count(*) FROM sqlite_schema a, sqlite_schema b));".into(), "line 2"),
        (
            "PRAGMA writable_schema=ON;\nINSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql) VALUES('table','ft','ft',0,'CREATE VIRTUAL TABLE ft USING fts5(a)') UNION ALL SELECT 'table','ft','ft',0,'x' FROM sqlite_schema;"
                .into(),
            "line 2",
        ),
        ("PRAGMA user_version = \"x\u{e9};".into(), "line 1"),
    ];
    for (sql, line) in cases {
        let env = Env::new();
        let file = env.path("hostile.sql");
        std::fs::write(&file, &sql).unwrap();
        let target = env.path("new.db");
        let r = env.run(&["restore", s(&file), s(&target)]);
        assert_eq!(r.code, 3, "accepted: {sql}\n{}", r.stderr);
        assert!(r.stderr.contains(line), "{sql}: {}", r.stderr);
        let mut files: Vec<String> = std::fs::read_dir(env.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, vec!["backups", "hostile.sql"], "{sql}: files left");
        assert!(!Path::new("/tmp/evil.db").exists());
    }
}

#[test]
fn tables_come_parents_first_so_a_load_with_foreign_keys_on_succeeds() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let text = std::fs::read_to_string(dump(&env, &src, "ch.sql", &[])).unwrap();
    // Without the dump's own `foreign_keys=OFF`, every INSERT is checked against its parents
    // (the bundled SQLite enforces foreign keys by default).
    let strict = text.replace("PRAGMA foreign_keys=OFF;\n", "");
    let target = env.path("strict.db");
    let c = Connection::open(&target).unwrap();
    let on: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(on, 1);
    c.execute_batch(&strict)
        .expect("a parent-first dump loads with foreign keys enforced");
    drop(c);
    assert_eq!(content_hash(&src), content_hash(&target));
}

#[test]
fn review_cases_round_trip_many_line_breaks_comments_and_desc_keys() {
    let env = Env::new();
    let src = env.path("r.db");
    make_db(
        &src,
        "CREATE TABLE t(a /*/ it's a comment */ INT, body TEXT);
         CREATE TABLE d(id INTEGER PRIMARY KEY DESC, v);
         INSERT INTO d(rowid, id, v) VALUES(10, 10, 'a'), (20, 20, 'b');",
    );
    let c = Connection::open(&src).unwrap();
    for n in [600usize, 2000] {
        let text: String = (0..n).map(|i| format!("line {i}\n")).collect();
        c.execute("INSERT INTO t VALUES(?1, ?2)", rusqlite::params![n as i64, text])
            .unwrap();
    }
    drop(c);
    let out = dump(&env, &src, "r.sql", &[]);
    let restored = env.path("restored.db");
    env.run(&["restore", s(&out), s(&restored)]).ok();
    assert_eq!(content_hash(&src), content_hash(&restored));
    assert_eq!(query_i64(&restored, "SELECT rowid FROM d WHERE v = 'b'"), 20);
    // The plain text loads in the sqlite3 CLI too.
    let cli = env.path("cli.db");
    let st = std::process::Command::new("sqlite3")
        .arg(&cli)
        .stdin(std::fs::File::open(&out).unwrap())
        .output()
        .unwrap();
    assert!(
        st.status.success() && st.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// Runs `restore FILE new.db` and returns (exit code, stderr, the child's own peak RSS in MiB).
fn restore_measured(env: &Env, file: &Path) -> (i32, String, i64) {
    let target = env.path("new.db");
    // Waited for with wait4 below, which std does not know of.
    #[allow(clippy::zombie_processes)]
    let mut child = env
        .command(&["restore", s(file), s(&target)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    // wait4 gives this child's own peak RSS (other tests' children do not count).
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: a child of this process, waited for once; `ru` and `status` are valid out-params.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid);
    assert!(!target.exists());
    (libc::WEXITSTATUS(status), stderr, ru.ru_maxrss / 1024)
}

/// Restores `file` and expects it refused (exit 3) at line 2 for `what`, the child's peak RSS
/// under `max_mib`.
fn expect_refused(env: &Env, file: &Path, what: &str, max_mib: i64) {
    let (code, stderr, peak_mib) = restore_measured(env, file);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains(what), "{stderr}");
    assert!(peak_mib < max_mib, "peak RSS {peak_mib} MiB");
}

#[test]
fn a_small_compressed_dump_with_one_huge_statement_is_refused_within_bounded_memory() {
    use std::io::Write;
    const MAX: usize = 512 << 20;
    let env = Env::new();
    let chunk = vec![b'a'; 1 << 20];
    // 1. One line of 600 MiB, about 20 KiB compressed.
    let file = env.path("bomb.sql.zst");
    let mut z = zstd::Encoder::new(std::fs::File::create(&file).unwrap(), 3).unwrap();
    z.write_all(b"CREATE TABLE t(a);\nINSERT INTO t VALUES('")
        .unwrap();
    for _ in 0..600 {
        z.write_all(&chunk).unwrap();
    }
    z.write_all(b"');\n").unwrap();
    z.finish().unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() < 1 << 20);
    // The statement's text once (512 MiB at the cap), not a line copy beside it.
    expect_refused(&env, &file, "longer than 512 MiB", 800);

    // 2. A line just over the cap with its newline, then 400 MiB of empty lines inside the
    // same string literal: the open statement may not keep growing a byte a line.
    let file = env.path("lines.sql.zst");
    let mut z = zstd::Encoder::new(std::fs::File::create(&file).unwrap(), 3).unwrap();
    let head = b"INSERT INTO t VALUES('";
    z.write_all(b"CREATE TABLE t(a);\n").unwrap();
    z.write_all(head).unwrap();
    let mut left = MAX + 1 - head.len() - 1;
    while left > 0 {
        let n = left.min(chunk.len());
        z.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    z.write_all(b"\n").unwrap();
    let newlines = vec![b'\n'; 1 << 20];
    for _ in 0..400 {
        z.write_all(&newlines).unwrap();
    }
    z.write_all(b"');\n").unwrap();
    z.finish().unwrap();
    expect_refused(&env, &file, "longer than 512 MiB", 800);
}

#[test]
fn a_few_bytes_of_sql_cannot_make_sqlite_allocate_gigabytes() {
    // Each value is under the per-value limit; together they would need 3.6 GB before SQLite
    // could find the row too big.
    let env = Env::new();
    let cols: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let vals = vec!["randomblob(60000000)"; 60].join(", ");
    let file = env.path("alloc.sql");
    std::fs::write(
        &file,
        format!(
            "CREATE TABLE t({});\nINSERT INTO t VALUES({vals});\n",
            cols.join(", ")
        ),
    )
    .unwrap();
    expect_refused(&env, &file, "out of memory", 1024);
}

#[test]
fn a_trigger_body_of_endless_statements_is_refused_not_scanned_forever() {
    // 2.4 million `SELECT 1;` in one trigger body: finding its end by rescanning the whole
    // statement at every `;` would take hours. Its end is found; SQLite then runs out of the
    // memory a load may use, building it.
    let env = Env::new();
    let file = env.path("trigger.sql");
    let mut sql = String::from("CREATE TABLE t(a);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n");
    sql.push_str(&"SELECT 1;".repeat(2_400_000));
    sql.push_str("\nEND;\n");
    std::fs::write(&file, sql).unwrap();
    let mut child = env
        .command(&["restore", s(&file), s(&env.path("new.db"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang detector, not a timing: the run takes about a second.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still splitting the trigger after 300 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn a_row_whose_insert_would_pass_the_statement_cap_is_refused_with_advice() {
    // Two blobs of 150 MiB: each under the value cap, together 600 MiB of hex.
    let env = Env::new();
    let db = env.path("big.db");
    make_db(
        &db,
        "CREATE TABLE small(a); INSERT INTO small VALUES(1);
         CREATE TABLE big(a, b); INSERT INTO big VALUES(zeroblob(150 << 20), zeroblob(150 << 20));",
    );
    let out = env.path("big.sql");
    let r = env
        .run(&[
            "backup",
            s(&db),
            "--format",
            "sql",
            "--compression",
            "none",
            "-o",
            s(&out),
        ])
        .code(1);
    assert!(
        r.stderr.contains("512 MiB") && r.stderr.contains("--exclude-table"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    // Leaving the table out works.
    env.run(&[
        "backup",
        s(&db),
        "--format",
        "sql",
        "--compression",
        "none",
        "-o",
        s(&out),
        "--exclude-table",
        "big",
    ])
    .ok();
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("INSERT INTO \"small\""));
}

#[test]
fn a_long_trigger_is_split_where_it_ends_and_loads() {
    // 3,000 body statements of about 100 bytes: asking SQLite's rule at each `;` would rescan
    // 450 MB in all (refused before, as incomplete); the token tracking finds the end in one pass.
    let env = Env::new();
    let mut sql =
        String::from("CREATE TABLE t(a);\nCREATE TABLE log(x);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n");
    for i in 0..3000 {
        sql.push_str(&format!(
            "  INSERT INTO log VALUES(new.a || ' step {i}; of a long body -- not a comment /* nor this */ ... ');\n"
        ));
    }
    // What SQLite's rule says about `END`: after a body `;` (comments count as spaces), it ends
    // the trigger; elsewhere (CASE ... END, a quoted "END") it does not.
    sql.push_str("  SELECT CASE WHEN 1 THEN 'END;' END;\n  SELECT \"END\" FROM (SELECT 1 AS \"END\");\nEND /* done */ ;\n");
    sql.push_str("INSERT INTO t VALUES('x');\n");
    let file = env.path("long-trigger.sql");
    std::fs::write(&file, sql).unwrap();
    let db = env.path("new.db");
    env.run(&["restore", s(&file), s(&db)]).ok();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM log"), 3000);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"),
        1
    );
}
