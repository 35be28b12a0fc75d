-- litevault SQL dump (format litevault/1). Restore: litevault restore FILE NEW.db; plain text also loads with: sqlite3 NEW.db < FILE
-- created_at: 2026-12-01T17:26:41Z
-- manifest: {"format":"litevault/1","kind":"sql","tool_version":"0.1.0","created_at":"","source":"/work/wt-fuzz/tests/fixtures/real/dbfuzz2-seed1.db","host":"vm","sqlite_version":"3.54.1","method":"pages","compression":"none","compression_level":null,"db_size":3584,"source_journal_mode":"delete","snapshot_restarts":0,"quick_check":"ok","corrupt":false,"foreign_key_violations":0,"page_size":512,"page_count":7,"freelist_count":0,"journal_mode":"delete","encoding":"UTF-8","user_version":0,"application_id":0,"auto_vacuum":"none","tables":[{"name":"t1","type":"table","rows":4},{"name":"t2","type":"table","rows":8},{"name":"t3","type":"table","rows":0},{"name":"t4","type":"table","rows":8}]}
PRAGMA page_size=512;
PRAGMA encoding='UTF-8';
PRAGMA auto_vacuum=0;
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE t1(a,b);
INSERT INTO "t1"(rowid,"a","b") VALUES(1,1,2);
INSERT INTO "t1"(rowid,"a","b") VALUES(2,3,4);
INSERT INTO "t1"(rowid,"a","b") VALUES(3,5.0,6.0);
INSERT INTO "t1"(rowid,"a","b") VALUES(4,'seven','eight');
CREATE TABLE t2(c,d,e,f);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(1,1,2,2,1);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(2,3,4,4,3);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(3,5.0,6.0,6.0,5.0);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(4,'seven','eight','eight','seven');
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(5,2,2,1,1);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(6,4,4,3,3);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(7,6.0,6.0,5.0,5.0);
INSERT INTO "t2"(rowid,"c","d","e","f") VALUES(8,'eight','eight','seven','seven');
CREATE TABLE t3(c,x,e,f);
CREATE TABLE t4(x);
INSERT INTO "t4"(rowid,"x") VALUES(1,2);
INSERT INTO "t4"(rowid,"x") VALUES(2,2);
INSERT INTO "t4"(rowid,"x") VALUES(3,4);
INSERT INTO "t4"(rowid,"x") VALUES(4,4);
INSERT INTO "t4"(rowid,"x") VALUES(5,6.0);
INSERT INTO "t4"(rowid,"x") VALUES(6,6.0);
INSERT INTO "t4"(rowid,"x") VALUES(7,'eight');
INSERT INTO "t4"(rowid,"x") VALUES(8,'eight');
CREATE INDEX t2cd ON t2(c,d);
CREATE INDEX t3x ON t3(x);
COMMIT;
-- end: {"sha256":"1d0e8e379ed7109f9aa12ff02e1cb1db308ebdc33b14819a805aa59daff80d60","data_bytes":1356,"statements":32}
