//! What the binary shows on the terminal: logging, progress bars, one-line
//! errors, reports as text or JSON, exit statuses.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use veil::testnet::run;

/// Log format on stderr.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (typed errors often show their source already).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}}{unit} {{elapsed}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// A block progress bar with a message (`inserting`, `fetching`).
pub fn block_progress(what: &str) -> indicatif::ProgressBar {
    let bar = progress(0, what, " blocks");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} blocks, {{msg}} {{elapsed}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Testnet progress on stderr: a bar while links come up, then lines.
pub fn progress_printer() -> run::ProgressFn {
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Arc::new(move |p| {
        let mut bar = bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match p {
            run::Progress::Links { up, total } => bar
                .get_or_insert_with(|| progress(total as u64, "links up", ""))
                .set_position(up as u64),
            run::Progress::Note(line) | run::Progress::Step(line) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let indent = if matches!(p, run::Progress::Step(_)) {
                    "  "
                } else {
                    ""
                };
                eprintln!("{indent}{line}");
            }
        }
    })
}

/// Print a report as JSON or as text.
pub fn show(json: bool, json_text: String, text: String) {
    if json {
        println!("{json_text}");
    } else {
        print!("{text}");
    }
}

/// Success, or the failure status (1) of a report that found problems.
pub fn exit_code(ok: bool) -> ExitCode {
    ExitCode::from(u8::from(!ok))
}
