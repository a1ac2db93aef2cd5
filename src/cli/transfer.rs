//! The arguments of `veil put`, `get`, `update` and `gateway`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::parse_max_size;
use crate::node_arg::NodeArg;

#[derive(clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// The file to insert, or `-` for stdin (read as a stream; stdin is
    /// first copied to an unlinked temporary file, as the layout needs the
    /// length before the first segment).
    #[arg(required_unless_present = "dir")]
    pub file: Option<PathBuf>,
    /// Insert a directory as a freesite: each file its own CHK and MIME
    /// type, listed by path in a directory document whose URI is printed.
    #[arg(long, conflicts_with = "file")]
    pub dir: Option<PathBuf>,
    /// Blocks inserted at once (128 fills a tunnel's window: in tunnel mode
    /// fewer in flight means more batches, each after its random delay).
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

#[derive(clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// The site's insert URI, SSK@<private>,<crypto key>/<site>.
    pub uri: String,
    /// The new edition's content: a file, or a directory (a freesite).
    #[arg(required_unless_present = "dir")]
    pub path: Option<PathBuf>,
    /// The new edition's content is this directory (as `veil put --dir`).
    #[arg(long, conflicts_with = "path")]
    pub dir: Option<PathBuf>,
    /// As `veil put --usk-cache`.
    #[arg(long)]
    pub usk_cache: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Where the gateway listens: a loopback address unless --public.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub listen: SocketAddr,
    /// Allow a non-loopback listen address and any Host header: anyone who
    /// reaches it can browse and insert through your node.
    #[arg(long)]
    pub public: bool,
    /// The largest file the gateway fetches or accepts for insertion.
    #[arg(long, default_value = "256MiB", value_parser = parse_max_size)]
    pub max_size: u64,
}

#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// A URI, optionally with a path into a directory: CHK@…/path/to/file,
    /// USK@…/site/-1/path/to/file (the newest edition found), SSK@…/name/path.
    pub uri: String,
    /// Output file, written as FILE.veil-part and renamed when whole; an
    /// interrupted get resumes from it. `-` or none: stream to stdout. For
    /// a directory: the folder to fetch its tree into (none: its listing).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Blocks fetched at once (128 fills a tunnel's window, four batches).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Refuse a file whose root declares more than this (e.g. 4GiB, 100MB),
    /// before fetching anything else.
    #[arg(long, default_value = "4GiB", value_parser = parse_max_size)]
    pub max_size: u64,
    /// Times a failed block request is asked again, with doubling waits.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// As `veil put --usk-cache`: where `USK@…/-1` starts its search.
    #[arg(long)]
    pub usk_cache: Option<PathBuf>,
}
