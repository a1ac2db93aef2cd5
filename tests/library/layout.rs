//! The house rules of `src/`, checked on the tree as it is: every layer in
//! a folder of its own, one module style, no file too long to read, no two
//! layers that import each other (directly or round a cycle), and the map
//! in `src/lib.rs` naming every layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 600;
/// The longest `main.rs` may be: it parses, dispatches and prints an error.
const MAX_MAIN_LINES: usize = 150;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers `lib.rs` declares (`pub mod x;`).
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The text with `//` comments removed (doc comments name other layers in
/// links and prose; only code imports).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://") is rare in
            // paths; cutting there only loses text after it.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every layer a file's code names as `crate::layer`, including inside
/// `use crate::{a, b::c}` groups.
fn named_layers(code: &str, layers: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if layers.contains(&name) {
                    found.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if layers.contains(&name) {
            found.insert(name);
        }
    }
    found
}

/// The layer a file under `src/` belongs to.
fn layer_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_string();
    parts.next()?;
    Some(first)
}

#[test]
fn only_lib_and_main_stand_loose_in_src() {
    let mut loose: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    loose.sort();
    assert_eq!(loose, ["lib.rs", "main.rs"], "files loose in src/");
}

#[test]
fn one_module_style_folders_with_mod_rs() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in &files {
        let beside = file.with_extension("");
        assert!(
            !beside.is_dir(),
            "{} stands beside the folder {}: a layer with submodules is a folder with mod.rs",
            file.display(),
            beside.display()
        );
    }
}

#[test]
fn no_source_file_is_too_long() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in &files {
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        let limit = match file.file_name().and_then(|n| n.to_str()) {
            Some("main.rs") if file.parent() == Some(&src()) => MAX_MAIN_LINES,
            _ => MAX_LINES,
        };
        if lines > limit {
            long.push(format!(
                "{} has {lines} lines (limit {limit})",
                file.display()
            ));
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}

/// Which layers import which, from the code.
fn layer_graph() -> BTreeMap<String, BTreeSet<String>> {
    let layers: BTreeSet<String> = layers().into_iter().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = layers
        .iter()
        .map(|l| (l.clone(), BTreeSet::new()))
        .collect();
    for file in files {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        if !layers.contains(&layer) {
            continue; // the binary's own folder
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for other in named_layers(&code, &layers) {
            if other != layer {
                graph.get_mut(&layer).unwrap().insert(other);
            }
        }
    }
    graph
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &graph[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_two_layers_import_each_other() {
    let graph = layer_graph();
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|layer| cycle_from(&graph, layer))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between layers: {cycles:#?}"
    );
}

#[test]
fn the_cycle_check_sees_a_planted_cycle() {
    let mut graph = layer_graph();
    graph.get_mut("keys").unwrap().insert("node".to_string());
    assert!(cycle_from(&graph, "keys").is_some());
}

#[test]
fn the_map_in_lib_rs_names_every_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim_start)
        .collect();
    for layer in layers() {
        let named = map
            .iter()
            .any(|l| l.starts_with(&format!("{layer}/")) || l.starts_with(&format!("{layer} ")));
        assert!(named, "src/lib.rs's map does not name the layer `{layer}`");
        assert!(
            src().join(&layer).join("mod.rs").is_file(),
            "the layer `{layer}` is not a folder with mod.rs"
        );
    }
}

/// The layers in the order the map in `lib.rs` lists them.
fn map_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layers: BTreeSet<String> = layers().into_iter().collect();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .filter_map(|l| l.trim_start().split('/').next())
        .filter(|name| layers.contains(*name))
        .map(str::to_string)
        .fold(Vec::new(), |mut seen, name| {
            if !seen.contains(&name) {
                seen.push(name);
            }
            seen
        })
}

#[test]
fn the_map_lists_the_layers_from_the_ground_up() {
    let order = map_order();
    assert_eq!(order.len(), layers().len(), "the map's layers: {order:?}");
    let rank = |layer: &str| order.iter().position(|l| l == layer);
    let mut upward = Vec::new();
    for (layer, imports) in layer_graph() {
        for other in imports {
            if rank(&other) > rank(&layer) {
                upward.push(format!("{layer} imports {other}, listed after it"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "src/lib.rs's map must list a layer after every layer it imports: {upward:#?}"
    );
}

#[test]
fn every_source_path_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut missing = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("src/") {
            rest = &rest[i..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'))
                .collect();
            rest = &rest[path.len().max(1)..];
            let path = path.trim_end_matches('.');
            if path.ends_with(".rs") && !root.join(path).is_file() {
                missing.push(format!("{}: {path}", doc.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs name files that do not exist: {missing:#?}"
    );
}
