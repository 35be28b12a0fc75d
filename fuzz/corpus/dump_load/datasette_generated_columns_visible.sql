-- litevault SQL dump (format litevault/1). Restore: litevault restore FILE NEW.db; plain text also loads with: sqlite3 NEW.db < FILE
-- created_at: 2026-12-01T17:26:41Z
-- manifest: {"format":"litevault/1","kind":"sql","tool_version":"0.1.0","created_at":"","source":"/work/wt-fuzz/tests/fixtures/real/datasette_generated_columns_visible.db","host":"vm","sqlite_version":"3.54.1","method":"pages","compression":"none","compression_level":null,"db_size":8192,"source_journal_mode":"delete","snapshot_restarts":0,"quick_check":"ok","corrupt":false,"foreign_key_violations":0,"page_size":4096,"page_count":2,"freelist_count":0,"journal_mode":"delete","encoding":"UTF-8","user_version":0,"application_id":0,"auto_vacuum":"none","tables":[{"name":"generated_columns","type":"table","rows":1}]}
PRAGMA page_size=4096;
PRAGMA encoding='UTF-8';
PRAGMA auto_vacuum=0;
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE generated_columns (
    body TEXT,
    id INT GENERATED ALWAYS AS (json_extract(body, '$.number')) STORED,
    consideration INT GENERATED ALWAYS AS (json_extract(body, '$.string')) STORED
);
INSERT INTO "generated_columns"(rowid,"body") VALUES(1,'{"number": 1, "string": "This is a string"}');
COMMIT;
-- end: {"sha256":"b3f6c47fae1d81867b53ac399b97fb5754876545fb1449402171a38e3c54bbfb","data_bytes":430,"statements":8}
