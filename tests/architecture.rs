//! The house rules of `src/`, read from the files themselves (no server): dependencies
//! point one way (lib → command → config → store → ffi → core → error), no two files
//! import each other even through others, `unsafe` and raw pointers stay in `src/ffi/`,
//! and no file grows past 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// The layers, highest first: a file may import its own layer and those after it.
const LAYERS: [&str; 7] = ["lib", "command", "config", "store", "ffi", "core", "error"];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/core/index/load.rs` is `[core, index, load]`,
/// `src/core/index/mod.rs` is `[core, index]`, `src/lib.rs` is `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file of the longest prefix of `path` that is a module.
fn file_of(path: &[String]) -> Option<PathBuf> {
    (0..=path.len()).rev().find_map(|len| {
        let prefix = &path[..len];
        if prefix.is_empty() {
            return Some(src().join("lib.rs"));
        }
        let base = prefix.iter().fold(src(), |dir, part| dir.join(part));
        let file = base.with_extension("rs");
        if file.is_file() {
            return Some(file);
        }
        let module = base.join("mod.rs");
        module.is_file().then_some(module)
    })
}

fn layer(module: &[String]) -> usize {
    let top = module.first().map_or("lib", String::as_str);
    LAYERS.iter().position(|layer| *layer == top).unwrap()
}

/// The code of a file without comments and without its inline test module.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names through `crate::` or `super::`, absolute, with `use` groups
/// (`use super::{a, b::c}`) expanded.
fn named_paths(file: &Path, code: &str) -> Vec<Vec<String>> {
    let module = module_of(file);
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let start = match (rest.find("crate::"), rest.find("super::")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        let begin = at + start;
        // Part of a longer word (`$crate::`, `my_super::`): not a path of ours.
        if begin > 0
            && (bytes[begin - 1].is_ascii_alphanumeric() || matches!(bytes[begin - 1], b'_' | b'$'))
        {
            at = begin + 7;
            continue;
        }
        let (mut base, mut cursor) = if code[begin..].starts_with("crate::") {
            (Vec::new(), begin + 7)
        } else {
            let mut base = module.clone();
            base.pop();
            (base, begin + 7)
        };
        while code[cursor..].starts_with("super::") {
            base.pop();
            cursor += 7;
        }
        let mut segments = base.clone();
        loop {
            let word: String = code[cursor..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if word.is_empty() {
                break;
            }
            cursor += word.len();
            segments.push(word);
            if code[cursor..].starts_with("::") {
                cursor += 2;
                if code[cursor..].starts_with('{') {
                    let close = code[cursor..].find('}').map_or(code.len(), |c| cursor + c);
                    for item in code[cursor + 1..close].split(',') {
                        let mut path = segments.clone();
                        path.extend(
                            item.trim()
                                .split("::")
                                .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                                .filter(|s| !s.is_empty() && s != "self" && s != "*"),
                        );
                        paths.push(path);
                    }
                    cursor = close;
                    segments.clear();
                    break;
                }
            } else {
                break;
            }
        }
        if !segments.is_empty() {
            paths.push(segments);
        }
        at = cursor.max(begin + 7);
    }
    paths
}

struct Crate {
    files: Vec<PathBuf>,
    /// File to the files it imports.
    imports: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

fn read_crate() -> Crate {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // Binaries under src/bin are crates of their own.
    files.retain(|file| !file.starts_with(src().join("bin")));
    files.sort();
    let mut imports = BTreeMap::new();
    for file in &files {
        let targets: BTreeSet<PathBuf> = named_paths(file, &code(file))
            .iter()
            .filter_map(|path| file_of(path))
            .filter(|target| target != file)
            .collect();
        imports.insert(file.clone(), targets);
    }
    Crate { files, imports }
}

fn name(file: &Path) -> String {
    file.strip_prefix(src().parent().unwrap())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn dependencies_point_one_way() {
    let krate = read_crate();
    let mut upward = Vec::new();
    for (file, targets) in &krate.imports {
        let from = layer(&module_of(file));
        for target in targets {
            let to = layer(&module_of(target));
            if from != 0 && to < from {
                upward.push(format!("{} imports {}", name(file), name(target)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a lower layer to a higher one:\n{}",
        upward.join("\n")
    );
    // The check sees the imports it should: the edge imports the core and the store.
    let meetings = src().join("command/meetings.rs");
    assert!(krate.imports[&meetings].contains(&src().join("core/query/mod.rs")));
    assert!(krate.imports[&meetings].contains(&src().join("store/keyspace.rs")));
}

#[test]
fn no_import_cycle_among_files() {
    let krate = read_crate();
    // Depth-first search; a file met again while still on the stack closes a cycle.
    fn visit(
        file: &PathBuf,
        imports: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(file) {
            return;
        }
        if let Some(at) = stack.iter().position(|f| f == file) {
            let cycle: Vec<String> = stack[at..].iter().chain([file]).map(|f| name(f)).collect();
            cycles.push(cycle.join(" -> "));
            return;
        }
        stack.push(file.clone());
        for target in imports.get(file).into_iter().flatten() {
            visit(target, imports, stack, done, cycles);
        }
        stack.pop();
        done.insert(file.clone());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for file in &krate.files {
        visit(
            file,
            &krate.imports,
            &mut Vec::new(),
            &mut done,
            &mut cycles,
        );
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn unsafe_and_raw_pointers_only_in_the_ffi_room() {
    let krate = read_crate();
    let ffi = src().join("ffi");
    let mut outside = Vec::new();
    for file in krate.files.iter().filter(|file| !file.starts_with(&ffi)) {
        for (number, line) in code(file).lines().enumerate() {
            let raw_api = line.contains("raw::") && !line.contains("std::os::raw::");
            let unsafe_word = line
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|word| word == "unsafe");
            if raw_api || unsafe_word {
                outside.push(format!("{}:{}: {}", name(file), number + 1, line.trim()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "unsafe or raw API outside src/ffi:\n{}",
        outside.join("\n")
    );
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "lib.rs denies unsafe code"
    );
}

#[test]
fn no_file_over_600_lines() {
    let krate = read_crate();
    let long: Vec<String> = krate
        .files
        .iter()
        .map(|file| (file, fs::read_to_string(file).unwrap().lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(file, lines)| format!("{} ({lines} lines)", name(file)))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines: {}",
        long.join(", ")
    );
}
