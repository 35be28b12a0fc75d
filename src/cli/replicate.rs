//! `litevault replicate`: its arguments, the run until a signal (or the end of the `--exec`
//! child), and the rendering of what was shipped.

use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::ops::replicate::{ReplicateOptions, Replicator};

use super::common::*;

// The arguments of `litevault replicate` (its help text is on `Command::Replicate`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The database (in WAL mode).
    db: PathBuf,
    /// The location: a directory or s3://bucket/prefix.
    #[arg(long, value_name = "LOCATION")]
    to: PathBuf,
    /// The name of the backups (default: the database's file stem).
    #[arg(long)]
    name: Option<String>,
    /// How often what was committed is shipped (e.g. 1s, 500ms, 1m).
    #[arg(long, default_value = "1s", value_parser = crate::model::time::parse_interval)]
    interval: Duration,
    /// Run this command (through `sh -c`) once the first base is taken, replicate while it
    /// runs, pass SIGTERM and SIGINT on to it, and when it exits ship what it committed last,
    /// stop, and exit with its exit code.
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,
    /// A new base (a page-hash incremental of the last) once the history after the current
    /// one is this old, so that a restore reads a base chain and at most this much of segments
    /// (e.g. 10m, 1h; "off": only after gaps). Only when something was committed meanwhile.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    base_every: String,
    #[command(flatten)]
    crypt: EncryptArgs,
}

fn parse_base_every(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    crate::model::time::parse_duration(text).map(|s| Some(Duration::from_secs(s.max(1))))
}

/// Runs `litevault replicate`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, _progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
        db,
        to,
        name,
        interval,
        exec,
        base_every,
        crypt,
    } = args;
    let mut opts = ReplicateOptions::new(to);
    opts.name = name.clone();
    opts.interval = *interval;
    opts.encrypt = crypt.encryption(cli)?;
    opts.base_every =
        parse_base_every(base_every).map_err(|m| Error::InvalidOption(format!("--base-every: {m}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_gracefully(stop.clone());
    let child_code = Arc::new(std::sync::Mutex::new(None::<i32>));
    let exited = |code: &Arc<std::sync::Mutex<Option<i32>>>| code.lock().ok().and_then(|c| *c);
    // A first start on an empty volume: the application creates the database; replication
    // starts once it has (in WAL mode).
    let mut started = false;
    if let (Some(command), true) = (exec, db.symlink_metadata().is_err()) {
        if !cli.quiet && !cli.json {
            eprintln!(
                "{} does not exist yet: starting the command; replication starts once it has created it (in WAL mode)",
                db.display()
            );
        }
        start_child(command, stop.clone(), child_code.clone())?;
        started = true;
    }
    let waiting = std::time::Instant::now();
    let mut said = false;
    let mut rep = loop {
        match Replicator::new(ctx, db, opts.clone()) {
            Ok(r) => break r,
            Err(e) if started => {
                if let Some(code) = exited(&child_code) {
                    eprintln!("warning: the command exited ({code}) and {db:?} cannot be replicated: {e}");
                    return Ok(u8::try_from(code).unwrap_or(1));
                }
                if !said && waiting.elapsed() > Duration::from_secs(10) {
                    eprintln!("warning: still waiting for a database to replicate: {e}");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    // The first base, before the application starts: a location that cannot be written to
    // fails now.
    rep.poll()?;
    rep.ship()?;
    rep.wait_for_bases(None)?;
    if !cli.quiet && !cli.json {
        eprintln!(
            "replicating {} to {} every {} (base {}); Ctrl-C or SIGTERM stops",
            rep.status().source.display(),
            rep.status().location,
            humantime(*interval),
            rep.status().base.as_deref().unwrap_or("-"),
        );
    }
    if let (Some(command), false) = (exec, started) {
        start_child(command, stop.clone(), child_code.clone())?;
    }
    let verbose = cli.verbose;
    let mut last_error = std::time::Instant::now() - Duration::from_secs(60);
    let status = rep.run(&stop, Duration::from_secs(30), &mut |e| {
        // One line a minute at most while the location fails (always with -v).
        if verbose || last_error.elapsed() >= Duration::from_secs(60) {
            eprintln!("warning: {e} (the transactions wait, and are shipped once it works again)");
            last_error = std::time::Instant::now();
        }
    })?;
    if status.pending > 0 {
        eprintln!(
            "error: {} transaction(s) read could not be shipped before the deadline ({})",
            status.pending,
            status
                .last_error
                .as_deref()
                .unwrap_or("the location did not answer")
        );
    }
    if cli.json {
        out(&json(&status));
    } else if !cli.quiet {
        out(&format!(
            "stopped: {} transaction(s) shipped in {} segment(s) ({}), {} base(s), {} gap(s){}\n",
            status.shipped,
            status.segments,
            HumanBytes(status.bytes),
            status.bases,
            status.gaps,
            status
                .last_gap
                .as_ref()
                .map(|g| format!(" (last: {g})"))
                .unwrap_or_default()
        ));
    }
    let code = child_code.lock().ok().and_then(|c| *c);
    Ok(match code {
        Some(c) => u8::try_from(c).unwrap_or(1),
        None if status.pending > 0 => 1,
        None => exit::OK,
    })
}

/// Starts `sh -c command` as the child replication runs beside: signals are passed on to it,
/// and its exit sets `stop` and records its exit code (128 + the signal that ended it).
fn start_child(
    command: &str,
    stop: Arc<AtomicBool>,
    code: Arc<std::sync::Mutex<Option<i32>>>,
) -> Result<(), Error> {
    let mut cmd = Process::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::inherit());
    unblock_signals_in_child(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("start", std::path::Path::new(command), e))?;
    forward_signals_to(child.id());
    std::thread::spawn(move || {
        let c = match child.wait() {
            Ok(s) => s
                .code()
                .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(1)),
            Err(_) => 1,
        };
        if let Ok(mut slot) = code.lock() {
            *slot = Some(c);
        }
        stop.store(true, Ordering::SeqCst);
    });
    Ok(())
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

/// The child must not inherit the blocked SIGINT and SIGTERM of litevault's threads.
fn unblock_signals_in_child(cmd: &mut Process) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}
