//! The crate's folders are layers ([`LAYERS`]: vocabulary at the bottom, then data, planning,
//! running, results, commands), and each imports only the layers below it; inside a layer its
//! modules, and inside a module its children, import each other as a tree (a DAG): a cycle
//! means modules that cannot be understood, tested or moved apart. This test reads
//! `src/**/*.rs`, takes every `crate::` and `super::` path outside comments and test modules,
//! builds the graph of the layers (`src/L/`), of the modules of each layer (`src/L/X.rs` or
//! `src/L/X/`) and of each module's children (`src/L/X/Y.rs` or `src/L/X/Y/`), and fails naming
//! each upward import and each cycle with the file and line of every import that makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: the module path it reaches (from the crate root, as far as it is a module
/// path or [`DEPTH`] segments), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    path: Vec<String>,
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

/// The members of a `{a, b::c, d::{e}}` group at `group` (after its `{`): their texts.
fn group_members(group: &str) -> Vec<&str> {
    let mut depth = 0;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(&group[start..i]);
                return out;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&group[start..]);
    out
}

/// The module paths, `depth` segments at most, that the path text `rest` begins with:
/// `a::b::C` → `[a, b]`; `{a, b::c}` → `[a]`, `[b, c]`.
fn paths(rest: &str, depth: usize) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if depth == 0 {
        return vec![];
    }
    if let Some(group) = rest.strip_prefix('{') {
        return group_members(group)
            .into_iter()
            .flat_map(|m| paths(m, depth))
            .collect();
    }
    let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    if name.is_empty() || name == "self" {
        return vec![];
    }
    let tails = match rest[name.len()..].strip_prefix("::") {
        Some(after) => paths(after, depth - 1),
        None => vec![],
    };
    if tails.is_empty() {
        return vec![vec![name]];
    }
    tails
        .into_iter()
        .map(|t| std::iter::once(name.clone()).chain(t).collect())
        .collect()
}

/// Segments of a module path kept: the layer, its module and that module's child.
const DEPTH: usize = 3;

