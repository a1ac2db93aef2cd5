//! `veil update INSERT_URI PATH`: the next edition of a site, as `veil put
//! --usk INSERT_URI PATH` without `--edition` (`--dir` when PATH is a
//! directory).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::args::NodeArg;
use super::put::PutArgs;

#[derive(clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    node: NodeArg,
    /// The site's insert URI, SSK@<private>,<crypto key>/<site>.
    uri: String,
    /// The new edition's content: a file, or a directory (a freesite).
    #[arg(required_unless_present = "dir")]
    path: Option<PathBuf>,
    /// The new edition's content is this directory (as `veil put --dir`).
    #[arg(long, conflicts_with = "path")]
    dir: Option<PathBuf>,
    /// As `veil put --usk-cache`.
    #[arg(long)]
    usk_cache: Option<PathBuf>,
}

pub async fn run(a: UpdateArgs) -> Result<ExitCode> {
    let (file, dir) = match (a.path, a.dir) {
        (Some(p), None) if p.is_dir() => (None, Some(p)),
        (path, dir) => (path, dir),
    };
    super::put::run(PutArgs {
        node: a.node,
        file,
        dir,
        concurrency: 256,
        redundancy: veil::content::DEFAULT_REDUNDANCY,
        usk: Some(a.uri),
        edition: None,
        usk_cache: a.usk_cache,
    })
    .await
}
