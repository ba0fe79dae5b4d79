//! The crate's top-level modules must import each other as a tree (a DAG): a cycle means two
//! modules that cannot be understood, tested or moved apart. This test reads `src/**/*.rs`,
//! takes every `crate::X` and `super::X` path outside comments and test modules, builds the
//! graph of top-level modules (`src/X.rs` or `src/X/`), and fails naming each cycle with the
//! file and line of every import that closes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: the top-level module it reaches, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    target: String,
    line: usize,
}

/// The module path of a source file under `src/`: `src/a/b.rs` and `src/a/b/mod.rs` are
/// `["a", "b"]`; `src/lib.rs` and `src/main.rs` are the crate root (`[]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "mod" | "lib" | "main") {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` module (by convention
/// the file's end): imports made only for tests do not tie modules together.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let test_module = line.trim_start().starts_with("#[cfg(test)]")
            && lines.get(i + 1).is_some_and(|next| {
                let next = next.trim_start();
                next.starts_with("mod ") || next.starts_with("pub mod ")
            });
        if test_module {
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push((i + 1, code));
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segments after `prefix` at `rest`: one (`crate::a::b` → `a`) or several for a
/// group (`crate::{a, b::c}` → `a`, `b`).
fn segments(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut out = Vec::new();
        let mut at_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_start = true,
                c if at_start && is_ident(c) => {
                    let name: String = group[i..].chars().take_while(|&c| is_ident(c)).collect();
                    out.push(name);
                    at_start = false;
                }
                c if !c.is_whitespace() => at_start = false,
                _ => {}
            }
        }
        return out;
    }
    let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    if name.is_empty() { vec![] } else { vec![name] }
}

/// The top-level modules a file at `module` refers to through `crate::` and `super::` paths.
fn references(module: &[String], text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for (line, code) in code_lines(text) {
        for (at, _) in code.match_indices("crate::") {
            // `kvsweep_crate::` or a longer identifier is not the path keyword.
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            for target in segments(&code[at + "crate::".len()..]) {
                out.push(Reference { target, line });
            }
        }
        for (at, _) in code.match_indices("super::") {
            if code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == ':')
            {
                continue; // the second `super::` of `super::super::`, counted with the first
            }
            let mut rest = &code[at..];
            let mut up = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                up += 1;
                rest = r;
            }
            let Some(parent) = module.len().checked_sub(up) else {
                continue;
            };
            if parent > 0 {
                out.push(Reference {
                    target: module[0].clone(),
                    line,
                });
            } else {
                for target in segments(rest) {
                    out.push(Reference { target, line });
                }
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Edges between distinct top-level modules, each with the first place that makes it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(src).ok()?).into_iter().next())
        .collect();
    let mut g = Graph::new();
    for file in &files {
        let relative = file.strip_prefix(src).expect("under src");
        let module = module_path(relative);
        let Some(from) = module.first() else {
            continue; // lib.rs and main.rs declare modules; they are not one
        };
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let edges = g.entry(from.clone()).or_default();
        for r in references(&module, &text) {
            if &r.target != from && tops.contains(&r.target) {
                edges
                    .entry(r.target)
                    .or_insert_with(|| format!("src/{}:{}", relative.display(), r.line));
            }
        }
    }
    g
}

/// The strongly connected components with more than one module: each is a set of modules
/// that import each other in a cycle.
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for next in g.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reached {
        if !r.contains(*m) || out.iter().any(|c| c.contains(*m)) {
            continue;
        }
        let component: BTreeSet<String> = r
            .iter()
            .filter(|o| reached.get(o).is_some_and(|back| back.contains(*m)))
            .cloned()
            .collect();
        out.push(component);
    }
    out
}

/// A readable account of the cycles: each component's imports among its own modules.
fn describe(g: &Graph, cycles: &[BTreeSet<String>]) -> String {
    let mut text = String::new();
    for c in cycles {
        text.push_str(&format!(
            "cycle among {}:\n",
            c.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        for from in c {
            for (to, at) in g.get(from).into_iter().flatten() {
                if c.contains(to) {
                    text.push_str(&format!("  {from} -> {to} ({at})\n"));
                }
            }
        }
    }
    text
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 10, "the scan found the modules: {:?}", g.keys());
    let found = cycles(&g);
    assert!(found.is_empty(), "import cycles:\n{}", describe(&g, &found));
}

#[test]
fn crate_and_super_paths_are_resolved_to_top_level_modules() {
    let m = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
    let targets = |module: &[String], text: &str| {
        references(module, text)
            .into_iter()
            .map(|r| r.target)
            .collect::<Vec<_>>()
    };
    assert_eq!(targets(&m("a"), "use crate::b::X;"), ["b"]);
    assert_eq!(
        targets(&m("a"), "use crate::{b, c::d::{E, F}};"),
        ["b", "c"]
    );
    assert_eq!(targets(&m("a"), "let x = crate::b::f();"), ["b"]);
    assert_eq!(
        targets(&m("a"), "use super::b;"),
        ["b"],
        "super of a top module"
    );
    assert_eq!(targets(&m("a/x"), "use super::y;"), ["a"], "a sibling");
    assert_eq!(targets(&m("a/x/y"), "use super::super::z;"), ["a"]);
    assert_eq!(targets(&m("a/x"), "use super::super::b;"), ["b"]);
    assert_eq!(targets(&m("a"), "// see crate::b"), Vec::<String>::new());
    assert_eq!(
        targets(&m("a"), "use kvsweep_crate::b;"),
        Vec::<String>::new()
    );
    assert_eq!(
        targets(&m("a"), "x\n#[cfg(test)]\nmod tests { use crate::b; }"),
        Vec::<String>::new(),
        "test modules are left out"
    );
    assert_eq!(references(&m("a"), "\n\nuse crate::b;")[0].line, 3);
}

#[test]
fn a_cycle_is_found_and_named_with_its_imports() {
    let mut g = Graph::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.to_owned())
            .or_default()
            .insert(b.to_owned(), format!("src/{a}.rs:1"));
    };
    edge("spec", "runner");
    edge("runner", "engine");
    edge("engine", "spec");
    edge("collect", "report");
    edge("report", "collect");
    edge("report", "plot");
    edge("plot", "hash");
    let found = cycles(&g);
    assert_eq!(found.len(), 2, "{found:?}");
    let text = describe(&g, &found);
    assert!(text.contains("cycle among engine, runner, spec"), "{text}");
    assert!(text.contains("engine -> spec (src/engine.rs:1)"), "{text}");
    assert!(text.contains("cycle among collect, report"), "{text}");
    assert!(!text.contains("plot"), "{text}");
}

#[test]
fn a_tree_has_no_cycle() {
    let mut g = Graph::new();
    g.entry("a".into())
        .or_default()
        .insert("b".into(), String::new());
    g.entry("a".into())
        .or_default()
        .insert("c".into(), String::new());
    g.entry("b".into())
        .or_default()
        .insert("c".into(), String::new());
    assert!(cycles(&g).is_empty());
}
