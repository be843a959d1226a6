//! The code's shape, checked: no two top-level modules of `src` import each other, even
//! through others (the knot that made `Cache`, a path holder, pull in the backbone);
//! the path owners import only error, fsutil and events; the environment is read in few
//! places.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's code without its tests and comments (doc links name modules too).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level modules each module's code names as `crate::m`, `use crate::{m, ...}`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(src()).unwrap().flatten() {
        let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        let module = if p.is_dir() { name.clone() } else { name.trim_end_matches(".rs").to_string() };
        if module == "lib" || module == "bin" || (!p.is_dir() && !name.ends_with(".rs")) {
            continue;
        }
        let mut fs = vec![];
        if p.is_dir() {
            rust_files(&p, &mut fs);
        } else {
            fs.push(p);
        }
        files.insert(module, fs);
    }
    let mods: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (m, fs) in &files {
        let mut to = BTreeSet::new();
        for f in fs {
            let c = code(f);
            for (i, _) in c.match_indices("crate::") {
                let rest = &c[i + 7..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    // `crate::{a::X, b, c::{..}}`: the first segment of each item
                    Some(group) => group[..group.find('}').unwrap_or(group.len())]
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect(),
                    None => vec![rest.split(|ch: char| !(ch.is_alphanumeric() || ch == '_')).next().unwrap_or("")],
                };
                to.extend(names.into_iter().filter(|n| mods.contains(*n) && n != m).map(String::from));
            }
        }
        graph.insert(m.clone(), to);
    }
    graph
}

/// Every module reachable from `from`.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let (mut seen, mut todo) = (BTreeSet::new(), vec![from.to_string()]);
    while let Some(m) = todo.pop() {
        for n in graph.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    seen
}

#[test]
fn top_level_modules_import_each_other_one_way() {
    let graph = imports();
    assert!(graph["run"].contains("train") && graph["train"].contains("models"), "the scan sees imports: {graph:?}");
    let cycles: Vec<String> =
        graph.keys().filter(|m| reach(&graph, m).contains(*m)).map(|m| format!("{m} -> {:?}", graph[m])).collect();
    assert!(cycles.is_empty(), "modules that reach themselves:\n{}", cycles.join("\n"));
    for owner in ["cache", "rundir"] {
        let extra: Vec<_> =
            graph[owner].iter().filter(|m| !["error", "fsutil", "events"].contains(&m.as_str())).collect();
        assert!(extra.is_empty(), "{owner} imports {extra:?}");
    }
    assert!(!graph["data"].contains("train"), "data imports train");
}

#[test]
fn the_environment_is_read_in_few_library_files() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let readers: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with(src().join("bin")) && !f.starts_with(src().join("bench")))
        .filter(|f| code(f).contains("env::var"))
        .map(|f| f.strip_prefix(src()).unwrap().display().to_string())
        .collect();
    assert!(readers.len() <= 3, "env::var in {readers:?}: hand the value down from `settings`");
}
