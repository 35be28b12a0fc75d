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

#[test]
fn restore_after_runs_a_command_with_the_report_and_its_failure_keeps_the_restore() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    );
    let archive = env.backup(&db, &[]);
    let seen = env.path("seen.txt");
    let report = env.path("report.json");
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&env.path("new.db")),
            "--json",
            "--after",
            &format!(
                "echo \"$LITEVAULT_EVENT $LITEVAULT_RESULT $LITEVAULT_DATABASE $LITEVAULT_ARCHIVE\" > {} && cp \"$LITEVAULT_REPORT\" {} && sqlite3 \"$LITEVAULT_DATABASE\" 'select count(*) from t'",
                s(&seen),
                s(&report)
            ),
        ])
        .ok()
        .json();
    assert_eq!(r["after"]["ok"], true, "{r}");
    assert_eq!(r["after"]["stdout_tail"].as_str().unwrap().trim(), "2", "{r}");
    let line = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        line.trim(),
        format!("after_restore ok {} {}", s(&env.path("new.db")), s(&archive))
    );
    let copied: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(copied["restored"], true);
    assert!(!std::path::Path::new(copied["plan"]["target"].as_str().unwrap())
        .as_os_str()
        .is_empty());

    // A failing command: said, with its exit code and stderr; the restore stays, exit 0.
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&env.path("other.db")),
            "--after",
            "echo rebuilding failed >&2; exit 5",
        ])
        .ok();
    assert!(
        r.stderr.contains("exit 5") && r.stderr.contains("rebuilding failed"),
        "{}",
        r.stderr
    );
    assert_eq!(query_i64(&env.path("other.db"), "SELECT count(*) FROM t"), 2);
    // One that runs too long is killed at its limit.
    let t = std::time::Instant::now();
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&env.path("third.db")),
            "--after",
            "sleep 60",
            "--after-timeout",
            "1",
        ])
        .ok();
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    assert!(r.stderr.contains("time limit"), "{}", r.stderr);
}

#[test]
fn the_daemon_runs_hooks_after_backups_and_failures_and_takes_labels_from_the_api() {
    use crate::daemon::Daemon;
    let env = Env::new();
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let seen = env.path("after-backup.txt");
    let failed = env.path("on-failure.txt");
    let config = format!(
        "[[databases]]\nname = \"app\"\npath = \"app.db\"\nlocation = \"backups\"\nschedule = \"every 1h\"\n\
         labels = {{ app_version = \"2.3.1\" }}\n\
         after_backup = [\"sh\", \"-c\", \"echo \\\"$LITEVAULT_EVENT $LITEVAULT_ARCHIVE\\\" >> {}; grep -q archive \\\"$LITEVAULT_REPORT\\\"\"]\n\
         on_failure = [\"sh\", \"-c\", \"echo \\\"$LITEVAULT_ERROR\\\" > {}; echo hook stderr >&2; exit 4\"]\n\
         hook_timeout = \"30s\"\n",
        s(&seen),
        s(&failed)
    );
    let d = Daemon::start(env.dir.path(), &config, Some(crate::daemon::TOKEN), &[]);
    d.wait_for(60, "the first backup's hook", |_| {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|t| t.contains("after_backup"))
    });
    // A job runs its hook before it lets the database go: retry while it is busy.
    let create = |body: &str| {
        d.wait_for(60, "the create to be accepted", |d| {
            let r = d.post("/api/backup/create", body);
            (r.status != 409).then_some(r)
        })
    };
    // A backup through the API with labels of its own, beside the configuration's.
    let r = create(r#"{"database":"app","labels":{"deploy":"42"}}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    d.wait_for(60, "the second backup's hook", |_| {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|t| t.lines().count() >= 2)
    });
    let listed = env.run(&["list", "--json", "--label", "deploy=42"]).ok().json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["manifest"]["labels"]["app_version"], "2.3.1");
    let hooked = std::fs::read_to_string(&seen).unwrap();
    assert!(hooked.contains(listed[0]["path"].as_str().unwrap()), "{hooked}");
    // Labels on a verify: refused.
    let r = d.post("/api/backup/verify", r#"{"database":"app","labels":{"a":"b"}}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = create(r#"{"database":"app","labels":{"bad key":"b"}}"#);
    assert_eq!(r.status, 400, "{}", r.body);

    // A backup that fails (the database is no longer one): on_failure runs, its failure is logged.
    std::fs::write(&db, vec![7u8; 8192]).unwrap();
    let _ = std::fs::remove_file(env.path("app.db-wal"));
    let r = create(r#"{"database":"app"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    let why = d.wait_for(60, "the failure hook", |_| {
        std::fs::read_to_string(&failed).ok().filter(|t| !t.is_empty())
    });
    assert!(why.contains("not") || why.contains("database"), "{why}");
    d.wait_for(30, "the hook's failure in the log", |d| {
        let log = d.log();
        (log.contains("hook.failed") && log.contains("exit 4") && log.contains("hook stderr")).then_some(())
    });
}

