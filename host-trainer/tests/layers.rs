//! The host trainer's modules only call down: no cycle among its top-level modules (a
//! `cli` that other modules import, or `plot` and `reproduce` importing each other, made
//! the code hard to follow). A change that adds one fails here, naming the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module of a source file (`models/eval.rs` -> `models`), `None` for the crate
/// roots.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    (first != "lib" && first != "main").then_some(first)
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every module named after `crate::` in `text`, alone (`crate::data::X`) or in a group
/// (`use crate::{data, plot::Y}`).
fn referenced(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|p| ident(p.trim())).filter(|m| !m.is_empty()));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// The module graph: each top-level module and the top-level modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        if let Some(m) = top_module(f.strip_prefix(&src).unwrap()) {
            g.entry(m).or_default();
        }
    }
    let names: BTreeSet<String> = g.keys().cloned().collect();
    for f in &files {
        let Some(m) = top_module(f.strip_prefix(&src).unwrap()) else {
            continue;
        };
        let uses = referenced(&std::fs::read_to_string(f).unwrap());
        let deps = g.get_mut(&m).unwrap();
        deps.extend(uses.into_iter().filter(|u| names.contains(u) && *u != m));
    }
    g
}

/// A cycle through `g`, if any, as the modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        path.push(v.to_string());
        for w in &g[v] {
            match state.get(w.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == w).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(w, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_host_modules_form_no_cycle() {
    let g = graph();
    // The scan sees what it must: the dispatcher uses the commands, and nothing uses it.
    assert!(g["cli"].contains("fewshot") && g["cli"].contains("models"), "{g:?}");
    assert!(
        g.values().all(|deps| !deps.contains("cli")),
        "a module imports the dispatcher: {g:?}"
    );
    if let Some(c) = find_cycle(&g) {
        panic!("module cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    };
    edge(&mut g, "cli", "reproduce");
    edge(&mut g, "reproduce", "plot");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "plot", "reproduce");
    assert_eq!(find_cycle(&g).unwrap(), ["reproduce", "plot", "reproduce"]);
    assert_eq!(
        referenced("use crate::{data, plot::Y};\nlet x = crate::units::parse_size(s);"),
        ["data", "plot", "units"].map(String::from).into()
    );
}
