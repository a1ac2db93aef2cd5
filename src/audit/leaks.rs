//! The leak check: no workload file's plaintext, URI or decryption key in
//! any file under a node's directory.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::load::{io_err, Run};
use super::report::LeakCheck;
use super::AuditError;
use crate::formats::testnet::WorkloadInfo;

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

/// Which needles occur in `hay`: one pass of an Aho-Corasick automaton
/// over all of them, overlapping matches included (a key is also the tail
/// of its URI). An empty needle occurs nowhere.
fn find_needles(hay: &[u8], needles: &Searcher) -> BTreeSet<usize> {
    needles
        .automaton
        .find_overlapping_iter(hay)
        .map(|m| needles.index[m.pattern().as_usize()])
        .collect()
}

/// The non-empty needles compiled into one automaton; `index` maps each
/// pattern back to its needle.
struct Searcher {
    automaton: AhoCorasick,
    index: Vec<usize>,
}

impl Searcher {
    /// Fails only past the automaton's size limits, far beyond a
    /// workload's few hundred needles.
    fn new(needles: &[Needle]) -> Result<Searcher, aho_corasick::BuildError> {
        let index: Vec<usize> = (0..needles.len())
            .filter(|i| !needles[*i].bytes.is_empty())
            .collect();
        // A DFA: node files are mostly ciphertext, where no prefilter
        // skips ahead, and a DFA takes one table lookup per byte.
        let automaton = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .build(index.iter().map(|i| &needles[*i].bytes))?;
        Ok(Searcher { automaton, index })
    }
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
    let searcher = match Searcher::new(&needles) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("leak check not run: {e}"));
            check.checked = false;
            return Ok(check);
        }
    };

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
            for i in find_needles(&hay, &searcher) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn needle(bytes: &[u8]) -> Needle {
        Needle {
            bytes: bytes.to_vec(),
            what: String::new(),
        }
    }

    #[test]
    fn finds_every_needle_that_occurs_overlapping_ones_included() {
        // A key is the tail of its URI; a short needle; one that is absent;
        // an empty one (occurs nowhere).
        let needles = [
            needle(b"CHK@abcdefgh,KEY123"),
            needle(b"KEY123"),
            needle(b"ab"),
            needle(b"missing needle"),
            needle(b""),
        ];
        let searcher = Searcher::new(&needles).unwrap();
        let hay = b"log: CHK@abcdefgh,KEY123 end";
        let found: Vec<usize> = find_needles(hay, &searcher).into_iter().collect();
        assert_eq!(found, vec![0, 1, 2]);
        assert!(find_needles(b"", &searcher).is_empty());
    }
}
