//! `litevault serve`: reads the configuration, binds the listener, and turns SIGTERM/SIGINT
//! into the daemon's shutdown and SIGHUP into reloads. The daemon itself is
//! [`crate::serve`].

use std::path::Path;
use std::time::Duration;

use crate::serve::{self, Config, Control, LogFormat};
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

/// Runs the subcommand; returns the exit code (0 after a clean stop, 1 on a bad configuration
/// or an address that cannot be bound).
pub(crate) fn main(config_path: &Path, check: bool, format: LogFormat, json_out: bool) -> u8 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: `litevault serve --help` and docs/daemon.md show a complete file");
            return 1;
        }
    };
    if check {
        print_check(&config, json_out);
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work (listing each database's location when its schedule starts, restores'
        // plans) waits in line past 16 threads: a hundred databases start without a hundred.
        .max_blocking_threads(16)
        .thread_name("serve")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let listener = match std::net::TcpListener::bind(config.listen).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.listen);
            if e.kind() == std::io::ErrorKind::AddrInUse {
                eprintln!("hint: another process (another litevault serve?) uses that port: stop it or change `listen`");
            }
            return 1;
        }
    };
    let path = config_path.to_path_buf();
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match Config::load(&path) {
                    Ok(c) => {
                        let _ = reload_tx.send(c);
                    }
                    Err(e) => format.write(
                        "error",
                        "serve.reload_refused",
                        &[
                            ("error", e.to_string().into()),
                            ("detail", "the running configuration is kept".into()),
                        ],
                    ),
                }
            }
        });
        // Jobs and first bases leave freed memory in malloc's arenas: give it back to the
        // system every 10 s (it takes well under a millisecond; with 100 replicated databases,
        // bench/many.py: 41 MiB of RSS -> 33 MiB).
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            every.tick().await;
            loop {
                every.tick().await;
                // SAFETY: malloc_trim only returns free memory of glibc's arenas to the system.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            }
        });
        let shutdown = async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            format.write("info", "serve.signal", &[("signal", name.into())]);
        };
        let control = Control {
            reloads: Some(reload_rx),
            log_format: format,
        };
        serve::run_with(listener, config, shutdown, control).await
    });
    // Cancelled jobs' threads are not waited for: their temp files are gone, uploads aborted.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn print_check(config: &Config, json_out: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let token = match (&config.token, config.listen.ip().is_loopback()) {
        (Some(_), _) => "required",
        (None, _) => "none (the API is open to every local user)",
    };
    if json_out {
        let dbs: Vec<_> = config
            .databases
            .iter()
            .map(|d| {
                json!({
                    "name": d.name, "path": d.path, "location": d.location,
                    "schedule": d.schedule.text(),
                    "next_run_after_now": crate::location::format_time(d.schedule.next_after(now)),
                    "incremental": d.format.incremental(), "full_every": d.format.full_every(), "format": d.format.kind(),
                    "keep": d.keep, "verify": d.verify.as_ref().map(|v| v.text()),
                    "include": d.format.include(), "encrypted_to": d.encrypt.as_ref().map(|e| e.describe()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": true, "listen": config.listen.to_string(), "token": config.token.is_some(),
                "max_parallel": config.max_parallel, "state_dir": config.state_dir, "databases": dbs,
                "identities": !config.identities.is_empty(),
            }))
            .unwrap_or_default()
        );
        return;
    }
    println!(
        "configuration OK: listen {} (token: {token}), {} job(s) at once, state in {}",
        config.listen,
        config.max_parallel,
        config.state_dir.display()
    );
    for d in &config.databases {
        println!(
            "  {}: {} -> {} ({}{}), schedule {:?} (next slot {}){}{}{}{}",
            d.name,
            d.path.display(),
            d.location.display(),
            if d.format.incremental() {
                "incremental"
            } else {
                "full"
            },
            d.format
                .full_every()
                .map(|n| format!(", a full one every {n}"))
                .unwrap_or_default(),
            d.schedule.text(),
            crate::location::format_time(d.schedule.next_after(now)),
            d.keep
                .as_ref()
                .map(|_| ", retention after each backup")
                .unwrap_or_default(),
            d.verify
                .as_ref()
                .map(|v| format!(", restore drill {:?}", v.text()))
                .unwrap_or_default(),
            if d.format.include().is_empty() {
                String::new()
            } else {
                format!(", with the files of {} director(ies)", d.format.include().len())
            },
            d.encrypt
                .as_ref()
                .map(|e| format!(", encrypted to {}", e.describe()))
                .unwrap_or_default(),
        );
    }
    for p in &config.patterns {
        let found = config
            .databases
            .iter()
            .filter(|d| d.pattern.as_ref() == Some(&p.path))
            .count();
        println!(
            "  pattern {}: {} -> {}, {found} database(s) match now, looked at again every {}s",
            p.name,
            p.path.display(),
            p.location.display(),
            config.discover_every.as_secs()
        );
    }
}
