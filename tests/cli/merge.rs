//! `merge`: importing other backups into an existing database.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SCHEMA: &str = "
    CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT);
    CREATE TABLE notes(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                       parent_id INTEGER REFERENCES notes(id), body TEXT);
    CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT) WITHOUT ROWID;
    CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
    CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, content='docs', content_rowid='id');
    CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
      INSERT INTO docs_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
    END;
    INSERT INTO users VALUES(1, 'ann@x', 'Ann');
    INSERT INTO notes VALUES(1, 1, NULL, 'shared root');
    INSERT INTO tags VALUES('red', '#f00');
    INSERT INTO docs VALUES(1, 'shared', 'common history');";

/// Rows by natural identity: ids replaced by what they point at.
fn natural(db: &Path) -> BTreeSet<String> {
    let c = Connection::open(db).unwrap();
    let mut out = BTreeSet::new();
    let mut q = |sql: &str| {
        let mut st = c.prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        for r in rows {
            out.insert(r.unwrap());
        }
    };
    q("SELECT 'user ' || email || ' ' || coalesce(name, '') FROM users");
    q("SELECT 'note ' || u.email || ' ' || coalesce(n.body, '') || ' <- ' || coalesce((SELECT body FROM notes p WHERE p.id = n.parent_id), '-')
       FROM notes n JOIN users u ON u.id = n.user_id");
    q("SELECT 'tag ' || name || ' ' || coalesce(color, '') FROM tags");
    q("SELECT 'doc ' || title || ' ' || body FROM docs");
    out
}

fn pair(env: &Env) -> (PathBuf, PathBuf) {
    let a = env.path("a.db");
    make_db(&a, SCHEMA);
    let b = env.path("b.db");
    std::fs::copy(&a, &b).unwrap();
    make_db(
        &a,
        "INSERT INTO users VALUES(2, 'cat@x', 'Cat'); INSERT INTO notes VALUES(2, 2, 1, 'cat reply');
         INSERT INTO docs(title, body) VALUES('cats', 'purring machines');",
    );
    make_db(
        &b,
        "INSERT INTO users VALUES(2, 'bob@x', 'Bob');
         INSERT INTO notes VALUES(2, 2, 1, 'bob reply'), (3, 2, 2, 'bob answers bob'), (4, 1, NULL, 'ann on b');
         INSERT INTO tags VALUES('blue', '#00f');
         INSERT INTO docs(title, body) VALUES('dogs', 'loyal barking friends');",
    );
    (a, b)
}

#[test]
fn ids_are_remapped_with_their_foreign_keys_and_a_second_merge_adds_nothing() {
    let env = Env::new();
    let (a, b) = pair(&env);
    let expected: BTreeSet<String> = natural(&a).union(&natural(&b)).cloned().collect();
    let archive = env.backup(&b, &[]);
    let before = content_hash(&a);
    let plan = env
        .run(&["merge", s(&archive), s(&a), "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(content_hash(&a), before, "dry run changed the database");
    let r = env.run(&["merge", s(&archive), s(&a), "--json"]).ok().json();
    assert_eq!(
        plan["tables"], r["tables"],
        "the dry run's plan is what the merge did"
    );
    let t = |name: &str| {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(t("users")["inserted"], 1);
    assert_eq!(t("users")["duplicates"], 1);
    assert_eq!(t("users")["remapped"], 1, "bob's id 2 is cat's in the target");
    assert_eq!(t("notes")["inserted"], 3);
    assert_eq!(t("tags")["identity"], "primary key");
    assert_eq!(natural(&a), expected, "not the exact union");
    // Bob's self-reply points at bob's reply, wherever their ids landed.
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM notes n JOIN notes p ON p.id = n.parent_id WHERE n.body = 'bob answers bob' AND p.body = 'bob reply'"),
        1
    );
    assert_eq!(query_i64(&a, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    // The target's trigger fed its full-text index.
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'barking'"),
        1
    );
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'purring'"),
        1
    );
    // Idempotent: again, from the archive or from an SQL dump of the same data.
    let after = content_hash(&a);
    let r = env.run(&["merge", s(&archive), s(&a), "--json"]).ok().json();
    assert!(
        r["tables"].as_array().unwrap().iter().all(|t| t["inserted"] == 0),
        "{r}"
    );
    let dump = env.path("b.sql");
    env.run(&[
        "backup",
        s(&b),
        "--format",
        "sql",
        "--compression",
        "none",
        "-o",
        s(&dump),
    ])
    .ok();
    env.run(&["merge", s(&dump), s(&a)]).ok();
    assert_eq!(content_hash(&a), after);
    // A backup merged into the database it came from adds nothing.
    let own = env.backup(&a, &[]);
    env.run(&["merge", s(&own), s(&a)]).ok();
    assert_eq!(content_hash(&a), after);
}

#[test]
fn merge_order_does_not_matter_and_several_sources_merge_in_one_go() {
    let env = Env::new();
    let (a, b) = pair(&env);
    let base = env.path("c.db");
    make_db(&base, SCHEMA);
    let (aa, bb) = (env.backup(&a, &[]), env.backup(&b, &[]));
    let c1 = env.path("c1.db");
    let c2 = env.path("c2.db");
    let c3 = env.path("c3.db");
    for c in [&c1, &c2, &c3] {
        std::fs::copy(&base, c).unwrap();
    }
    env.run(&["merge", s(&aa), s(&c1)]).ok();
    env.run(&["merge", s(&bb), s(&c1)]).ok();
    env.run(&["merge", s(&bb), s(&c2)]).ok();
    env.run(&["merge", s(&aa), s(&c2)]).ok();
    env.run(&["merge", s(&aa), s(&bb), s(&c3)]).ok();
    assert_eq!(natural(&c1), natural(&c2));
    assert_eq!(natural(&c1), natural(&c3));
    let expected: BTreeSet<String> = natural(&a).union(&natural(&b)).cloned().collect();
    assert_eq!(natural(&c1), expected);
}

#[test]
fn orphans_become_null_or_are_skipped_and_reported() {
    let env = Env::new();
    let src = env.path("src.db");
    make_db(
        &src,
        &(SCHEMA.to_string()
            + "PRAGMA foreign_keys=OFF;
               INSERT INTO notes VALUES(7, 1, 99, 'parent gone');
               INSERT INTO notes VALUES(8, 42, NULL, 'author gone');"),
    );
    let target = env.path("t.db");
    make_db(&target, SCHEMA);
    let archive = env.backup(&src, &["--allow-corrupt"]);
    let r = env.run(&["merge", s(&archive), s(&target), "--json"]).ok().json();
    let notes = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "notes")
        .unwrap();
    assert_eq!(notes["orphans"], 1, "{notes}");
    assert_eq!(notes["skipped_orphans"], 1, "{notes}");
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM notes WHERE body = 'parent gone' AND parent_id IS NULL"
        ),
        1
    );
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM notes WHERE body = 'author gone'"),
        0
    );
}

