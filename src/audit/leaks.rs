//! The leak check: no workload file's plaintext, URI or decryption key in
//! any file under a node's directory.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::load::{io_err, Run};
use super::report::LeakCheck;
use super::AuditError;
use crate::testnet::WorkloadInfo;

/// How many examples the check keeps.
const MAX_EXAMPLES: usize = 5;
/// Length of the plaintext windows looked for in node files.
const WINDOW: usize = 32;
/// Node files larger than this are not scanned for leaks (and a warning says so).
const MAX_SCAN_BYTES: u64 = 512 * 1024 * 1024;

struct Needle {
    bytes: Vec<u8>,
    /// "the decryption key of workload/f0.bin", "plaintext of ... (start window, hex)".
    what: String,
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn plaintext_needles(label: &str, data: &[u8], out: &mut Vec<Needle>) {
    let windows: Vec<(&str, &[u8])> = if data.len() <= WINDOW {
        vec![("whole file", data)]
    } else {
        let mid = (data.len() - WINDOW) / 2;
        let end = data.len() - WINDOW;
        vec![
            ("start", &data[..WINDOW]),
            ("middle", &data[mid..mid + WINDOW]),
            ("end", &data[end..]),
        ]
    };
    for (pos, w) in windows {
        let mut push = |enc: &str, bytes: Vec<u8>| {
            out.push(Needle {
                bytes,
                what: format!("plaintext of {label} ({pos} window, {enc})"),
            })
        };
        push("raw bytes", w.to_vec());
        push("hex", hex(w, false).into_bytes());
        push("HEX", hex(w, true).into_bytes());
        // Base64 depends on alignment: encode whole 3-byte groups from each
        // of three offsets, so a window shows whatever the text's alignment.
        for k in 0..3.min(w.len()) {
            let s = &w[k..];
            let l = s.len() / 3 * 3;
            if l < 6 {
                continue;
            }
            push("base64", STANDARD_NO_PAD.encode(&s[..l]).into_bytes());
            push("base64url", URL_SAFE_NO_PAD.encode(&s[..l]).into_bytes());
        }
    }
}

/// Does `hay` contain `needle`? Plain search for short needles.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Which needles occur in `hay`: one pass, looking up 8-byte prefixes.
fn find_needles(hay: &[u8], needles: &[Needle]) -> BTreeSet<usize> {
    const P: usize = 8;
    let mut by_prefix: HashMap<[u8; P], Vec<usize>> = HashMap::new();
    let mut found = BTreeSet::new();
    for (i, n) in needles.iter().enumerate() {
        match n.bytes.get(..P).and_then(|p| <[u8; P]>::try_from(p).ok()) {
            Some(p) => by_prefix.entry(p).or_default().push(i),
            None => {
                if contains(hay, &n.bytes) {
                    found.insert(i);
                }
            }
        }
    }
    if by_prefix.is_empty() {
        return found;
    }
    for start in 0..hay.len().saturating_sub(P - 1) {
        let Ok(p) = <[u8; P]>::try_from(&hay[start..start + P]) else {
            continue;
        };
        if let Some(candidates) = by_prefix.get(&p) {
            for &i in candidates {
                if hay[start..].starts_with(&needles[i].bytes) {
                    found.insert(i);
                }
            }
        }
    }
    found
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AuditError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(io_err(dir))?.path());
    }
    paths.sort();
    for path in paths {
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            files_under(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

pub(super) fn check_leaks(
    dir: &Path,
    run: &Run,
    workload: &WorkloadInfo,
    warnings: &mut Vec<String>,
) -> Result<LeakCheck, AuditError> {
    let mut check = LeakCheck {
        checked: true,
        workload_files: workload.files.len(),
        ..LeakCheck::default()
    };
    let mut needles = Vec::new();
    let mut workload_paths = HashSet::new();
    for entry in &workload.files {
        let label = entry.path.as_str();
        let uri = entry.uri.trim();
        if !uri.is_empty() {
            needles.push(Needle {
                bytes: uri.as_bytes().to_vec(),
                what: format!("the URI of {label}"),
            });
        }
        match uri.rsplit_once(',') {
            Some((_, key)) if !key.is_empty() => {
                needles.push(Needle {
                    bytes: key.as_bytes().to_vec(),
                    what: format!("the decryption key of {label}"),
                });
                if let Ok(raw) = URL_SAFE_NO_PAD.decode(key) {
                    for (enc, bytes) in [
                        ("hex", hex(&raw, false).into_bytes()),
                        ("HEX", hex(&raw, true).into_bytes()),
                        ("base64", STANDARD_NO_PAD.encode(&raw).into_bytes()),
                        ("raw bytes", raw.clone()),
                    ] {
                        needles.push(Needle {
                            bytes,
                            what: format!("the decryption key of {label} ({enc})"),
                        });
                    }
                }
            }
            _ => warnings.push(format!(
                "workload.json: URI of {label} has no decryption key part; key not checked"
            )),
        }
        let path = dir.join(&entry.path);
        match fs::read(&path) {
            Ok(data) if data.len() >= 4 => {
                plaintext_needles(label, &data, &mut needles);
                if let Ok(p) = fs::canonicalize(&path) {
                    workload_paths.insert(p);
                }
            }
            Ok(_) => warnings.push(format!(
                "workload file {label} is under 4 bytes; its plaintext is not checked"
            )),
            Err(e) => warnings.push(format!(
                "workload file {}: {e}; its plaintext is not checked",
                path.display()
            )),
        }
    }
    // Identical needles (e.g. the same window twice) would be reported twice.
    let mut seen = HashSet::new();
    needles.retain(|n| seen.insert(n.bytes.clone()));

    for node in &run.nodes {
        let mut files = Vec::new();
        files_under(&dir.join(&node.name), &mut files)?;
        for file in files {
            if fs::canonicalize(&file).is_ok_and(|p| workload_paths.contains(&p)) {
                continue;
            }
            let len = fs::metadata(&file).map_err(io_err(&file))?.len();
            if len > MAX_SCAN_BYTES {
                warnings.push(format!("{}: too large to scan for leaks", file.display()));
                continue;
            }
            let hay = fs::read(&file).map_err(io_err(&file))?;
            check.files_scanned += 1;
            let rel = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            for i in find_needles(&hay, &needles) {
                check.count += 1;
                if check.examples.len() < MAX_EXAMPLES {
                    check
                        .examples
                        .push(format!("{}: {rel} contains {}", node.name, needles[i].what));
                }
            }
        }
    }
    Ok(check)
}
