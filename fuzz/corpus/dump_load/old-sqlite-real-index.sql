-- litevault SQL dump (format litevault/1). Restore: litevault restore FILE NEW.db; plain text also loads with: sqlite3 NEW.db < FILE
-- created_at: 2026-12-01T17:26:41Z
-- manifest: {"format":"litevault/1","kind":"sql","tool_version":"0.1.0","created_at":"","source":"/work/wt-fuzz/tests/fixtures/real/old-sqlite-real-index.db","host":"vm","sqlite_version":"3.54.1","method":"pages","compression":"none","compression_level":null,"db_size":16384,"source_journal_mode":"delete","snapshot_restarts":0,"quick_check":"ok","corrupt":false,"foreign_key_violations":0,"page_size":4096,"page_count":4,"freelist_count":0,"journal_mode":"delete","encoding":"UTF-8","user_version":0,"application_id":0,"auto_vacuum":"none","tables":[{"name":"t","type":"table","rows":8}]}
PRAGMA page_size=4096;
PRAGMA encoding='UTF-8';
PRAGMA auto_vacuum=0;
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE t(v REAL);
INSERT INTO "t"(rowid,"v") VALUES(1,5e-324);
INSERT INTO "t"(rowid,"v") VALUES(2,0.30000000000000004);
INSERT INTO "t"(rowid,"v") VALUES(3,0.3333333333333333);
INSERT INTO "t"(rowid,"v") VALUES(4,2.2250738585072014e-308);
INSERT INTO "t"(rowid,"v") VALUES(5,1.5);
INSERT INTO "t"(rowid,"v") VALUES(6,0.6666666666666666);
INSERT INTO "t"(rowid,"v") VALUES(7,3.333333333333333e99);
INSERT INTO "t"(rowid,"v") VALUES(8,123456.789);
CREATE INDEX i ON t(lower(v));
CREATE INDEX j ON t(v);
COMMIT;
-- end: {"sha256":"0039d66b804884c5cbf3572fc65455ba57b9158e87f95109dd5fe9cf61d50c51","data_bytes":630,"statements":17}