#[test]
fn a_backup_merged_into_its_own_source_adds_nothing_even_with_dangling_foreign_keys() {
    let env = Env::new();
    let b = env.path("b.db");
    // A parent gone (nullable key), an author gone (NOT NULL key), a self-reference to a note
    // that is not there; and a row that a previous merge left with its dangling key nulled.
    make_db(
        &b,
        &(SCHEMA.to_string()
            + "PRAGMA foreign_keys=OFF;
               CREATE TABLE links(id INTEGER PRIMARY KEY, note_id INTEGER REFERENCES notes(id), label TEXT);
               INSERT INTO notes VALUES(7, 1, 99, 'parent gone');
               INSERT INTO notes VALUES(8, 42, NULL, 'author gone');
               INSERT INTO links VALUES(1, 77, 'to nowhere'), (2, 1, 'to the root');"),
    );
    let archive = env.backup(&b, &[]);
    let before = content_hash(&b);
    let r = env.run(&["merge", s(&archive), s(&b), "--json"]).ok().json();
    for t in r["tables"].as_array().unwrap() {
        assert_eq!(t["inserted"], 0, "{t}");
        assert_eq!(t["duplicates"], t["incoming"], "{t}");
        assert_eq!(t["orphans"], 0, "nothing was set to NULL: {t}");
        assert_eq!(t["skipped_orphans"], 0, "a row already there is a duplicate: {t}");
    }
    assert_eq!(content_hash(&b), before, "the merge changed its own source");
    assert!(r["safety_archive"].is_null(), "{r}");

    // Into another database: the orphans arrive nulled (or skipped, NOT NULL) ...
    let t = env.path("t.db");
    make_db(
        &t,
        &(SCHEMA.to_string()
            + "CREATE TABLE links(id INTEGER PRIMARY KEY, note_id INTEGER REFERENCES notes(id), label TEXT);"),
    );
    let r = env.run(&["merge", s(&archive), s(&t), "--json"]).ok().json();
    let table = |r: &serde_json::Value, name: &str| {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(table(&r, "links")["orphans"], 1, "{r}");
    assert_eq!(table(&r, "notes")["orphans"], 1, "{r}");
    assert_eq!(table(&r, "notes")["skipped_orphans"], 1, "{r}");
    assert_eq!(
        query_i64(
            &t,
            "SELECT count(*) FROM links WHERE label = 'to nowhere' AND note_id IS NULL"
        ),
        1
    );
    // ... and merging the same backup again matches them by NULL: nothing added, whether the
    // identity is the row's content or a key (looked up through SQL) that holds the orphan.
    let after = content_hash(&t);
    let keys = env.path("keys.toml");
    std::fs::write(&keys, "links = [\"note_id\", \"label\"]\n").unwrap();
    for extra in [&[][..], &["--keys", s(&keys)][..]] {
        let mut args = vec!["merge", s(&archive), s(&t), "--json"];
        args.extend_from_slice(extra);
        let r = env.run(&args).ok().json();
        for t in r["tables"].as_array().unwrap() {
            assert_eq!(t["inserted"], 0, "{extra:?}: {t}");
        }
        assert_eq!(content_hash(&t), after);
    }
}

#[test]
fn schema_differences_are_reported_and_handled() {
    let env = Env::new();
    let target = env.path("t.db");
    make_db(
        &target,
        &(SCHEMA.to_string() + "ALTER TABLE users ADD COLUMN plan TEXT DEFAULT 'free';"),
    );
    let newer = env.path("newer.db");
    make_db(
        &newer,
        &(SCHEMA.to_string()
            + "ALTER TABLE users ADD COLUMN avatar BLOB;
               CREATE TABLE reactions(id INTEGER PRIMARY KEY, emoji TEXT);
               INSERT INTO users VALUES(5, 'dan@x', 'Dan', x'00');
               INSERT INTO reactions VALUES(1, 'ok');"),
    );
    let archive = env.backup(&newer, &[]);
    let r = env.run(&["merge", s(&archive), s(&target), "--json"]).ok().json();
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("avatar") && warnings.contains("reactions"),
        "{warnings}"
    );
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM users WHERE email = 'dan@x' AND plan = 'free'"
        ),
        1
    );
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'reactions'"
        ),
        0
    );
    env.run(&["merge", s(&archive), s(&target), "--create-missing-tables"])
        .ok();
    assert_eq!(query_i64(&target, "SELECT count(*) FROM reactions"), 1);
}

