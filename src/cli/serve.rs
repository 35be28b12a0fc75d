//! `litevault serve`: its arguments (`main` hands them to `serve_cmd`, which starts the
//! daemon before any other thread exists).

use super::common::*;

// The arguments of `litevault serve` (its help text is on `Command::Serve`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Check the configuration, print what would run, and exit (0 when valid).
    #[arg(long)]
    pub(crate) check: bool,
    /// How log lines are written to stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormatArg,
}
