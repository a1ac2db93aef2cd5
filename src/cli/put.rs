//! `veil put`: a file streamed, a directory as a freesite (a document of
//! paths), and either as an edition of a site (`--usk`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use veil::client::transfer::PutProgress;
use veil::client::{usk, Endpoint};
use veil::content::SplitOptions;
use veil::keys::{Chk, Edition, UskUri};

use super::args::NodeArg;
use super::editions::Editions;
use super::output::{block_progress, progress};

#[derive(clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// The file to insert, or `-` for stdin (read as a stream; stdin is
    /// first copied to an unlinked temporary file, as the layout needs the
    /// length before the first segment). A directory is inserted as a
    /// freesite, as with --dir.
    #[arg(required_unless_present = "dir")]
    pub file: Option<PathBuf>,
    /// Insert a directory as a freesite: each file its own CHK and MIME
    /// type, listed by path in a directory document whose URI is printed.
    #[arg(long, conflicts_with = "file")]
    pub dir: Option<PathBuf>,
    /// Blocks inserted at once (at most 1024). In the tunnel mode more in
    /// flight means fewer rounds, each after the reaction delay; without
    /// tunnels more than 128 overload the first hops.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Reed-Solomon check blocks per 100 data blocks (0..=300; 100 = 128
    /// check blocks for each segment of 128 data blocks).
    #[arg(long, default_value_t = veil::content::DEFAULT_REDUNDANCY,
          value_parser = clap::value_parser!(u16).range(0..=veil::content::MAX_REDUNDANCY as i64))]
    pub redundancy: u16,
    /// Insert the file as an edition of a site: the insert URI from `veil
    /// keygen` followed by the site's name, SSK@<private>,<crypto key>/<site>.
    /// Without --edition, the next edition after the latest found.
    #[arg(long, value_name = "INSERT_URI")]
    pub usk: Option<String>,
    /// With --usk: insert this edition instead of the next one.
    #[arg(long, requires = "usk")]
    pub edition: Option<u64>,
    /// Where the newest site editions seen are remembered, per node
    /// (default: $XDG_CACHE_HOME or ~/.cache, veil/usk-editions.json).
    #[arg(long)]
    pub usk_cache: Option<PathBuf>,
}

pub async fn run(a: PutArgs) -> Result<ExitCode> {
    let node = a.node.endpoint()?;
    let site = a.usk.as_deref().map(usk::parse_insert).transpose()?;
    let split = SplitOptions {
        redundancy: a.redundancy,
        ..Default::default()
    };
    let uri = match (a.dir.as_deref(), a.file.as_deref()) {
        (Some(dir), _) => put_dir(&node, dir, a.concurrency, &split).await?,
        // A directory given as FILE is inserted as --dir inserts it.
        (None, Some(file)) if file.is_dir() => put_dir(&node, file, a.concurrency, &split).await?,
        (None, Some(file)) => put_file(&node, file, a.concurrency, &split).await?,
        (None, None) => bail!("give a FILE or --dir DIR"),
    };
    let Some(site) = site else {
        println!("{}", uri.to_uri());
        return Ok(ExitCode::SUCCESS);
    };
    let mut editions = Editions::open(a.usk_cache, &node);
    let public = UskUri::of_insert(&site, Edition::Latest)?;
    let edition = match a.edition {
        Some(n) => n,
        None => usk::next_edition(&node, &site, editions.known(&public))
            .await
            .context("searching for the latest edition")?,
    };
    let usk = usk::publish(&node, &site, edition, &uri)
        .await
        .with_context(|| format!("inserting edition {edition}"))?;
    editions.remember(&usk, edition);
    println!("{usk}");
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
    let bar = block_progress("inserting");
    let started = std::time::Instant::now();
    let shown = bar.clone();
    let last = std::sync::Arc::new(std::sync::Mutex::new(PutProgress::default()));
    let seen = last.clone();
    let input = std::io::BufReader::with_capacity(1 << 16, input);
    let put = veil::client::transfer::put_stream(node, input, len, concurrency, split, move |p| {
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
    let p = last.lock().map(|p| *p).unwrap_or_default();
    let retried = match p.blocks_retried {
        0 => String::new(),
        n => format!(", {n} retried"),
    };
    eprintln!(
        "inserted {name} ({len} bytes, {blocks} blocks{retried}, {}% redundancy) in {:.1?}",
        split.redundancy,
        started.elapsed()
    );
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
        veil::client::site::put_dir(node, dir, concurrency, split, move |done, total, _| {
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
