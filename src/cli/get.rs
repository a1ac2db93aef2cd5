//! `veil get URI`: a file (into `-o FILE` through a resumable part file,
//! or streamed to stdout), a directory's listing or its whole tree; `SSK@`
//! and `USK@` keys resolved to the CHK they name first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use veil::client::site::{Address, Key, Resolved};
use veil::client::Endpoint;
use veil::content::FetchOptions;
use veil::keys::{Chk, Edition};

use super::args::{parse_max_size, NodeArg};
use super::editions::Editions;
use super::output::{block_progress, progress};

#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    node: NodeArg,
    /// A URI, optionally with a path into a directory: CHK@…/path/to/file,
    /// USK@…/site/-1/path/to/file (the newest edition found), SSK@…/name/path.
    uri: String,
    /// Output file, written as FILE.veil-part and renamed when whole; an
    /// interrupted get resumes from it. `-` or none: stream to stdout. For
    /// a directory: the folder to fetch its tree into (none: its listing).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Blocks fetched at once. In the tunnel mode the keys in flight leave
    /// together, so a file of up to this many blocks per level waits the
    /// reaction delay once per level (at most 1024).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Refuse a file whose root declares more than this (e.g. 4GiB, 100MB),
    /// before fetching anything else.
    #[arg(long, default_value = "4GiB", value_parser = parse_max_size)]
    max_size: u64,
    /// Times a failed block request is asked again, with doubling waits.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// As `veil put --usk-cache`: where `USK@…/-1` starts its search.
    #[arg(long)]
    usk_cache: Option<PathBuf>,
}

pub async fn run(a: GetArgs) -> Result<ExitCode> {
    let opts = FetchOptions {
        max_len: a.max_size,
        retries: a.retries,
        ..veil::client::transfer::get_options(a.concurrency)
    };
    let node = a.node.endpoint()?;
    let addr: Address = a.uri.parse().context("invalid URI")?;
    let chk = resolve(&node, &addr.key, a.usk_cache.clone()).await?;
    let path = addr.path;
    let resolved = veil::client::site::resolve_chk(&node, &chk, &path, &opts)
        .await
        .context("fetching")?;
    let to_stdout = a.output.as_deref().is_none_or(|p| p == Path::new("-"));
    let chk = match resolved {
        // Only a short file that looked like a directory comes back whole.
        Resolved::File {
            bytes: Some(data), ..
        } => {
            match a.output.as_deref() {
                Some(path) if !to_stdout => std::fs::write(path, &data)
                    .with_context(|| format!("writing {}", path.display()))?,
                _ => std::io::stdout()
                    .lock()
                    .write_all(&data)
                    .context("writing to stdout")?,
            }
            eprintln!("fetched {} bytes", data.len());
            return Ok(ExitCode::SUCCESS);
        }
        Resolved::File { uri, .. } => uri,
        Resolved::Folder { dir, folder } => {
            let Some(out) = a.output.as_deref().filter(|_| !to_stdout) else {
                for e in dir
                    .entries()
                    .iter()
                    .filter(|e| folder.is_empty() || e.path.starts_with(&format!("{folder}/")))
                {
                    println!("{}\t{}\t{}", e.path, e.mime, e.length);
                }
                return Ok(ExitCode::SUCCESS);
            };
            let bar = progress(0, "fetching", " files");
            let shown = bar.clone();
            let bytes =
                veil::client::site::get_tree(&node, &dir, &folder, out, &opts, move |d, t, _| {
                    shown.set_length(t as u64);
                    shown.set_position(d as u64);
                })
                .await
                .context("fetching the directory")?;
            bar.finish_and_clear();
            eprintln!("fetched {bytes} bytes into {}", out.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    get_file(
        &node,
        &chk,
        &opts,
        a.output.as_deref().filter(|_| !to_stdout),
    )
    .await
}

/// The CHK behind a `CHK@`, `SSK@…/name` or `USK@…/site/N` key (`N = -1`:
/// the newest edition found, probed from the one the cache remembers).
async fn resolve(node: &Endpoint, key: &Key, usk_cache: Option<PathBuf>) -> Result<Chk> {
    let Key::Usk(usk) = key else {
        return Ok(veil::client::site::target(node, key, None).await?.0);
    };
    let mut editions = Editions::open(usk_cache, node);
    let known = match usk.edition {
        Edition::Latest => editions.known(usk),
        Edition::Number(_) => None,
    };
    let (chk, edition) = veil::client::site::target(node, key, known)
        .await
        .context("looking up the edition")?;
    if let Some(edition) = edition {
        eprintln!("edition {edition}: {}", usk.at(Edition::Number(edition)));
        editions.remember(usk, edition);
    }
    Ok(chk)
}

/// One file: into `output` through `FILE.veil-part` (resuming), or
/// streamed to stdout.
async fn get_file(
    node: &Endpoint,
    chk: &Chk,
    opts: &FetchOptions,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let bar = block_progress("fetching");
    let shown = bar.clone();
    let on_progress = move |p: veil::content::Progress| {
        shown.set_length(p.blocks_known);
        shown.set_position(p.blocks_done);
        shown.set_message(format!(
            "segment {}/{}, {} retries",
            p.segments_done, p.segments_total, p.retries
        ));
    };
    let len = match output {
        Some(path) => {
            let part = veil::content::part_path(path);
            let fetched =
                veil::client::transfer::get_to_path(node, chk, opts, path, on_progress).await;
            bar.finish_and_clear();
            let fetched = match fetched {
                Ok(f) => f,
                Err(e) if part.exists() => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "fetching the file (the part fetched so far is kept in {}; run the same \
                         command again to resume)",
                        part.display()
                    )))
                }
                Err(e) => return Err(anyhow::Error::new(e).context("fetching the file")),
            };
            if fetched.segments_resumed > 0 {
                eprintln!(
                    "resumed: {} segments ({} bytes) were already in {} and verified",
                    fetched.segments_resumed,
                    fetched.bytes_resumed,
                    part.display()
                );
            }
            fetched.len
        }
        None => {
            // Streamed in order as segments arrive. Every block is checked
            // against its key before it is written; the whole-file hash
            // can only be checked at the end, and a failure then is an
            // error exit after the bytes went out.
            let mut out = tokio::io::stdout();
            let fetched =
                veil::client::transfer::get_to_writer(node, chk, opts, &mut out, on_progress).await;
            bar.finish_and_clear();
            fetched.context("fetching the file")?
        }
    };
    bar.finish_and_clear();
    eprintln!("fetched {len} bytes in {:.1?}", started.elapsed());
    Ok(ExitCode::SUCCESS)
}
