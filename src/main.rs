//! The `litevault` command: parses arguments, calls one library function, renders its report
//! (human text or `--json`) and maps errors to documented exit codes. All the work is in the
//! library; nothing here touches a database. The subcommands live in [`cli`]; the daemon is
//! started by [`serve_cmd`].

mod cli;
#[cfg(feature = "serve")]
mod serve_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use litevault::Progress;

use cli::Cli;
#[cfg(feature = "serve")]
use cli::{Command, LogFormatArg};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::bare_reindex_means_disputed(std::env::args_os()));
    #[cfg(feature = "serve")]
    if let Command::Serve(args) = &cli.command {
        let format = match args.log_format {
            LogFormatArg::Text => litevault::serve::LogFormat::Text,
            LogFormatArg::Json => litevault::serve::LogFormat::Json,
        };
        return ExitCode::from(serve_cmd::main(&args.config, args.check, format, cli.json));
    }
    // Parsed before any thread exists, so the signal mask set here is every thread's.
    cli::handle_signals();
    let progress: Box<dyn Progress> = if !cli.quiet && !cli.json && std::io::stderr().is_terminal() {
        Box::new(cli::BarProgress {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(litevault::NoProgress)
    };
    match cli::run(&cli, progress.as_ref()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = err.class().exit_code();
            if cli.json {
                cli::out(&cli::json(&litevault::error::ErrorReport::from(&err)));
            }
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}