/// The module paths (from the crate root, at most [`DEPTH`] segments) that a file at `module`
/// refers to through `crate::` and `super::` paths.
fn references(module: &[String], text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for (line, code) in code_lines(text) {
        for (at, _) in code.match_indices("crate::") {
            // `kvsweep_crate::` or a longer identifier is not the path keyword.
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            for path in paths(&code[at + "crate::".len()..], DEPTH) {
                out.push(Reference { path, line });
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
            let base = &module[..parent.min(DEPTH)];
            if base.len() == DEPTH {
                out.push(Reference {
                    path: base.to_vec(),
                    line,
                });
                continue;
            }
            let found = paths(rest, DEPTH - base.len());
            if found.is_empty() && !base.is_empty() {
                out.push(Reference {
                    path: base.to_vec(),
                    line,
                });
            }
            for tail in found {
                out.push(Reference {
                    path: base.iter().cloned().chain(tail).collect(),
                    line,
                });
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

/// Edges between distinct modules, each with the first place that makes it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The import graphs, keyed by the module whose children they join: `""` for the layers,
/// `"run"` for the modules of a layer, `"run/replay"` for a module's children. An import
/// joins the two modules where its path and the importing file's path part: `run/replay/output`
/// importing `run/metrics/schema` is the edge `replay -> metrics` inside `run`; imports of an
/// ancestor's own items are no edge.
fn graphs(src: &Path) -> BTreeMap<String, Graph> {
    let files = rust_files(src);
    let modules: Vec<Vec<String>> = files
        .iter()
        .map(|f| module_path(f.strip_prefix(src).expect("under src")))
        .collect();
    let known: BTreeSet<Vec<String>> = modules
        .iter()
        .flat_map(|m| (1..=m.len().min(DEPTH)).map(|n| m[..n].to_vec()))
        .collect();
    let mut out: BTreeMap<String, Graph> = BTreeMap::new();
    for (file, module) in files.iter().zip(&modules) {
        if module.is_empty() {
            continue; // lib.rs and main.rs declare modules; they are not one
        }
        let file_module = module;
        let module = &module[..module.len().min(DEPTH)];
        let relative = file.strip_prefix(src).expect("under src");
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for depth in 0..module.len() {
            out.entry(module[..depth].join("/"))
                .or_default()
                .entry(module[depth].clone())
                .or_default();
        }
        for r in references(file_module, &text) {
            let shared = module
                .iter()
                .zip(&r.path)
                .take_while(|(a, b)| a == b)
                .count();
            if shared >= module.len()
                || shared >= r.path.len()
                || !known.contains(&r.path[..=shared])
            {
                continue;
            }
            out.entry(module[..shared].join("/"))
                .or_default()
                .entry(module[shared].clone())
                .or_default()
                .entry(r.path[shared].clone())
                .or_insert_with(|| format!("src/{}:{}", relative.display(), r.line));
        }
    }
    out
}

/// The layers, bottom first: a module imports its own layer and the ones before it. Files at
/// the crate root beside them (the fuzz entry points) sit above every layer.
const LAYERS: [&str; 6] = ["base", "data", "plan", "run", "results", "cli"];

/// The imports that go up the layers, or reach a root file or a folder [`LAYERS`] does not
/// place, each with where it is.
fn upward_imports(layers: &Graph) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut out = Vec::new();
    for (from, edges) in layers {
        for (to, at) in edges {
            let upward = match (rank(from), rank(to)) {
                (Some(a), Some(b)) => b > a,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if upward {
                out.push(format!("{from} -> {to} ({at})"));
            }
        }
    }
    out
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
fn modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = graphs(&src);
    assert!(
        all["run"].len() > 5,
        "the scan found the modules: {:?}",
        all["run"].keys()
    );
    assert!(
        all["results/oracle"].len() > 5,
        "and their children: {:?}",
        all["results/oracle"].keys()
    );
    let mut report = String::new();
    for (within, g) in &all {
        let found = cycles(g);
        if !found.is_empty() {
            let level = if within.is_empty() {
                "the crate"
            } else {
                within.as_str()
            };
            report.push_str(&format!("in {level}:\n{}", describe(g, &found)));
        }
    }
    assert!(report.is_empty(), "import cycles:\n{report}");
}

#[test]
fn each_layer_imports_only_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = graphs(&src);
    let folders: Vec<&String> = all[""]
        .keys()
        .filter(|m| src.join(m).is_dir() && !LAYERS.contains(&m.as_str()))
        .collect();
    assert!(
        folders.is_empty(),
        "folders under src/ that are no layer (place them in module_graph::LAYERS): {folders:?}"
    );
    let upward = upward_imports(&all[""]);
    assert!(
        upward.is_empty(),
        "imports up the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn an_upward_import_is_named() {
    let mut g = Graph::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.to_owned())
            .or_default()
            .insert(b.to_owned(), format!("src/{a}/x.rs:7"));
    };
    edge("run", "plan");
    edge("plan", "results");
    edge("fuzz", "run");
    edge("data", "fuzz");
    assert_eq!(
        upward_imports(&g),
        [
            "data -> fuzz (src/data/x.rs:7)",
            "plan -> results (src/plan/x.rs:7)"
        ]
    );
}

#[test]
fn crate_and_super_paths_are_resolved_to_module_paths() {
    let m = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
    let targets = |module: &[String], text: &str| {
        references(module, text)
            .into_iter()
            .map(|r| r.path.join("/"))
            .collect::<Vec<_>>()
    };
    assert_eq!(targets(&m("a"), "use crate::b::X;"), ["b/X"]);
    assert_eq!(targets(&m("a"), "use crate::b;"), ["b"]);
    assert_eq!(
        targets(&m("a"), "use crate::{b, c::d::{E, F}};"),
        ["b", "c/d/E", "c/d/F"]
    );
    assert_eq!(
        targets(&m("a"), "use crate::c::{d, e::F::G};"),
        ["c/d", "c/e/F"]
    );
    assert_eq!(targets(&m("a"), "let x = crate::b::f();"), ["b/f"]);
    assert_eq!(
        targets(&m("a"), "use super::b;"),
        ["b"],
        "super of a top module"
    );
    assert_eq!(
        targets(&m("a/x"), "use super::y::Z;"),
        ["a/y/Z"],
        "a sibling"
    );
    assert_eq!(
        targets(&m("a/x"), "use super::{y, z::W};"),
        ["a/y", "a/z/W"]
    );
    assert_eq!(targets(&m("a/x/y"), "use super::super::z;"), ["a/z"]);
    assert_eq!(
        targets(&m("a/x/y/w"), "use super::Q;"),
        ["a/x/y"],
        "its own parent"
    );
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