#[test]
fn a_keys_file_names_the_identity() {
    let env = Env::new();
    let target = env.path("t.db");
    make_db(&target, "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, city TEXT); INSERT INTO people VALUES(1, 'Ann', 'Oslo');");
    let src = env.path("s.db");
    make_db(&src, "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, city TEXT); INSERT INTO people VALUES(1, 'Ann', 'Bergen');");
    let archive = env.backup(&src, &[]);
    // By content, Ann in Bergen is someone else; by name, she is already there.
    let keys = env.path("merge.toml");
    std::fs::write(&keys, "[keys]\npeople = [\"name\"]  # one person per name\n").unwrap();
    let r = env
        .run(&["merge", s(&archive), s(&target), "--keys", s(&keys), "--json"])
        .ok()
        .json();
    assert_eq!(r["tables"][0]["identity"], "keys file");
    assert_eq!(r["tables"][0]["duplicates"], 1);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM people"), 1);
    env.run(&["merge", s(&archive), s(&target)]).ok();
    assert_eq!(query_i64(&target, "SELECT count(*) FROM people"), 2);
}

#[test]
fn untrusted_sources_are_checked_before_the_target_is_touched() {
    let env = Env::new();
    let target = env.path("t.db");
    make_db(&target, SCHEMA);
    let before = content_hash(&target);
    let evil = env.path("evil.sql");
    std::fs::write(
        &evil,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT);\nATTACH 'x.db' AS x;\n",
    )
    .unwrap();
    let r = env.run(&["merge", s(&evil), s(&target)]).code(3);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert_eq!(content_hash(&target), before);
    assert!(!env.path("x.db").exists());
}

