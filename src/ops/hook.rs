//! Commands run after an operation (`restore --after`, the daemon's `after_restore`,
//! `after_backup` and `on_failure`): the operation's report in a private temp file named by
//! `LITEVAULT_REPORT`, what happened in `LITEVAULT_*` variables, a time limit (the command's
//! whole process group is killed past it), and the tails of its output kept for the log. A
//! hook's failure is reported; it never undoes the operation it follows.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Bytes kept of the end of a hook's stdout and of its stderr.
const TAIL: usize = 4096;

/// A command to run: a program and its arguments (no shell unless the program is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// The program, then its arguments.
    pub argv: Vec<String>,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
}

impl Hook {
    /// `sh -c COMMAND`, for a command given as one string on the command line.
    pub fn shell(command: &str, timeout: Duration) -> Hook {
        Hook {
            argv: vec!["sh".into(), "-c".into(), command.into()],
            timeout,
        }
    }
}

/// What happened to the operation a hook follows, for its environment.
#[derive(Debug, Clone, Default)]
pub struct HookEvent {
    /// `after_restore`, `after_backup` or `on_failure`.
    pub event: String,
    /// The database.
    pub database: Option<PathBuf>,
    /// The archive made or restored.
    pub archive: Option<PathBuf>,
    /// `ok` or `failed`.
    pub result: String,
    /// The error, when the operation failed.
    pub error: Option<String>,
    /// The operation's report (or error report) as JSON.
    pub report: serde_json::Value,
}

/// What a hook did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutcome {
    /// The command.
    pub argv: Vec<String>,
    /// Its exit code (`None` when a signal ended it or it could not start).
    pub exit_code: Option<i32>,
    /// Whether it exited 0 within its time.
    pub ok: bool,
    /// Whether it was killed at its time limit.
    pub timed_out: bool,
    /// Why it could not start, if so.
    pub error: Option<String>,
    /// The end of its stdout.
    pub stdout_tail: String,
    /// The end of its stderr.
    pub stderr_tail: String,
    /// How long it ran.
    pub duration_ms: u64,
}

/// Reads `r` to its end, keeping its last [`TAIL`] bytes.
fn tail_of(mut r: impl Read) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * TAIL {
            kept.drain(..kept.len() - TAIL);
        }
    }
    if kept.len() > TAIL {
        kept.drain(..kept.len() - TAIL);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `hook` for `event` and waits for it (at most its timeout). The report file is created
/// in `temp_dir` (the system's when `None`) with mode 0600 and removed afterwards.
pub fn run(hook: &Hook, event: &HookEvent, temp_dir: Option<&Path>) -> HookOutcome {
    let started = Instant::now();
    let mut outcome = HookOutcome {
        argv: hook.argv.clone(),
        exit_code: None,
        ok: false,
        timed_out: false,
        error: None,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        duration_ms: 0,
    };
    let Some((program, args)) = hook.argv.split_first() else {
        outcome.error = Some("an empty command".into());
        return outcome;
    };
    let report = tempfile::Builder::new()
        .prefix(".litevault-report-")
        .suffix(".json")
        .tempfile_in(temp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf))
        .and_then(|mut f| {
            serde_json::to_writer_pretty(&mut f, &event.report)?;
            Ok(f)
        });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            outcome.error = Some(format!("cannot write the report file: {e}"));
            return outcome;
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LITEVAULT_EVENT", &event.event)
        .env("LITEVAULT_RESULT", &event.result)
        .env("LITEVAULT_REPORT", report.path());
    for (name, value) in [
        ("LITEVAULT_DATABASE", &event.database),
        ("LITEVAULT_ARCHIVE", &event.archive),
    ] {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    match &event.error {
        Some(e) => cmd.env("LITEVAULT_ERROR", e),
        None => cmd.env_remove("LITEVAULT_ERROR"),
    };
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(format!("cannot start {program}: {e}"));
            return outcome;
        }
    };
    let out = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || tail_of(o)));
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || tail_of(e)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() >= hook.timeout => {
                outcome.timed_out = true;
                // SAFETY: kill(2) on the process group the child leads.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    outcome.stdout_tail = out.and_then(|t| t.join().ok()).unwrap_or_default();
    outcome.stderr_tail = err.and_then(|t| t.join().ok()).unwrap_or_default();
    outcome.exit_code = status.and_then(|s| s.code());
    outcome.ok = !outcome.timed_out && outcome.exit_code == Some(0);
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    outcome
}

impl HookOutcome {
    /// One line for people: "exit 0 in 0.3 s", "exit 2 in 0.1 s: <stderr's last line>",
    /// "killed after 300 s", "could not start: ...".
    pub fn describe(&self) -> String {
        let secs = self.duration_ms as f64 / 1000.0;
        let last_line = self
            .stderr_tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        match (&self.error, self.timed_out, self.exit_code) {
            (Some(e), _, _) => format!("could not run: {e}"),
            (None, true, _) => format!("killed at its time limit after {secs:.1} s{last_line}"),
            (None, false, Some(0)) => format!("exit 0 in {secs:.1} s"),
            (None, false, Some(c)) => format!("exit {c} in {secs:.1} s{last_line}"),
            (None, false, None) => format!("ended by a signal after {secs:.1} s{last_line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> HookEvent {
        HookEvent {
            event: "after_restore".into(),
            database: Some("/data/app.db".into()),
            archive: Some("/b/app-20261206T170000Z.tar.zst".into()),
            result: "ok".into(),
            error: None,
            report: serde_json::json!({"restored": true}),
        }
    }

    #[test]
    fn a_hook_sees_the_report_and_the_variables() {
        let h = Hook::shell(
            "test \"$LITEVAULT_EVENT $LITEVAULT_RESULT $LITEVAULT_DATABASE\" = 'after_restore ok /data/app.db' \
             && grep -q '\"restored\": true' \"$LITEVAULT_REPORT\" && echo fine && echo oops >&2 && exit 3",
            Duration::from_secs(30),
        );
        let o = run(&h, &event(), None);
        assert_eq!(o.exit_code, Some(3), "{o:?}");
        assert!(!o.ok);
        assert_eq!(o.stdout_tail.trim(), "fine");
        assert_eq!(
            o.describe(),
            "exit 3 in 0.0 s: oops".replace("0.0", &format!("{:.1}", o.duration_ms as f64 / 1000.0))
        );
    }

    #[test]
    fn a_hook_past_its_time_is_killed_with_its_children() {
        let h = Hook::shell("sleep 30 & sleep 30; echo never", Duration::from_millis(300));
        let t = Instant::now();
        let o = run(&h, &event(), None);
        assert!(o.timed_out && !o.ok, "{o:?}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the pipes were held by a child"
        );
        let missing = run(
            &Hook {
                argv: vec!["/nonexistent/program".into()],
                timeout: Duration::from_secs(1),
            },
            &event(),
            None,
        );
        assert!(missing.error.is_some() && !missing.ok);
    }
}