/// Runs examples/container/entrypoint.sh with the test's litevault first in PATH.
fn entrypoint(env: &Env, loc: &std::path::Path, db: &std::path::Path, rows: u32) -> std::process::Command {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/container");
    let bin_dir = std::path::Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = std::process::Command::new(script.join("entrypoint.sh"));
    c.arg("python3")
        .arg(script.join("app.py"))
        .arg(db)
        .arg(rows.to_string())
        .current_dir(env.dir.path())
        .env("PATH", path)
        .env("LITEVAULT_LOCATION", loc)
        .env("APP_DB", db)
        .env("LITEVAULT_STATE_DIR", env.path(".state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

#[test]
fn the_container_recipe_starts_fresh_comes_back_on_a_new_volume_and_stops_on_sigterm() {
    let env = Env::new();
    let loc = env.path("bucket");
    std::fs::create_dir(&loc).unwrap();
    let data = env.path("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("app.db");

    // First start: an empty volume and an empty location.
    let out = entrypoint(&env, &loc, &db, 50).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no backup"),
        "{stderr}"
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events"), 50);

    // A new volume: the history comes back before the application starts, which goes on.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir(&data).unwrap();
    let out = entrypoint(&env, &loc, &db, 50).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(query_i64(&db, "SELECT count(*) FROM starts"), 2);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM events"), 100);

    // A restart on the same volume, stopped by SIGTERM (docker stop) while it writes.
    let child = entrypoint(&env, &loc, &db, 1_000_000).spawn().unwrap();
    let t = std::time::Instant::now();
    while query_i64(&db, "SELECT count(*) FROM starts") < 3
        || query_i64(&db, "SELECT count(*) FROM events") < 200
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the app never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our child (litevault, which the script exec'd).
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = env.path("check.db");
    env.run(&[
        "restore",
        "--latest",
        "--dir",
        s(&loc),
        "--name",
        "app",
        s(&check),
    ])
    .ok();
    assert_eq!(content_hash(&check), content_hash(&db));
}

#[test]
fn two_restores_if_missing_at_once_restore_one_database_and_the_other_keeps_it() {
    let env = Env::new();
    let src = env.path("src.db");
    make_db(
        &src,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT randomblob(100) FROM n;",
    );
    env.backup(&src, &["--name", "app"]);
    for round in 0..4 {
        let target = env.path(&format!("app{round}.db"));
        let spawn = || {
            env.command(&[
                "restore",
                "--latest",
                "--name",
                "app",
                s(&target),
                "--if-missing",
                "--json",
            ])
            .spawn()
            .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let reports: Vec<serde_json::Value> = outs
            .iter()
            .map(|o| {
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                serde_json::from_slice(&o.stdout).unwrap()
            })
            .collect();
        let restored = reports.iter().filter(|r| r["restored"] == true).count();
        assert_eq!(restored, 1, "round {round}: {reports:?}");
        let kept = reports.iter().find(|r| r["restored"] == false).unwrap();
        assert_eq!(kept["reason"], "exists", "{kept}");
        assert_eq!(integrity(&target), "ok");
        assert_eq!(content_hash(&target), content_hash(&src));
    }
}
