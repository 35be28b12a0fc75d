//! A running `litevault serve` for the tests, and a small HTTP/1.1 client over a plain
//! `TcpStream` (one request per connection), so a test can also send what no client library
//! would (no token, a wrong one, oversized or malformed bodies).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::bin;

/// A test token (long enough for the daemon's minimum).
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Sends one request; `token` goes in `Authorization: Bearer`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_answer(&raw).unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// Sends `raw` as it is on a new connection and reads until the server closes it, for at most
/// `wait`: what no well-behaved client sends (a scheme in another case, a length it never
/// sends). None when no whole answer came in time.
pub fn send_raw(addr: SocketAddr, raw: &[u8], wait: Duration) -> Option<Answer> {
    let deadline = Instant::now() + wait;
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.write_all(raw).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server did not read all that was sent) ends it too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => return None,
        }
    }
    parse_answer(&got)
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some(Answer {
        status,
        headers: head.to_string(),
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A daemon started by a test; killed when dropped.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    pub config: PathBuf,
    pub token: Option<String>,
}

impl Daemon {
    /// Writes `config` (TOML; `listen` defaults to a free loopback port) to `dir/litevault.toml`
    /// and starts `litevault serve` on it with `LITEVAULT_TOKEN` = `token`; waits until it listens.
    pub fn start(dir: &Path, config: &str, token: Option<&str>, extra_args: &[&str]) -> Daemon {
        Daemon::start_with(dir, config, token, extra_args, |_| {})
    }

    /// [`Daemon::start`] with the command adjusted by `customize` (e.g. S3 credentials).
    pub fn start_with(
        dir: &Path,
        config: &str,
        token: Option<&str>,
        extra_args: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Daemon {
        let path = dir.join("litevault.toml");
        let text = if config.contains("listen") {
            config.to_string()
        } else {
            format!("listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n{config}")
        };
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config", path.to_str().unwrap()])
            .args(extra_args)
            .current_dir(dir)
            .env("LITEVAULT_STATE_DIR", dir.join(".state"))
            .env_remove("LITEVAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("LITEVAULT_TOKEN", t);
        }
        customize(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let start = Instant::now();
        let addr = loop {
            let text = log.lock().unwrap().clone();
            if let Some(addr) = listen_addr(&text) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("the daemon exited ({status}): {}", log.lock().unwrap());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the daemon never listened: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon {
            child,
            addr,
            log,
            config: path,
            token: token.map(str::to_string),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> Answer {
        request(self.addr, "GET", path, self.token.as_deref(), None)
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        request(self.addr, "POST", path, self.token.as_deref(), Some(body))
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls `f` every 50 ms until it returns Some, for at most `secs`.
    #[track_caller]
    pub fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut(&Daemon) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until job `id` has finished; returns its JSON.
    #[track_caller]
    pub fn wait_job(&self, id: u64, secs: u64) -> Value {
        self.wait_for(secs, &format!("job {id}"), |d| {
            let j = d.get(&format!("/api/jobs/{id}")).json();
            matches!(j["state"].as_str(), Some("done" | "failed")).then_some(j)
        })
    }

    /// Waits until the log has `n` lines containing `pat`.
    #[track_caller]
    pub fn wait_log(&self, pat: &str, n: usize, secs: u64) {
        self.wait_for(secs, &format!("{n} log lines with {pat:?}"), |d| {
            (d.log().matches(pat).count() >= n).then_some(())
        })
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit; returns the code and the time taken.
    pub fn terminate(&mut self) -> (i32, Duration) {
        let start = Instant::now();
        self.signal(libc::SIGTERM);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // the log thread drains stderr
                return (s.code().unwrap_or(-1), start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the daemon did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listen_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("serve.start"))?;
    let at = line.find("listen")?;
    let rest = &line[at..];
    let addr: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit() && c != '[')
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// The Python of the test venv (`.ci/s3-setup.sh` installs prometheus_client and schemathesis).
/// The file names of the archives an `/api/backups` answer lists.
pub fn archive_names(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            Path::new(a["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

pub fn venv_bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/s3-venv/bin")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `bash .ci/s3-setup.sh`",
        p.display()
    );
    p
}
