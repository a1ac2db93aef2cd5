//! `veil put` and `veil get`: files streamed, directories (freesites) as a
//! document of paths, and either as an edition of a site (`--usk`).

use std::io::Write;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use veil::client::Endpoint;
use veil::content::{FetchOptions, SplitOptions};
use veil::keys::Chk;
use veil::transfer::PutProgress;

use crate::cli::{progress, GetArgs, PutArgs};
use crate::usk_cmd;

pub async fn put(a: PutArgs) -> Result<ExitCode> {
    let node = a.node.endpoint()?;
    let site = a.usk.as_deref().map(usk_cmd::parse_insert).transpose()?;
    let split = SplitOptions {
        redundancy: a.redundancy,
        ..Default::default()
    };
    let uri = match (a.dir.as_deref(), a.file.as_deref()) {
        (Some(dir), _) => put_dir(&node, dir, a.concurrency, &split).await?,
        (None, Some(file)) => put_file(&node, file, a.concurrency, &split).await?,
        (None, None) => bail!("give a FILE or --dir DIR"),
    };
    if let Some(site) = site {
        let cache = usk_cmd::cache_path(a.usk_cache);
        let usk = usk_cmd::publish(&node, &site, a.edition, &uri, cache.as_deref()).await?;
        println!("{usk}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", uri.to_uri());
    Ok(ExitCode::SUCCESS)
}

/// One file (or `-`, stdin), streamed a segment at a time.
async fn put_file(
    node: &Endpoint,
    file: &Path,
    concurrency: usize,
    split: &SplitOptions,
) -> Result<Chk> {
    let stdin = file == Path::new("-");
    let name = if stdin {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    let (input, len) = if stdin {
        tokio::task::spawn_blocking(spool_stdin)
            .await
            .context("reading stdin")??
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading {name}"))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading {name}"))?
            .len();
        (f, len)
    };
    let bar = progress(0, "inserting", " blocks");
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "inserting [{bar:30}] {pos}/{len} blocks, {msg} {elapsed}",
    ) {
        bar.set_style(style);
    }
    let started = std::time::Instant::now();
    let shown = bar.clone();
    let last = std::sync::Arc::new(std::sync::Mutex::new(PutProgress::default()));
    let seen = last.clone();
    let input = std::io::BufReader::with_capacity(1 << 16, input);
    let put = veil::transfer::put_stream(node, input, len, concurrency, split, move |p| {
        shown.set_length(p.blocks_total);
        shown.set_position(p.blocks_done);
        shown.set_message(format!("segment {}/{}", p.segments_done, p.segments_total));
        if let Ok(mut seen) = seen.lock() {
            *seen = p;
        }
    })
    .await;
    let blocks = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    let uri = put.with_context(|| format!("inserting {name}"))?;
    eprintln!(
        "inserted {name} ({len} bytes, {blocks} blocks, {}% redundancy) in {:.1?}",
        split.redundancy,
        started.elapsed()
    );
    let p = last.lock().map(|p| *p).unwrap_or_default();
    if p.copies_failed > 0 {
        eprintln!(
            "warning: {} of {} copies of the top block could not be inserted; \
             the file is fetchable, but depends more on the nodes near its URI's key",
            p.copies_failed, p.copies_total
        );
    }
    Ok(uri)
}

/// Copy stdin to an unlinked temporary file: the layout balances segments
/// over the whole file, so its length must be known before the first
/// segment is cut. Memory stays bounded; the disk holds one copy.
fn spool_stdin() -> Result<(std::fs::File, u64)> {
    use std::io::Seek;
    let path = std::env::temp_dir().join(format!(
        "veil-put-stdin-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Gone from the directory at once; the open file lives until we close it.
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    let len = std::io::copy(&mut std::io::stdin().lock(), &mut f).context("reading stdin")?;
    f.rewind().context("rewinding the spooled stdin")?;
    Ok((f, len))
}

/// `--dir DIR`: every file, then the directory document; its URI.
async fn put_dir(
    node: &Endpoint,
    dir: &Path,
    concurrency: usize,
    split: &SplitOptions,
) -> Result<Chk> {
    let bar = progress(0, "inserting", " files");
    let started = std::time::Instant::now();
    let shown = bar.clone();
    let (uri, directory) =
        veil::freesite::put_dir(node, dir, concurrency, split, move |done, total, _| {
            shown.set_length(total as u64);
            shown.set_position(done as u64);
        })
        .await
        .with_context(|| format!("inserting {}", dir.display()))?;
    bar.finish_and_clear();
    let bytes: u64 = directory.entries().iter().map(|e| e.length).sum();
    eprintln!(
        "inserted {} ({} files, {bytes} bytes) in {:.1?}",
        dir.display(),
        directory.entries().len(),
        started.elapsed()
    );
    Ok(uri)
}

pub async fn get(a: GetArgs) -> Result<ExitCode> {
    use veil::freesite::{Address, Resolved};
    let opts = FetchOptions {
        max_len: a.max_size,
        retries: a.retries,
        ..veil::transfer::get_options(a.concurrency)
    };
    let node = a.node.endpoint()?;
    let addr: Address = a.uri.parse().context("invalid URI")?;
    let cache = usk_cmd::cache_path(a.usk_cache.clone());
    let chk = usk_cmd::resolve(&node, &addr.key, cache.as_deref()).await?;
    let path = addr.path;
    let resolved = veil::freesite::resolve_chk(&node, &chk, &path, &opts)
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
                veil::freesite::get_tree(&node, &dir, &folder, out, &opts, move |d, t, _| {
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

/// One file: into `output` through `FILE.veil-part` (resuming), or
/// streamed to stdout.
async fn get_file(
    node: &Endpoint,
    chk: &Chk,
    opts: &FetchOptions,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let bar = progress(0, "fetching", " blocks");
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "fetching [{bar:30}] {pos}/{len} blocks, {msg} {elapsed}",
    ) {
        bar.set_style(style);
    }
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
            let fetched = veil::transfer::get_to_path(node, chk, opts, path, on_progress).await;
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
                veil::transfer::get_to_writer(node, chk, opts, &mut out, on_progress).await;
            bar.finish_and_clear();
            fetched.context("fetching the file")?
        }
    };
    bar.finish_and_clear();
    eprintln!("fetched {len} bytes in {:.1?}", started.elapsed());
    Ok(ExitCode::SUCCESS)
}
