//! `litevault copy`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault copy` (its help text is on `Command::Copy`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The archives to copy.
    #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
    sources: Vec<PathBuf>,
    /// The destination location (a directory or s3://bucket/prefix).
    #[arg(required = true, value_name = "LOCATION")]
    dest: PathBuf,
}

/// Runs `litevault copy`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args { sources, dest } = args;
    let r = crate::ops::copy::copy(ctx, sources, dest, progress)?;
    if cli.json {
        out(&json(&r));
    } else if !cli.quiet {
        let mut s = String::new();
        for c in &r.copied {
            s += &format!(
                "copied {} -> {} ({}, checked)\n",
                c.source.display(),
                c.destination.display(),
                HumanBytes(c.size)
            );
        }
        out(&s);
    }
    Ok(exit::OK)
}
