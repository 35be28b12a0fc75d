PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t VALUES(1,'x;y');
ATTACH DATABASE 'evil.db' AS evil;
CREATE TABLE evil.x(a);
VACUUM INTO 'copy.db';
SELECT load_extension('/tmp/x.so');
PRAGMA writable_schema=ON;
UPDATE sqlite_master SET sql='CREATE TABLE t(a)' WHERE name='t';
CREATE TRIGGER tr AFTER INSERT ON t BEGIN
  INSERT INTO t VALUES(new.a+1, 'z'); SELECT writefile('out', 'x');
END;
CREATE VIEW v AS SELECT * FROM t;
CREATE INDEX i ON t(b);
CREATE VIRTUAL TABLE f USING fts5(body);
INSERT INTO f VALUES('hello world');
COMMIT;