/// A tiny deterministic generator (no extra crates).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn diverge(db: &Path, rng: &mut Lcg, who: &str) {
    let c = Connection::open(db).unwrap();
    let users = 1 + rng.next(4);
    for i in 0..users {
        c.execute(
            "INSERT INTO users(email, name) VALUES(?1, ?2)",
            [format!("{who}{i}@x"), format!("{who} {i}")],
        )
        .unwrap();
    }
    let notes = rng.next(12);
    for i in 0..notes {
        let max_user: i64 = c
            .query_row("SELECT max(id) FROM users", [], |r| r.get(0))
            .unwrap();
        let max_note: i64 = c
            .query_row("SELECT max(id) FROM notes", [], |r| r.get(0))
            .unwrap();
        let user = 1 + rng.next(max_user as u64) as i64;
        let parent = if rng.next(2) == 0 {
            None
        } else {
            Some(1 + rng.next(max_note as u64) as i64)
        };
        c.execute(
            "INSERT INTO notes(user_id, parent_id, body) VALUES(?1, ?2, ?3)",
            rusqlite::params![user, parent, format!("{who} note {i}")],
        )
        .unwrap();
    }
    if rng.next(2) == 0 {
        c.execute(
            "INSERT OR IGNORE INTO tags VALUES(?1, 'c')",
            [format!("tag{}", rng.next(5))],
        )
        .unwrap();
    }
    // Dangling foreign keys: a parent note that is not there (nullable key) and, last, so that
    // no later note of this database replies to it, an author who is not there (NOT NULL).
    c.execute_batch("PRAGMA foreign_keys=OFF").unwrap();
    if rng.next(2) == 0 {
        c.execute(
            "INSERT INTO notes(user_id, parent_id, body) VALUES(1, ?1, ?2)",
            rusqlite::params![
                100_000 + rng.next(1000) as i64,
                format!("{who} reply to a lost note")
            ],
        )
        .unwrap();
    }
    if rng.next(3) == 0 {
        c.execute(
            "INSERT INTO notes(user_id, parent_id, body) VALUES(?1, NULL, ?2)",
            rusqlite::params![
                200_000 + rng.next(1000) as i64,
                format!("{who} note of a lost author")
            ],
        )
        .unwrap();
    }
}

fn fk_violations(db: &Path) -> i64 {
    query_i64(db, "SELECT count(*) FROM pragma_foreign_key_check")
}

/// Merges a backup of `db` into `db` itself and asserts that nothing was added.
#[track_caller]
fn self_merge_adds_nothing(env: &Env, db: &Path, format: &[&str], round: usize) {
    let before = content_hash(db);
    let own = env.backup(db, format);
    let r = env.run(&["merge", s(&own), s(db), "--json"]).ok().json();
    for t in r["tables"].as_array().unwrap() {
        assert_eq!(t["inserted"], 0, "round {round}: {t}");
    }
    assert_eq!(
        content_hash(db),
        before,
        "round {round}: a self-merge changed {}",
        db.display()
    );
}

#[test]
fn property_random_divergent_pairs_merge_to_the_exact_union() {
    let mut rng = Lcg(20261123);
    for round in 0..12 {
        let env = Env::new();
        let a = env.path("a.db");
        make_db(&a, SCHEMA);
        diverge(&a, &mut rng, "shared");
        let b = env.path("b.db");
        std::fs::copy(&a, &b).unwrap();
        diverge(&a, &mut rng, "a");
        diverge(&b, &mut rng, "b");
        let expected: BTreeSet<String> = natural(&a).union(&natural(&b)).cloned().collect();
        let format: &[&str] = if round % 2 == 0 { &[] } else { &["--format", "sql"] };
        let archive = env.backup(&b, format);
        let fk_before = fk_violations(&a);
        env.run(&["merge", s(&archive), s(&a)]).ok();
        assert_eq!(natural(&a), expected, "round {round}");
        assert_eq!(
            fk_violations(&a),
            fk_before,
            "round {round}: the merge added violations"
        );
        assert_eq!(integrity(&a), "ok");
        // A backup merged into its own source adds nothing: the merged one and the other.
        self_merge_adds_nothing(&env, &a, format, round);
        self_merge_adds_nothing(&env, &b, format, round);
    }
}

