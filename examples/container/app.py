"""A stand-in for the application (a web server, say): it keeps its state in SQLite in WAL
mode, records each start, writes some rows, and exits (or stops at SIGTERM).

    python3 app.py /data/app.db [ROWS]
"""
import signal
import sqlite3
import sys
import time

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
db = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS starts(id INTEGER PRIMARY KEY, at REAL NOT NULL)")
conn.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
conn.execute("INSERT INTO starts(at) VALUES (?)", (time.time(),))
for i in range(rows):
    if stop:
        break
    conn.execute("INSERT INTO events(body) VALUES (?)", (f"event {i}",))
    time.sleep(0.002)
conn.close()
