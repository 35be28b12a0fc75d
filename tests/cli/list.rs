//! `litevault list` and `show`: manifests read from the head of archives only.

use crate::util::*;

#[test]
fn list_shows_every_archive_from_its_manifest() {
    let env = Env::new();
    let a = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let b = copy_fixture(&env, "real/northwind_205fc66.db");
    env.backup(&a, &[]);
    env.backup(&b, &["--compression", "gzip", "--method", "vacuum"]);
    // Things list must skip: a temp file of an interrupted backup, an unrelated file.
    std::fs::write(env.backups().join(".litevault-abc.partial"), b"x").unwrap();
    std::fs::write(env.backups().join("notes.txt"), b"x").unwrap();
    let v = env.run(&["list", "--json"]).ok().json();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let sources: Vec<&str> = items
        .iter()
        .map(|i| i["manifest"]["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&a.to_str().unwrap()) && sources.contains(&b.to_str().unwrap()));
    for i in items {
        assert!(i["archive_size"].as_u64().unwrap() > 0);
        assert!(i["manifest"]["db_size"].as_u64().unwrap() > 0);
    }
    let human = env.run(&["list"]).ok().stdout;
    assert!(human.lines().next().unwrap().starts_with("NAME"));
    assert!(
        human.contains("Chinook_Sqlite-") && human.contains("vacuum"),
        "{human}"
    );
}

#[test]
fn list_reads_only_the_head_of_each_archive() {
    let env = Env::new();
    let src = env.path("big.db");
    make_sized_db(&src, 24);
    let archive = env.backup(&src, &[]);
    // Cut the archive to its first 10%: a reader that decompressed the whole archive would
    // fail; list and show must still read the manifest.
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 10]).unwrap();
    let v = env.run(&["list", "--json"]).ok().json();
    assert_eq!(v[0]["manifest"]["source"], src.to_str().unwrap(), "{v}");
    env.run(&["show", archive.to_str().unwrap()]).ok();
    // ... while verify reads it all and finds the truncation.
    let r = env.run(&["verify", archive.to_str().unwrap(), "--json"]).code(3);
    assert_eq!(r.json()["checks"][0]["name"], "archive structure");
}

#[test]
fn unreadable_archives_are_listed_with_the_reason() {
    let env = Env::new();
    std::fs::write(env.backups().join("junk.tar.zst"), b"not an archive at all").unwrap();
    let v = env.run(&["list", "--json"]).ok().json();
    assert!(v[0]["manifest"].is_null());
    assert!(
        v[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a litevault archive"),
        "{v}"
    );
    let human = env.run(&["list"]).ok().stdout;
    assert!(human.contains("unreadable"), "{human}");
}

#[test]
fn list_of_an_empty_or_missing_directory() {
    let env = Env::new();
    let r = env.run(&["list"]).ok();
    assert!(r.stdout.contains("no archives"));
    assert_eq!(env.run(&["list", "--json"]).ok().json(), serde_json::json!([]));
    let r = env
        .run(&["list", "--dir", env.path("nope").to_str().unwrap()])
        .code(1);
    assert!(r.stderr.contains("no such file"));
}

#[test]
fn show_prints_the_manifest() {
    let env = Env::new();
    let src = copy_fixture(&env, "real/datasette_fixtures.db");
    let archive = env.backup(&src, &[]);
    let human = env.run(&["show", archive.to_str().unwrap()]).ok().stdout;
    for key in [
        "format",
        "created_at",
        "source",
        "page_size",
        "user_version",
        "tables (",
    ] {
        assert!(human.contains(key), "{key} missing in {human}");
    }
    let r = env.run(&["show", src.to_str().unwrap()]).code(3);
    assert!(r.stderr.contains("not a litevault archive"), "{}", r.stderr);
}