#[test]
fn foreign_key_cycles_between_tables_are_remapped() {
    let env = Env::new();
    let schema = "CREATE TABLE teams(id INTEGER PRIMARY KEY, name TEXT UNIQUE, captain_id INTEGER REFERENCES players(id));
                  CREATE TABLE players(id INTEGER PRIMARY KEY, name TEXT UNIQUE, team_id INTEGER REFERENCES teams(id));";
    let target = env.path("t.db");
    make_db(
        &target,
        &format!("{schema} PRAGMA foreign_keys=OFF; INSERT INTO teams VALUES(1, 'reds', 1); INSERT INTO players VALUES(1, 'ann', 1);"),
    );
    let src = env.path("s.db");
    make_db(
        &src,
        &format!("{schema} PRAGMA foreign_keys=OFF; INSERT INTO teams VALUES(1, 'blues', 2); INSERT INTO players VALUES(1, 'bob', 1), (2, 'cy', 1);"),
    );
    let archive = env.backup(&src, &[]);
    env.run(&["merge", s(&archive), s(&target)]).ok();
    let pairs = |sql: &str| -> BTreeSet<String> {
        let c = Connection::open(&target).unwrap();
        let mut st = c.prepare(sql).unwrap();
        let v = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        v
    };
    assert_eq!(
        pairs(
            "SELECT t.name || ' captained by ' || p.name FROM teams t JOIN players p ON p.id = t.captain_id"
        ),
        ["blues captained by cy", "reds captained by ann"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        pairs("SELECT p.name || ' plays for ' || t.name FROM players p JOIN teams t ON t.id = p.team_id"),
        ["ann plays for reds", "bob plays for blues", "cy plays for blues"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM pragma_foreign_key_check"),
        0
    );
}

#[test]
fn a_full_text_index_without_triggers_is_rebuilt_after_the_merge() {
    let env = Env::new();
    let schema = "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
                  CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');";
    let target = env.path("t.db");
    make_db(
        &target,
        &format!(
            "{schema} INSERT INTO docs VALUES(1, 'alpha'); INSERT INTO docs_fts(docs_fts) VALUES('rebuild');"
        ),
    );
    let src = env.path("s.db");
    make_db(&src, &format!("{schema} INSERT INTO docs VALUES(1, 'beta gamma'); INSERT INTO docs_fts(docs_fts) VALUES('rebuild');"));
    let archive = env.backup(&src, &[]);
    let r = env.run(&["merge", s(&archive), s(&target), "--json"]).ok().json();
    assert!(r["warnings"].to_string().contains("rebuilt"), "{r}");
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'gamma'"
        ),
        1
    );
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'alpha'"
        ),
        1
    );
    let c = Connection::open(&target).unwrap();
    c.execute_batch("INSERT INTO docs_fts(docs_fts, rank) VALUES('integrity-check', 1)")
        .unwrap();
}

#[test]
fn a_live_target_is_waited_for_and_refused_after_the_timeout_without_damage() {
    let env = Env::new();
    let (a, b) = pair(&env);
    let archive = env.backup(&b, &[]);
    let before = content_hash(&a);
    // Another connection holds the write lock.
    let holder = Connection::open(&a).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = env
        .run(&["merge", s(&archive), s(&a), "--busy-timeout", "1"])
        .code(4);
    assert!(r.stderr.contains("write lock"), "{}", r.stderr);
    // The safety archive taken before waiting went: the target never changed.
    assert!(
        !env.backup_files().iter().any(|f| f.starts_with("a-pre-merge-")),
        "{:?}",
        env.backup_files()
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert_eq!(content_hash(&a), before);
    assert_eq!(integrity(&a), "ok");
    // Once it is free, the merge goes through.
    env.run(&["merge", s(&archive), s(&a)]).ok();
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM users WHERE email = 'bob@x'"),
        1
    );
}

