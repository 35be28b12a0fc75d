//! Fitting how applications are deployed: labels recorded in manifests (shown, filtered,
//! chosen by restore --latest) and `restore --if-missing` for a container's first start.

use crate::util::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn labels_are_recorded_shown_filtered_and_chosen() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let r = env
        .run(&[
            "backup",
            s(&db),
            "--json",
            "--label",
            "app_version=2.3.1",
            "--label",
            "tracked_files=1523",
        ])
        .ok()
        .json();
    assert_eq!(r["labels"]["app_version"], "2.3.1", "{r}");
    assert_eq!(r["labels"]["tracked_files"], "1523", "{r}");
    let first = r["archive"].as_str().unwrap().to_string();
    // A second backup (a second later: its own name), of more rows, with another version.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_db(&db, "INSERT INTO t VALUES (2);");
    env.backup(&db, &["--label", "app_version=2.4.0"]);
    // And one without labels, the newest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_db(&db, "INSERT INTO t VALUES (3);");
    env.backup(&db, &[]);

    let all = env.run(&["list", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let old = env
        .run(&["list", "--json", "--label", "app_version=2.3.1"])
        .ok()
        .json();
    let old = old.as_array().unwrap();
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["path"], first.as_str());
    assert_eq!(old[0]["manifest"]["labels"]["tracked_files"], "1523");
    // Every wanted label must match.
    let none = env
        .run(&[
            "list",
            "--json",
            "--label",
            "app_version=2.3.1",
            "--label",
            "tracked_files=1",
        ])
        .ok()
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let text = env.run(&["list", "--label", "app_version=9"]).ok().stdout;
    assert!(
        text.contains("no archives or dumps with label app_version=9"),
        "{text}"
    );
    let text = env.run(&["list"]).ok().stdout;
    assert!(
        text.contains("labels app_version=2.3.1, tracked_files=1523"),
        "{text}"
    );
    let shown = env.run(&["show", &first]).ok().stdout;
    assert!(shown.contains("app_version=2.3.1, tracked_files=1523"), "{shown}");

    // restore --latest --label picks the newest backup with the labels, not the newest.
    let older = env.path("older.db");
    env.run(&[
        "restore",
        "--latest",
        "--name",
        "app",
        "--label",
        "app_version=2.3.1",
        s(&older),
    ])
    .ok();
    assert_eq!(query_i64(&older, "SELECT count(*) FROM t"), 1);
    let middle = env.path("middle.db");
    env.run(&[
        "restore",
        "--latest",
        "--name",
        "app",
        "--label",
        "app_version=2.4.0",
        s(&middle),
    ])
    .ok();
    assert_eq!(query_i64(&middle, "SELECT count(*) FROM t"), 2);
    let newest = env.path("newest.db");
    env.run(&["restore", "--latest", "--name", "app", s(&newest)])
        .ok();
    assert_eq!(query_i64(&newest, "SELECT count(*) FROM t"), 3);
    let missing = env
        .run(&[
            "restore",
            "--latest",
            "--name",
            "app",
            "--label",
            "app_version=9",
            s(&env.path("x.db")),
        ])
        .code(1);
    assert!(
        missing.stderr.contains("with label app_version=9"),
        "{}",
        missing.stderr
    );
    assert!(!env.path("x.db").exists());
}

#[test]
fn labels_go_into_dumps_and_incrementals_and_bad_ones_are_refused() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let dump = env.backup(&db, &["--format", "sql", "--label", "kind=nightly"]);
    let m = env.run(&["show", s(&dump), "--json"]).ok().json();
    assert_eq!(m["labels"]["kind"], "nightly", "{m}");
    let full = env.backup(&db, &["--incremental", "--label", "v=1"]);
    make_db(&db, "INSERT INTO t VALUES (2);");
    let inc = env.backup(&db, &["--incremental", "--label", "v=2"]);
    let m = env.run(&["show", s(&inc), "--json"]).ok().json();
    assert_eq!(m["kind"], "incremental", "{m}");
    assert_eq!(m["labels"]["v"], "2", "{m}");
    let m = env.run(&["show", s(&full), "--json"]).ok().json();
    assert_eq!(m["labels"]["v"], "1", "{m}");
    // Invalid keys and values, a key twice: usage errors, nothing written.
    let before = env.backup_files();
    for bad in [
        vec!["--label", "bad key=1"],
        vec!["--label", "novalue"],
        vec!["--label", "=1"],
        vec!["--label", "a=1", "--label", "a=2"],
    ] {
        let mut args = vec!["backup", s(&db)];
        args.extend(bad.iter().copied());
        let r = env.run(&args).code(2);
        assert!(r.stderr.contains("label"), "{bad:?}: {}", r.stderr);
    }
    let long = format!("k={}", "v".repeat(300));
    env.run(&["backup", s(&db), "--label", &long]).code(2);
    assert_eq!(env.backup_files(), before);
}

#[test]
fn restore_if_missing_restores_only_into_an_empty_place() {
    let env = Env::new();
    let target = env.path("data").join("app.db");
    std::fs::create_dir(env.path("data")).unwrap();
    let loc = env.path("bucket");
    std::fs::create_dir(&loc).unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--latest",
            "--dir",
            s(&loc),
            s(&target),
            "--if-missing",
            "--json",
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    // No backup yet: a fresh start, nothing restored, exit 0 (or 1 when a backup is required).
    let r = restore(&[]).ok().json();
    assert_eq!(r["restored"], false, "{r}");
    assert_eq!(r["reason"], "no backup", "{r}");
    assert!(!target.exists());
    let r = restore(&["--require-backup"]).code(1);
    assert!(r.stderr.contains("app-<stamp>"), "{}", r.stderr);
    assert!(!target.exists());

    // A backup exists and the database does not: it is restored.
    let src = env.path("app.db");
    make_db(&src, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);");
    env.run(&["backup", s(&src), "--dir", s(&loc)]).ok();
    let r = restore(&["--require-backup"]).ok().json();
    assert_eq!(r["restored"], true, "{r}");
    assert_eq!(content_hash(&target), content_hash(&src));

    // The database exists (and has moved on): left exactly as it is.
    make_db(&target, "INSERT INTO t VALUES (3);");
    let before = content_hash(&target);
    let r = restore(&[]).ok().json();
    assert_eq!(r["restored"], false, "{r}");
    assert_eq!(r["reason"], "exists", "{r}");
    assert_eq!(content_hash(&target), before);
    let text = env
        .run(&[
            "restore",
            "--latest",
            "--dir",
            s(&loc),
            s(&target),
            "--if-missing",
        ])
        .ok()
        .stdout;
    assert!(text.contains("the database exists: nothing restored"), "{text}");
    // With an archive named, too; and never together with --overwrite.
    let archive = std::fs::read_dir(&loc).unwrap().next().unwrap().unwrap().path();
    let r = env
        .run(&["restore", s(&archive), s(&target), "--if-missing", "--json"])
        .ok()
        .json();
    assert_eq!(r["reason"], "exists", "{r}");
    env.run(&["restore", s(&archive), s(&target), "--if-missing", "--overwrite"])
        .code(2);
    assert_eq!(content_hash(&target), before);
}
