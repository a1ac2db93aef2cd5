//! The `veil` binary: parse the command line, run the command ([`cli`]),
//! print an error on one line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format, args.command.default_log_level());
    if args.command.moves_files() {
        cli::few_malloc_arenas();
    }
    let code = match cli::run(args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {}", cli::one_line(&e));
            ExitCode::from(2)
        }
    };
    if std::env::var_os(cli::PEAK_RSS_ENV).is_some() {
        cli::report_own_peak_rss();
    }
    code
}