#[test]
fn a_source_that_fails_quick_check_is_refused_and_nothing_is_merged() {
    let env = Env::new();
    let (a, b) = pair(&env);
    // A page-level fault SQLite still reads around: the header's freelist count is wrong.
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[36..40].copy_from_slice(&7u32.to_be_bytes());
    std::fs::write(&b, bytes).unwrap();
    let archive = env.backup(&b, &["--allow-corrupt"]);
    let before = content_hash(&a);
    let r = env.run(&["merge", s(&archive), s(&a)]).code(3);
    assert!(r.stderr.contains("quick_check"), "{}", r.stderr);
    assert!(r.stderr.contains("Freelist"), "{}", r.stderr);
    // Classified as verify classifies it: storage damage, once, with what to do.
    assert!(r.stderr.contains("freelist: 1 storage problem"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the backup holds a damaged database"),
        "{}",
        r.stderr
    );
    let j = env.run(&["merge", s(&archive), s(&a), "--json"]).code(3).json();
    assert!(j["hint"].as_str().unwrap().contains("use another backup"), "{j}");
    assert_eq!(content_hash(&a), before);
}

#[test]
fn a_source_whose_rows_break_their_constraints_is_refused_as_constraint_damage() {
    let env = Env::new();
    let (a, b) = pair(&env);
    // A NULL where the schema (edited afterwards) says NOT NULL: pages and indexes are sound.
    make_db(
        &b,
        "INSERT INTO tags VALUES('green', NULL);
         PRAGMA writable_schema=ON;
         UPDATE sqlite_schema SET sql = 'CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT NOT NULL) WITHOUT ROWID'
           WHERE name = 'tags';",
    );
    let archive = env.backup(&b, &["--allow-corrupt"]);
    let before = content_hash(&a);
    let r = env.run(&["merge", s(&archive), s(&a)]).code(3);
    assert!(
        r.stderr
            .contains("table \"tags\": 1 constraint problem (NULL value in tags.color)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: rows break their table's declared constraints"),
        "{}",
        r.stderr
    );
    assert_eq!(content_hash(&a), before);
}

const KIDS: &str = "
    CREATE TABLE parents(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
    CREATE TABLE kids(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents(id), name TEXT);
    INSERT INTO parents VALUES(1, 'pat');";

#[test]
fn a_merge_that_would_add_foreign_key_violations_is_refused() {
    let env = Env::new();
    let target = env.path("t.db");
    make_db(&target, KIDS);
    // The source lacks the parents table, so its kids' parent ids cannot be translated; id 99
    // is not a parent in the target either.
    let src = env.path("src.db");
    make_db(
        &src,
        "PRAGMA foreign_keys=OFF;
         CREATE TABLE kids(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents(id), name TEXT);
         INSERT INTO kids VALUES(1, 1, 'kim'), (2, 99, 'lost');",
    );
    let archive = env.backup(&src, &["--allow-corrupt"]);
    let before = content_hash(&target);
    let r = env.run(&["merge", s(&archive), s(&target)]).code(3);
    assert!(
        r.stderr
            .contains("foreign_key_check: 1 violations after the merge, 0 before"),
        "{}",
        r.stderr
    );
    assert_eq!(content_hash(&target), before);
    // The safety archive taken before the merge went with it: the target never changed.
    assert!(
        !env.backup_files().iter().any(|f| f.contains("pre-merge")),
        "{:?}",
        env.backup_files()
    );
}

#[test]
fn violations_the_target_already_had_do_not_block_a_merge() {
    let env = Env::new();
    let target = env.path("t.db");
    make_db(
        &target,
        &format!("{KIDS} PRAGMA foreign_keys=OFF; INSERT INTO kids VALUES(1, 50, 'old orphan');"),
    );
    let src = env.path("src.db");
    make_db(&src, &format!("{KIDS} INSERT INTO kids VALUES(1, 1, 'kim');"));
    let archive = env.backup(&src, &[]);
    let r = env.run(&["merge", s(&archive), s(&target), "--json"]).ok().json();
    let kids = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "kids")
        .unwrap()
        .clone();
    assert_eq!(kids["inserted"], 1, "{r}");
    assert_eq!(kids["remapped"], 1, "{r}");
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM kids WHERE name = 'kim' AND parent_id = 1"
        ),
        1
    );
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM pragma_foreign_key_check"),
        1
    );
}

