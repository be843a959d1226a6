//! The notebooks are generated from `examples/tutorial_*.rs` (which cargo compiles), and
//! the book includes the same files by anchor: these tests fail when either drifts.
//! `TLAB_BLESS=1 cargo test --test testsuite notebooks::` rewrites the notebooks.

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// Said at the top of every notebook: the next cell's wait depends on how it was opened.
const OPEN_WITH: &str = "> Open the notebooks with `scripts/notebooks.sh`: it compiles transfer-lab for the Rust \
kernel first. A kernel then loads it as it starts (about half a minute on a 2-core machine, \
while you read this), and the cells answer in a second or two. Opened any other way, the \
first kernel start compiles it (several minutes the first time).";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/tutorial_3_features.rs` -> `notebooks/3-features.ipynb`.
fn notebook_path(example: &Path) -> PathBuf {
    let stem = example.file_stem().unwrap().to_str().unwrap();
    let name = stem.strip_prefix("tutorial_").unwrap().replacen('_', "-", 1);
    root().join("notebooks").join(format!("{name}.ipynb"))
}

fn tutorial_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("tutorial_"))
        .collect();
    v.sort();
    v
}

#[derive(Debug, PartialEq)]
enum Cell {
    Markdown(String),
    Code(String),
}

/// Splits a tutorial program into cells:
/// - `//!` lines at the top: the title cell;
/// - `use` items: one code cell after the `:dep` cell;
/// - `// ANCHOR: x` .. `// ANCHOR_END: x` in `main`: a code cell each, de-indented;
/// - `//:` lines in `main`: markdown.
///
/// Anything else in `main` is an error, so no code is shown in one place and not the other.
fn cells(src: &str, file: &Path) -> Result<Vec<Cell>, String> {
    let mut cells = vec![];
    let mut title = vec![];
    let mut uses = vec![];
    let mut md: Vec<String> = vec![];
    let mut code: Option<(String, Vec<String>)> = None;
    let mut in_main = false;
    let flush_md = |md: &mut Vec<String>, cells: &mut Vec<Cell>| {
        if !md.is_empty() {
            cells.push(Cell::Markdown(md.join("\n")));
            md.clear();
        }
    };
    for (no, line) in src.lines().enumerate() {
        let t = line.trim();
        let at = || format!("{}:{}", file.display(), no + 1);
        if let Some((_, body)) = code.as_mut() {
            if let Some(name) = t.strip_prefix("// ANCHOR_END:") {
                let (open, body) = code.take().unwrap();
                if open != name.trim() {
                    return Err(format!("{}: ANCHOR_END does not match ANCHOR {open}", at()));
                }
                cells.push(Cell::Code(body.join("\n")));
            } else if t.starts_with("// ANCHOR:") {
                return Err(format!("{}: nested anchor", at()));
            } else {
                body.push(line.strip_prefix("    ").unwrap_or(line).to_string());
            }
            continue;
        }
        if !in_main {
            if let Some(doc) = t.strip_prefix("//!") {
                title.push(doc.strip_prefix(' ').unwrap_or(doc).to_string());
            } else if t.starts_with("use ")
                || (!uses.is_empty() && !uses.last().unwrap_or(&String::new()).ends_with(';'))
            {
                uses.push(line.to_string());
            } else if t.starts_with("fn main()") {
                in_main = true;
                title.extend(["".to_string(), OPEN_WITH.to_string()]);
                cells.push(Cell::Markdown(title.join("\n")));
                cells.push(Cell::Code(":dep transfer-lab = { path = \"..\", default-features = false }".into()));
                cells.push(Cell::Code(uses.join("\n")));
            } else if !t.is_empty() {
                return Err(format!("{}: unexpected item outside main: {t}", at()));
            }
            continue;
        }
        if let Some(text) = t.strip_prefix("//:") {
            md.push(text.strip_prefix(' ').unwrap_or(text).to_string());
        } else if let Some(name) = t.strip_prefix("// ANCHOR:") {
            flush_md(&mut md, &mut cells);
            code = Some((name.trim().to_string(), vec![]));
        } else {
            flush_md(&mut md, &mut cells);
            if !(t.is_empty() || t == "Ok(())" || t == "}") {
                return Err(format!("{}: code outside an anchor would be missing from the notebook: {t}", at()));
            }
        }
    }
    if code.is_some() {
        return Err(format!("{}: unclosed anchor", file.display()));
    }
    if !in_main {
        return Err(format!("{}: no fn main", file.display()));
    }
    Ok(cells)
}

fn lines(text: &str) -> Value {
    let v: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    json!(v)
}

fn notebook(cells: &[Cell]) -> Value {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Cell::Markdown(s) => {
                json!({"cell_type": "markdown", "id": format!("cell-{i:02}"), "metadata": {}, "source": lines(s)})
            }
            Cell::Code(s) => json!({
                "cell_type": "code", "execution_count": null, "id": format!("cell-{i:02}"),
                "metadata": {}, "outputs": [], "source": lines(s)
            }),
        })
        .collect();
    json!({
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Rust (transfer-lab)", "language": "rust", "name": "rust"},
            "language_info": {"codemirror_mode": "rust", "file_extension": ".rs", "mimetype": "text/rust", "name": "Rust", "pygment_lexer": "rust", "version": ""}
        },
        "nbformat": 4,
        "nbformat_minor": 5
    })
}

