//! What several commands accept: `--node NODE [--cookie FILE]` (which
//! running node a client command talks to, see `veil::client::endpoint`),
//! `--client`, and the parsers of sizes, fractions and ranges.

use std::path::PathBuf;

/// Which running node a client command talks to: `--node NODE [--cookie FILE]`.
#[derive(clap::Args, Clone)]
pub struct NodeArg {
    /// The node: its directory (default: the current directory), its
    /// client socket, or the HOST:PORT of a TCP client API (with --cookie).
    #[arg(long, value_name = "NODE", default_value = ".")]
    pub node: String,
    /// With --node HOST:PORT: the node's cookie file (NODE_DIR/client.cookie).
    #[arg(long, value_name = "FILE")]
    pub cookie: Option<PathBuf>,
}

impl NodeArg {
    /// The endpoint `--node` names.
    pub fn endpoint(&self) -> Result<veil::client::Endpoint, veil::client::EndpointError> {
        veil::client::Endpoint::parse(&self.node, self.cookie.as_deref())
    }
}

/// `add-peer` / `remove-peer --client NODE [--cookie FILE]`.
#[derive(clap::Args, Clone)]
pub struct ClientArg {
    /// Act on this running node: its client socket, or HOST:PORT with
    /// --cookie (a node directory is the NODE_DIR positional).
    #[arg(long, value_name = "NODE")]
    pub client: Option<String>,
    /// With --client HOST:PORT: the node's cookie file.
    #[arg(long, value_name = "FILE")]
    pub cookie: Option<PathBuf>,
}

impl ClientArg {
    /// The endpoint `--client` names, if given.
    pub fn endpoint(&self) -> Result<Option<veil::client::Endpoint>, veil::client::EndpointError> {
        let parse = |c: &String| veil::client::Endpoint::parse(c, self.cookie.as_deref());
        self.client.as_ref().map(parse).transpose()
    }
}

/// `veil get --max-size`: a byte count, at most the format's 1 TiB.
pub fn parse_max_size(text: &str) -> Result<u64, String> {
    let bytes = veil::store::parse_size(text).map_err(|e| e.to_string())?;
    if bytes > veil::content::MAX_FILE_LEN {
        return Err(format!(
            "at most {} bytes (1 TiB)",
            veil::content::MAX_FILE_LEN
        ));
    }
    Ok(bytes)
}

/// A workload file size: at least one byte, at most what fits in memory.
pub fn parse_file_size(text: &str) -> Result<usize, String> {
    let bytes = veil::store::parse_size(text).map_err(|e| e.to_string())?;
    match usize::try_from(bytes) {
        Ok(0) => Err("the file size must be at least 1 byte".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{bytes} bytes is too large")),
    }
}

/// A fraction in [0, 1].
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a fraction in [0, 1]")),
    }
}

/// `MIN,MAX` milliseconds, MIN <= MAX.
pub fn parse_delay_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?} is not MIN,MAX in milliseconds (e.g. 20,250)");
    let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi.trim().parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(format!("MIN {lo} is above MAX {hi}"));
    }
    Ok((lo, hi))
}