#[test]
fn rows_written_in_one_batch_are_seen_by_the_next_lookups() {
    let env = Env::new();
    // Tables with triggers get their rows in batches (multi-row INSERTs).
    let triggers = "CREATE TABLE log(x);
         CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN INSERT INTO log VALUES(new.email); END;
         CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN INSERT INTO log VALUES(new.body); END;";
    // 1. Keys equal only under the target's collation: the second is a duplicate of the first
    //    even though both still wait in the same batch.
    let target = env.path("t.db");
    make_db(
        &target,
        &format!(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE COLLATE NOCASE, name TEXT);
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes VALUES(1, 'target one'), (3, 'target three'); {triggers}"
        ),
    );
    let src = env.path("src.db");
    make_db(
        &src,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);
         INSERT INTO users VALUES(1, 'ann@x', 'Ann'), (2, 'ANN@x ', 'Ann again');
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes VALUES(1, 'source one'), (4, 'source four');",
    );
    let archive = env.backup(&src, &[]);
    let r = env.run(&["merge", s(&archive), s(&target), "--json"]).ok().json();
    let table = |name: &str| {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    // (NOCASE ignores case, not the trailing space: 'ANN@x ' is a new user.)
    assert_eq!(table("users")["inserted"], 2, "{r}");
    // 2. An id given to a remapped row (1 -> 4) is taken for the next row even though it is not
    //    written yet: source row 4 gets 5.
    assert_eq!(table("notes")["inserted"], 2, "{r}");
    assert_eq!(table("notes")["remapped"], 2, "{r}");
    assert_eq!(
        query_i64(&target, "SELECT id FROM notes WHERE body = 'source one'"),
        4
    );
    assert_eq!(
        query_i64(&target, "SELECT id FROM notes WHERE body = 'source four'"),
        5
    );

    let target2 = env.path("t2.db");
    make_db(
        &target2,
        &format!(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE COLLATE NOCASE, name TEXT);
                  CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); {triggers}"
        ),
    );
    let src2 = env.path("src2.db");
    make_db(
        &src2,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);
         INSERT INTO users VALUES(1, 'ann@x', 'Ann'), (2, 'ANN@X', 'Ann shouting'), (3, 'bob@x', 'Bob');",
    );
    let archive2 = env.backup(&src2, &[]);
    let r = env
        .run(&["merge", s(&archive2), s(&target2), "--json"])
        .ok()
        .json();
    let users = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "users")
        .unwrap()
        .clone();
    assert_eq!(users["inserted"], 2, "{r}");
    assert_eq!(users["duplicates"], 1, "{r}");
    assert_eq!(query_i64(&target2, "SELECT count(*) FROM users"), 2);
    assert_eq!(
        query_i64(&target2, "SELECT count(*) FROM log"),
        2,
        "the trigger fired once a row"
    );
}