/// (type, source) of each cell: what must match; outputs must be empty in the repo.
fn sources(nb: &Value, file: &Path) -> Vec<(String, String)> {
    nb["cells"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no cells", file.display()))
        .iter()
        .map(|c| {
            let outputs = c.get("outputs").and_then(Value::as_array).map_or(0, Vec::len);
            assert_eq!(outputs, 0, "{}: committed notebooks carry no outputs (clear them)", file.display());
            let src = match &c["source"] {
                Value::String(s) => s.clone(),
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => String::new(),
            };
            (c["cell_type"].as_str().unwrap_or("").to_string(), src)
        })
        .collect()
}

#[test]
fn notebooks_match_their_tutorial_sources() {
    let bless = std::env::var_os("TLAB_BLESS").is_some();
    let examples = tutorial_sources();
    assert_eq!(examples.len(), 9, "nine tutorial programs expected: {examples:?}");
    let mut stale = vec![];
    for ex in &examples {
        let want = notebook(&cells(&fs::read_to_string(ex).unwrap(), ex).unwrap_or_else(|e| panic!("{e}")));
        let path = notebook_path(ex);
        if bless {
            fs::write(&path, serde_json::to_string_pretty(&want).unwrap() + "\n").unwrap();
            continue;
        }
        let have: Value = match fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display())),
            Err(_) => {
                stale.push(format!("{} is missing", path.display()));
                continue;
            }
        };
        if sources(&have, &path) != sources(&want, &path) {
            stale.push(format!("{} differs from {}", path.display(), ex.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "notebooks out of date; run `TLAB_BLESS=1 cargo test --test testsuite notebooks::`:\n{}",
        stale.join("\n")
    );
    // Nothing in notebooks/ that no tutorial program generates.
    let expected: Vec<PathBuf> = examples.iter().map(|e| notebook_path(e)).collect();
    for e in fs::read_dir(root().join("notebooks")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ipynb") {
            assert!(expected.contains(&p), "{} has no tutorial source", p.display());
        }
    }
}

#[test]
fn cell_splitting_rejects_code_outside_anchors() {
    let ok = "//! # T\nuse a::b;\n\nfn main() {\n    //: text\n    // ANCHOR: x\n    let y = 1;\n    // ANCHOR_END: x\n    Ok(())\n}\n";
    let c = cells(ok, Path::new("t.rs")).unwrap();
    assert_eq!(
        c,
        vec![
            Cell::Markdown(format!("# T\n\n{OPEN_WITH}")),
            Cell::Code(":dep transfer-lab = { path = \"..\", default-features = false }".into()),
            Cell::Code("use a::b;".into()),
            Cell::Markdown("text".into()),
            Cell::Code("let y = 1;".into()),
        ]
    );
    let stray = ok.replace("    Ok(())", "    let z = 2;\n    Ok(())");
    let err = cells(&stray, Path::new("t.rs")).unwrap_err();
    assert!(err.contains("t.rs:9: code outside an anchor") && err.contains("let z = 2;"), "{err}");
    let unclosed = ok.replace("    // ANCHOR_END: x\n", "");
    assert!(cells(&unclosed, Path::new("t.rs")).unwrap_err().contains("unclosed anchor"));
}

/// Every `{{#include file:anchor}}` in the book names a file that exists and an anchor in it.
#[test]
fn book_includes_resolve() {
    let src = root().join("book/src");
    let mut checked = 0;
    let mut bad = vec![];
    let mut included: Vec<String> = vec![];
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "md") {
                continue;
            }
            let text = fs::read_to_string(&p).unwrap();
            for inc in text.split("{{#include ").skip(1) {
                let spec = inc.split("}}").next().unwrap().trim();
                let (file, anchor) = match spec.rsplit_once(':') {
                    Some((f, a)) if !a.chars().all(|c| c.is_ascii_digit() || c == ':') => (f, Some(a)),
                    _ => (spec, None),
                };
                let target = p.parent().unwrap().join(file);
                checked += 1;
                let fname = Path::new(file).file_name().unwrap().to_str().unwrap();
                included.push(format!("{fname}:{}", anchor.unwrap_or("")));
                match fs::read_to_string(&target) {
                    Err(_) if file.contains("generated/") => {} // written by scripts/book.sh
                    Err(_) => bad.push(format!("{}: {} not found", p.display(), target.display())),
                    Ok(body) => {
                        if let Some(a) = anchor {
                            if !body.contains(&format!("ANCHOR: {a}\n"))
                                || !body.contains(&format!("ANCHOR_END: {a}\n"))
                            {
                                bad.push(format!("{}: anchor `{a}` not in {}", p.display(), target.display()));
                            }
                        }
                    }
                }
            }
        }
    }
    // Every cell of every notebook is a listing in the book too.
    for ex in tutorial_sources() {
        let name = ex.file_name().unwrap().to_str().unwrap();
        for line in fs::read_to_string(&ex).unwrap().lines() {
            if let Some(anchor) = line.trim().strip_prefix("// ANCHOR: ") {
                if !included.contains(&format!("{name}:{anchor}")) {
                    bad.push(format!("{name}:{anchor} is in the notebook but not in the book"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(checked >= 10, "only {checked} includes found in the book: are listings pasted by hand?");
}

/// The book's fixed version of the post's Keras script at least parses.
#[test]
fn book_python_listing_compiles() {
    let script = root().join("book/listings/post_fixed.py");
    let out = std::process::Command::new(crate::common::python())
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The size errors the backbones chapter prints as text are the ones `tlab` gives.
#[test]
fn book_shows_the_size_errors_tlab_gives() {
    use transfer_lab::models::Arch;
    let chapter = fs::read_to_string(root().join("book/src/ch9-backbones.md")).unwrap();
    for arch in [Arch::Dinov2Vits14, Arch::ClipVitb16] {
        let msg = arch.check_size(200).unwrap_err().to_string();
        assert!(chapter.contains(&msg), "ch9-backbones.md lacks `{msg}`");
    }
}
