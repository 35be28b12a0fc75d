-- litevault SQL dump (format litevault/1). Restore: litevault restore FILE NEW.db; plain text also loads with: sqlite3 NEW.db < FILE
-- created_at: 2026-12-01T17:26:41Z
-- manifest: {"format":"litevault/1","kind":"sql","tool_version":"0.1.0","created_at":"","source":"/work/wt-fuzz/tests/fixtures/real/datasette_extra_database.db","host":"vm","sqlite_version":"3.54.1","method":"pages","compression":"none","compression_level":null,"db_size":24576,"source_journal_mode":"delete","snapshot_restarts":0,"quick_check":"ok","corrupt":false,"foreign_key_violations":0,"page_size":4096,"page_count":6,"freelist_count":0,"journal_mode":"delete","encoding":"UTF-8","user_version":0,"application_id":0,"auto_vacuum":"none","tables":[{"name":"searchable","type":"table","rows":2},{"name":"searchable_fts","type":"virtual","rows":2},{"name":"searchable_view","type":"view","rows":null}]}
PRAGMA page_size=4096;
PRAGMA encoding='UTF-8';
PRAGMA auto_vacuum=0;
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE searchable (
  pk integer primary key,
  text1 text,
  text2 text
);
INSERT INTO "searchable"("pk","text1","text2") VALUES(1,'barry cat','terry dog');
INSERT INTO "searchable"("pk","text1","text2") VALUES(2,'terry dog','sara weasel');
CREATE VIRTUAL TABLE "searchable_fts"
    USING FTS3 (text1, text2, content="searchable");
INSERT INTO "searchable_fts"(rowid,"text1","text2","content") VALUES(1,'barry cat','terry dog',NULL);
INSERT INTO "searchable_fts"(rowid,"text1","text2","content") VALUES(2,'terry dog','sara weasel',NULL);
CREATE VIEW searchable_view AS SELECT * FROM searchable;
COMMIT;
-- end: {"sha256":"2ccb5afdb30bfff8e4843a73b4c2f4a6fb7c115a4da203775baf427c437bbb59","data_bytes":724,"statements":13}