#[test]
fn a_merge_keeps_a_safety_archive_of_the_target_as_it_was_when_it_changes_something() {
    let env = Env::new();
    let (a, b) = pair(&env);
    let archive = env.backup(&b, &[]);
    let pre_merge = |env: &Env| -> Vec<String> {
        env.backup_files()
            .into_iter()
            .filter(|f| f.starts_with("a-pre-merge-"))
            .collect()
    };
    // A dry run and a merge told not to keep one write none.
    let r = env
        .run(&["merge", s(&archive), s(&a), "--dry-run", "--json"])
        .ok()
        .json();
    assert!(r["safety_archive"].is_null(), "{r}");
    let c = env.path("c.db");
    std::fs::copy(&a, &c).unwrap();
    let r = env
        .run(&["merge", s(&archive), s(&c), "--no-safety-copy", "--json"])
        .ok()
        .json();
    assert!(r["safety_archive"].is_null(), "{r}");
    assert!(pre_merge(&env).is_empty(), "{:?}", env.backup_files());

    let before = content_hash(&a);
    let r = env.run(&["merge", s(&archive), s(&a), "--json"]).ok().json();
    let safety = PathBuf::from(r["safety_archive"].as_str().unwrap());
    assert_eq!(pre_merge(&env).len(), 1, "{:?}", env.backup_files());
    assert!(safety.starts_with(env.backups()), "{}", safety.display());
    assert_ne!(content_hash(&a), before, "the merge changed nothing");
    // It holds the target exactly as it was before the merge.
    let old = env.path("old.db");
    env.run(&["restore", s(&safety), s(&old)]).ok();
    assert_eq!(content_hash(&old), before);
    // The text report names it.
    let d = env.path("d.db");
    std::fs::copy(&old, &d).unwrap();
    let out = env.run(&["merge", s(&archive), s(&d)]).ok().stdout;
    assert!(
        out.contains("before the merge kept in") && out.contains("d-pre-merge-"),
        "{out}"
    );

    // A merge that changes nothing keeps none.
    let r = env.run(&["merge", s(&archive), s(&a), "--json"]).ok().json();
    assert!(r["safety_archive"].is_null(), "{r}");
    assert_eq!(pre_merge(&env).len(), 1, "{:?}", env.backup_files());

    // --safety-dir puts it elsewhere.
    let e = env.path("e.db");
    std::fs::copy(&old, &e).unwrap();
    let elsewhere = env.path("safety");
    std::fs::create_dir(&elsewhere).unwrap();
    let r = env
        .run(&[
            "merge",
            s(&archive),
            s(&e),
            "--safety-dir",
            s(&elsewhere),
            "--json",
        ])
        .ok()
        .json();
    let safety = PathBuf::from(r["safety_archive"].as_str().unwrap());
    assert_eq!(safety.parent().unwrap(), elsewhere.as_path());
    assert!(safety.exists());
}

#[test]
fn a_schema_only_change_keeps_the_safety_archive() {
    let env = Env::new();
    let (a, _) = pair(&env);
    // The source is the target plus an empty table: every row a duplicate, one table created.
    let g = env.path("g.db");
    std::fs::copy(&a, &g).unwrap();
    make_db(&g, "CREATE TABLE extra(x TEXT);");
    let archive = env.backup(&g, &[]);
    let r = env
        .run(&["merge", s(&archive), s(&a), "--create-missing-tables", "--json"])
        .ok()
        .json();
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"),
        1
    );
    assert!(r["safety_archive"].is_string(), "{r}");
}

#[test]
fn the_safety_archive_holds_what_the_merge_started_from_while_a_writer_commits() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = Env::new();
    let (a, b) = pair(&env);
    make_db(
        &a,
        "PRAGMA journal_mode=WAL; CREATE TABLE log(seq INTEGER PRIMARY KEY, merged INTEGER NOT NULL);",
    );
    let archive = env.backup(&b, &[]);
    // A writer commits as fast as it can; each commit records whether it saw the merge's rows.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&a).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(20)).unwrap();
            let mut seq = 0i64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                c.execute(
                    "INSERT INTO log VALUES(?1, (SELECT count(*) FROM users WHERE email = 'bob@x'))",
                    [seq],
                )
                .unwrap();
            }
            seq
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = env.run(&["merge", s(&archive), s(&a), "--json"]).ok().json();
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().unwrap();
    eprintln!(
        "commits {commits}, merge {} ms, safety {} ms",
        r["duration_ms"], r["safety_ms"]
    );
    let safety = PathBuf::from(r["safety_archive"].as_str().unwrap());
    let old = env.path("old.db");
    env.run(&["restore", s(&safety), s(&old)]).ok();
    // Exactly the writer's commits before the merge's: none missing (one made between the
    // archive and the merge's write lock), none after.
    let before_merge = query_i64(&a, "SELECT coalesce(max(seq), 0) FROM log WHERE merged = 0");
    assert!(
        before_merge > 0 && before_merge < commits,
        "{before_merge} of {commits}"
    );
    assert_eq!(
        query_i64(&old, "SELECT coalesce(max(seq), 0) FROM log"),
        before_merge
    );
    assert_eq!(query_i64(&old, "SELECT count(*) FROM log"), before_merge);
    assert_eq!(
        query_i64(&old, "SELECT count(*) FROM users WHERE email = 'bob@x'"),
        0
    );
    assert_eq!(
        query_i64(&a, "SELECT count(*) FROM users WHERE email = 'bob@x'"),
        1
    );
}
