//! `litevault._native`: the Python extension module. It runs the library's command line in
//! this process ([`litevault::cli`]): [`run`] for the Python API (one command, its `--json`
//! report back as text; the `litevault` package turns it into typed objects), [`cli_main`] for
//! the `litevault` command that the wheel installs.
//!
//! While a command runs, the GIL is released: the work is on a thread of its own, and the
//! calling thread waits for it, checking Python's signals every 50 ms. A `KeyboardInterrupt`
//! (or an exception from the progress callback) cancels the work through
//! [`litevault::Progress::cancelled`]: it stops at its next step, removes its temp files and
//! publishes nothing; then the exception is raised. A panic is caught and raised as
//! `litevault.LitevaultError`, never as anything else.

use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use litevault::error::ErrorReport;
use litevault::Progress;
use pyo3::prelude::*;

/// How often the waiting thread looks at Python's signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(50);
/// At most one progress call a phase this often (besides each phase's first and last).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The phase being reported to the callback.
struct PhaseState {
    name: String,
    total: Option<u64>,
    done: u64,
    last_call: Instant,
}

/// Forwards the library's progress to a Python callable `callback(phase, done, total)` and
/// tells the library to stop once cancelled (Ctrl-C in the waiting thread, an exception from
/// the callback, or the callback returning `False`).
struct PyProgress {
    callback: Option<Py<PyAny>>,
    cancel: Arc<AtomicBool>,
    phase: Mutex<PhaseState>,
    /// The callback's exception, raised once the work has stopped.
    error: Mutex<Option<PyErr>>,
    /// The callback returned `False`.
    declined: AtomicBool,
}

impl PyProgress {
    fn call(&self, force: bool) {
        let Some(cb) = &self.callback else { return };
        if self.cancel.load(Ordering::SeqCst) {
            return;
        }
        let (name, done, total) = {
            let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
            if !force && p.last_call.elapsed() < PROGRESS_EVERY {
                return;
            }
            p.last_call = Instant::now();
            (p.name.clone(), p.done, p.total)
        };
        Python::attach(|py| match cb.call1(py, (name, done, total)) {
            Ok(answer) => {
                if answer.bind(py).is(pyo3::types::PyBool::new(py, false)) {
                    self.declined.store(true, Ordering::SeqCst);
                    self.cancel.store(true, Ordering::SeqCst);
                }
            }
            Err(e) => {
                *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                self.cancel.store(true, Ordering::SeqCst);
            }
        });
    }
}

impl Progress for PyProgress {
    fn begin(&self, phase: &str, total: Option<u64>) {
        {
            let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
            p.name = phase.to_string();
            p.total = total;
            p.done = 0;
        }
        self.call(true);
    }

    fn advance(&self, bytes: u64) {
        {
            let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
            p.done += bytes;
        }
        self.call(false);
    }

    fn end(&self) {
        self.call(true);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// Raises the `litevault` package's exception for this error class (`litevault._errors`).
fn raise(py: Python<'_>, report: &ErrorReport) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let errors = py.import("litevault._errors")?;
        let exc = errors.getattr("from_report")?.call1((
            report.error.as_str(),
            report.class.as_str(),
            report.hint.as_deref(),
            report.exit_code,
        ))?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|e| e)
}

/// Runs one command (the words after `litevault`, e.g. `["backup", "app.db", "--dir", "b"]`)
/// with `--json`; returns `(exit_code, report_json)`. Raises the `litevault` exception of the
/// error's class, `KeyboardInterrupt` after a Ctrl-C (the work cancelled), or the progress
/// callback's own exception.
#[pyfunction]
#[pyo3(signature = (args, progress=None))]
fn run(py: Python<'_>, args: Vec<OsString>, progress: Option<Py<PyAny>>) -> PyResult<(u8, String)> {
    let cancel = Arc::new(AtomicBool::new(false));
    let prog = Arc::new(PyProgress {
        callback: progress,
        cancel: cancel.clone(),
        phase: Mutex::new(PhaseState {
            name: String::new(),
            total: None,
            done: 0,
            last_call: Instant::now(),
        }),
        error: Mutex::new(None),
        declined: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel();
    let worker_prog = prog.clone();
    let spawned = std::thread::Builder::new()
        .name("litevault".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                litevault::cli::run_json(&args, worker_prog.as_ref())
            }));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(raise(
            py,
            &ErrorReport {
                error: format!("cannot start a thread: {e}"),
                class: "error".into(),
                hint: None,
                exit_code: 1,
            },
        ));
    }
    let mut interrupted: Option<PyErr> = None;
    let mut rx = rx;
    let outcome = loop {
        // The receiver goes into the GIL-free closure and comes back (it is Send, not Sync).
        let (got, back) = py.detach(move || (rx.recv_timeout(SIGNAL_POLL), rx));
        rx = back;
        match got {
            Ok(outcome) => break outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::SeqCst);
                        interrupted = Some(e);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(
                    Box::new("the worker thread ended without a result") as Box<dyn std::any::Any + Send>
                )
            }
        }
    };
    if let Some(e) = interrupted {
        return Err(e);
    }
    if let Some(e) = prog.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    match outcome {
        Ok(Ok(done)) => Ok((done.exit_code, done.report)),
        Ok(Err(err)) => {
            let mut report = ErrorReport::from(&err);
            if prog.declined.load(Ordering::SeqCst) && matches!(err, litevault::Error::Cancelled) {
                report.hint = Some("the progress callback returned False".into());
            }
            Err(raise(py, &report))
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(raise(
                py,
                &ErrorReport {
                    error: format!("internal error (please report it): {what}"),
                    class: "error".into(),
                    hint: None,
                    exit_code: 1,
                },
            ))
        }
    }
}

/// The `litevault` command: `argv` as `sys.argv` has it (program name first); returns the exit
/// code. Signals are the command's own (Ctrl-C removes its temp files and exits 130).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| {
        catch_unwind(AssertUnwindSafe(|| litevault::cli::main(argv))).unwrap_or_else(|_| {
            eprintln!("error: internal error (please report it); the message is above");
            1
        })
    })
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
