//! Fetching into a file that survives interruption.
//!
//! `veil get URI -o FILE` writes into `FILE.veil-part` and records, in
//! `FILE.veil-part.json`, the root's routing key and how many segments are
//! written (after each segment is flushed). Only when the whole file has
//! arrived and its SHA-256 matches is the part file synced and renamed to
//! `FILE`, and the record removed.
//!
//! Run again after an interruption, the fetch opens the root and the
//! manifests (fetched again: they are small), then reads the recorded
//! segments back from the part file, hashing each data block and comparing
//! it with the decryption key of the CHK its manifest lists (the key is
//! the plaintext's hash: [`crate::keys::Chk::made_from`]). Every segment that
//! verifies is kept, and the fetch goes on after the last of them; the rest
//! of the part file is cut off. A record for another file, or none, starts
//! from nothing. So the record is only a hint: a torn write or a changed
//! part file costs a re-fetch, never a wrong file.

use std::future::Future;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, BufReader};

use super::fetch::{open, FetchError, FetchOptions, Progress};
use super::ContentError;
use crate::keys::{Block, Chk, RoutingKey};

/// `FILE.veil-part`: where `FILE` is written until it is whole.
pub fn part_path(path: &Path) -> PathBuf {
    suffixed(path, ".veil-part")
}

/// `FILE.veil-part.json`: how far `FILE.veil-part` got.
pub fn record_path(path: &Path) -> PathBuf {
    suffixed(path, ".veil-part.json")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The record beside a part file.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Record {
    /// The root's routing key (base64): which file the part belongs to.
    root: String,
    /// Whole segments written.
    segments: u64,
    /// Bytes those segments hold.
    bytes: u64,
}

/// The record's size bound: it is a few dozen bytes.
const RECORD_MAX: u64 = 4096;

fn read_record(path: &Path) -> Option<Record> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > RECORD_MAX {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Write the record atomically (a temporary file, then rename).
fn write_record(path: &Path, record: &Record) -> Result<(), ContentError> {
    let tmp = suffixed(path, ".tmp");
    let text = serde_json::to_vec(record).map_err(|e| ContentError::Write(e.into()))?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// What [`fetch_to_path`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The file's length.
    pub len: u64,
    /// Segments taken from the part file (verified, not fetched).
    pub segments_resumed: u64,
    /// The bytes they hold.
    pub bytes_resumed: u64,
}

/// Fetch the file named by `uri` into `path`, through `path`'s part file,
/// resuming from it when an earlier fetch of the same file left one (see
/// the module docs). On error the part file and its record stay for the
/// next run, unless what was fetched is bad data (then both are removed).
pub async fn fetch_to_path<F, Fut, E>(
    uri: &Chk,
    opts: &FetchOptions,
    fetch_block: F,
    path: &Path,
    mut on_progress: impl FnMut(Progress),
) -> Result<Fetched, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let (part, record) = (part_path(path), record_path(path));
    let result = fetch_part(uri, opts, fetch_block, &part, &record, &mut on_progress).await;
    match result {
        Ok(fetched) => {
            std::fs::rename(&part, path)?;
            let _ = std::fs::remove_file(&record);
            Ok(fetched)
        }
        Err(e) => {
            if e.is_bad_data() {
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(&record);
            }
            Err(e)
        }
    }
}

async fn fetch_part<F, Fut, E>(
    uri: &Chk,
    opts: &FetchOptions,
    fetch_block: F,
    part: &Path,
    record: &Path,
    on_progress: &mut impl FnMut(Progress),
) -> Result<Fetched, ContentError>
where
    F: Fn(RoutingKey) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Block, E>> + Send + 'static,
    E: Into<FetchError> + Send + 'static,
{
    let mut opened = open(uri, opts, fetch_block, on_progress).await?;
    let root = uri.routing.to_base64();
    let saved = read_record(record).filter(|r| r.root == root);
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(saved.is_none())
        .open(part)
        .await?;
    let mut kept = 0;
    if let Some(saved) = &saved {
        let mut reader = BufReader::with_capacity(1 << 16, &mut file);
        kept = opened.verify_prefix(&mut reader, saved.segments).await?;
    }
    let resumed = opened.progress();
    on_progress(resumed);
    // Whatever follows the verified segments is written again.
    file.set_len(kept).await?;
    file.seek(std::io::SeekFrom::Start(kept)).await?;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 16, &mut file);
    let len = opened
        .write_rest(&mut writer, on_progress, |segments, bytes| {
            let r = Record {
                root: root.clone(),
                segments,
                bytes,
            };
            write_record(record, &r)
        })
        .await?;
    drop(writer);
    file.sync_all().await?;
    Ok(Fetched {
        len,
        segments_resumed: resumed.segments_resumed,
        bytes_resumed: kept,
    })
}
