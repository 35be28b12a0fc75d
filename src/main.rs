//! The `litevault` command: everything is in the library's [`litevault::cli`] (the same code
//! runs as the Python wheel's command).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(litevault::cli::main(std::env::args_os()))
}
