//! Messages a new user met (issue 20, item 7): each wrong-but-plausible command says what the
//! file is and what to do instead, with the usage exit code, and changes nothing.

use crate::util::*;

#[test]
fn wrong_files_and_arguments_say_what_they_are() {
    let env = Env::new();
    let plain = env.path("plain.db");
    make_db(&plain, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    std::fs::write(env.path("notes.txt"), "Shopping list: eggs, milk\n").unwrap();
    std::fs::write(env.path("empty.db"), b"").unwrap();

    let r = env.run(&["verify", "notes.txt"]).code(2);
    assert!(
        r.stderr.contains("not a backup") && r.stderr.contains("not SQL"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("truncated"), "{}", r.stderr);
    let r = env.run(&["restore", "notes.txt", "x.db"]).code(2);
    assert!(r.stderr.contains("not a backup"), "{}", r.stderr);
    assert!(!env.path("x.db").exists());

    // Named as given, not as a temp copy.
    let r = env.run(&["verify", "empty.db"]).code(1);
    assert!(r.stderr.starts_with("error: empty.db: "), "{}", r.stderr);
    assert!(r.stderr.contains("the file is empty (0 bytes)"), "{}", r.stderr);
    assert!(!r.stderr.contains(".litevault-"), "{}", r.stderr);

    let r = env.run(&["restore", "plain.db", "new.db"]).code(2);
    assert!(
        r.stderr.contains("is an SQLite database, not a backup"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("litevault backup plain.db"), "{}", r.stderr);
    assert!(!env.path("new.db").exists());

    // An archive given as the target is refused, and stays as it was.
    let archive = env.backup(&plain, &[]);
    let copy = env.path("copy.tar.zst");
    std::fs::copy(&archive, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let r = env
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "copy.tar.zst",
            "--overwrite",
        ])
        .code(2);
    assert!(
        r.stderr.contains("is a litevault backup, not a database"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(env.dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("copy"))
            .count(),
        1
    );

    // -o a directory: refused at once, before any backup work.
    std::fs::create_dir(env.path("outdir")).unwrap();
    let r = env.run(&["backup", "plain.db", "-o", "outdir"]).code(2);
    assert!(
        r.stderr.contains("that is a directory") && r.stderr.contains("--dir outdir"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("--overwrite"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(env.path("outdir")).unwrap().count(), 0);

    // A dump is a dump, and counts tables the way an archive does.
    let r = env
        .run(&["backup", "plain.db", "--format", "sql", "--compression", "none"])
        .ok();
    assert!(
        r.stdout.contains("SQL dump (uncompressed), 1 table, 1 row"),
        "{}",
        r.stdout
    );
    let r = env.run(&["backup", "plain.db"]).ok();
    assert!(
        r.stdout.contains("archive (zstd), 1 table, 1 row"),
        "{}",
        r.stdout
    );

    // Usage lines name each argument once.
    let r = env.run(&["merge", "--help"]).ok();
    assert!(r.stdout.contains("<BACKUP>... <DB>"), "{}", r.stdout);
    let r = env.run(&["copy", "--help"]).ok();
    assert!(r.stdout.contains("<ARCHIVE>... <LOCATION>"), "{}", r.stdout);
}

#[test]
fn list_and_show_flag_an_archive_cut_short() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 4);
    let archive = env.backup(&db, &[]);
    let whole = std::fs::read(&archive).unwrap();
    let l = env.run(&["list", "--json"]).ok().json();
    assert_eq!(l[0]["truncated"], false, "{l}");
    let body = l[0]["manifest"]["body_size"].as_u64().unwrap();
    assert!(body < whole.len() as u64 && body > whole.len() as u64 / 2, "{l}");
    // Cut to a few KiB, as an interrupted copy leaves it: the head (manifest) still reads.
    std::fs::write(&archive, &whole[..whole.len() / 3]).unwrap();
    let l = env.run(&["list", "--json"]).ok().json();
    assert_eq!(l[0]["truncated"], true, "{l}");
    let text = env.run(&["list"]).ok().stdout;
    assert!(text.contains("TRUNCATED"), "{text}");
    let show = env.run(&["show", archive.to_str().unwrap()]).ok().stdout;
    assert!(show.starts_with("TRUNCATED: "), "{show}");
    let show = env
        .run(&["show", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(
        show["truncated"]["stored_bytes"],
        whole.len() as u64 / 3,
        "{show}"
    );
    // The whole archive is not flagged.
    std::fs::write(&archive, &whole).unwrap();
    assert!(!env
        .run(&["show", archive.to_str().unwrap()])
        .ok()
        .stdout
        .contains("TRUNCATED"));
}
