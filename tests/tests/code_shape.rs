//! The shape of the code, checked on every change: no function outside tests and generated
//! code is longer than [`FUNCTION_LINES_MAX`], and no source file imports from a file that
//! imports it back (directly or around a longer loop), so each crate's modules form layers a
//! reader can take one at a time.
//!
//! Both read the workspace's sources with `syn` (a real Rust parser, not a brace counter).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The longest a function may be, from its `fn` line to its closing brace.
const FUNCTION_LINES_MAX: usize = 100;

/// The crates whose function lengths are checked (the `tests` crate is tests, but the power-cut
/// filesystem inside it is a program like the others; `vendor/` is not ours to shape, apart
/// from the fix it documents).
const CRATES: [&str; 10] = [
    "codec",
    "io",
    "shard",
    "storage",
    "cluster",
    "engine",
    "loadgen",
    "perf",
    "auth",
    "tests/powercut",
];

/// The crates whose files must not import from each other around a loop. The engine is wiring:
/// each of its files is a layer (configuration, security, the shard context, connections, node
/// links, boot). The other crates keep one type's `impl` blocks in several files of a module
/// (the shard state machine's `state/`), whose files refer to each other by design.
const LAYERED_CRATES: [&str; 1] = ["engine"];

/// Generated files: their shape is the generator's.
const GENERATED: [&str; 1] = ["cluster/src/frame/link_generated.rs"];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, skipping test directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "tests" && name != "target" && name != "corpus" && name != "regressions" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, syn::File)> {
    let root = workspace();
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate), &mut files);
    }
    files.sort();
    let mut parsed = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().into_owned();
        if GENERATED.contains(&relative.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
        parsed.push((relative, file));
    }
    // Files of modules declared only for tests (`#[cfg(test)] mod tests;`) are tests.
    let mut test_files = BTreeSet::new();
    for (file, syntax) in &parsed {
        let dir = match file.rsplit_once('/') {
            Some((dir, name)) if ["mod.rs", "lib.rs", "main.rs"].contains(&name) => dir.to_owned(),
            _ => file.trim_end_matches(".rs").to_owned(),
        };
        for item in &syntax.items {
            if let syn::Item::Mod(declared) = item {
                if declared.content.is_none() && is_test_only(&declared.attrs) {
                    test_files.insert(format!("{dir}/{}.rs", declared.ident));
                    test_files.insert(format!("{dir}/{}/mod.rs", declared.ident));
                }
            }
        }
    }
    parsed.retain(|(file, _)| !test_files.contains(file));
    parsed
}

/// Whether an item exists only for tests: `#[test]`, or a `cfg` that needs `test` or one of the
/// features that only test and fuzzing builds turn on.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("test") {
            return true;
        }
        if !path.is_ident("cfg") {
            return false;
        }
        let syn::Meta::List(list) = &attr.meta else { return false };
        let text = list.tokens.to_string();
        // `test`, `any(test, feature = "fuzzing")`, `feature = "testing"`; never `not(test)`.
        !text.contains("not")
            && (text.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| word == "test")
                || text.contains("\"fuzzing\"")
                || text.contains("\"testing\"")
                || text.contains("\"fault-injection\""))
    })
}

/// Collects the functions of a file with their length, outside test-only items.
struct Functions<'a> {
    file: &'a str,
    found: Vec<(String, usize, usize)>,
}

impl Functions<'_> {
    fn add(&mut self, name: &syn::Ident, fn_token: &syn::token::Fn, block: &syn::Block) {
        let start = fn_token.span().start().line;
        let end = block.brace_token.span.close().end().line;
        self.found.push((format!("{}:{start} {name}", self.file), start, end + 1 - start));
    }
}

impl<'ast> Visit<'ast> for Functions<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            self.add(&item.sig.ident, &item.sig.fn_token, &item.block);
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            self.add(&item.sig.ident, &item.sig.fn_token, &item.block);
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let (false, Some(block)) = (is_test_only(&item.attrs), &item.default) {
            self.add(&item.sig.ident, &item.sig.fn_token, block);
        }
        syn::visit::visit_trait_item_fn(self, item);
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_impl(self, item);
        }
    }
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let sources = sources();
    assert!(sources.len() > 100, "the workspace's sources were not found");
    let mut long = Vec::new();
    let mut counted = 0;
    for (file, syntax) in &sources {
        let mut functions = Functions { file, found: Vec::new() };
        functions.visit_file(syntax);
        counted += functions.found.len();
        long.extend(
            functions.found.into_iter().filter(|(_, _, lines)| *lines > FUNCTION_LINES_MAX),
        );
    }
    assert!(counted > 1000, "only {counted} functions found: the walk is broken");
    let report: Vec<String> =
        long.iter().map(|(name, _, lines)| format!("  {name}: {lines} lines")).collect();
    assert!(
        long.is_empty(),
        "functions over {FUNCTION_LINES_MAX} lines (split them along their jobs):\n{}",
        report.join("\n")
    );
}

// -------------------------------------------------------------------------------------------
// Imports between files
// -------------------------------------------------------------------------------------------

/// A crate's file module: its file, the names it defines at its top level, and what it
/// re-exports (`pub use a::B;` names `B` → `a::B`; `pub use a::*;` every name of `a`).
struct Module {
    file: String,
    defined: BTreeSet<String>,
    reexports: BTreeMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
}

fn module_of(file: &str, syntax: &syn::File) -> Module {
    let mut module = Module {
        file: file.to_owned(),
        defined: BTreeSet::new(),
        reexports: BTreeMap::new(),
        globs: Vec::new(),
    };
    for item in &syntax.items {
        let name = match item {
            syn::Item::Const(i) => Some(&i.ident),
            syn::Item::Enum(i) => Some(&i.ident),
            syn::Item::Fn(i) => Some(&i.sig.ident),
            syn::Item::Mod(i) => Some(&i.ident),
            syn::Item::Static(i) => Some(&i.ident),
            syn::Item::Struct(i) => Some(&i.ident),
            syn::Item::Trait(i) => Some(&i.ident),
            syn::Item::Type(i) => Some(&i.ident),
            syn::Item::Union(i) => Some(&i.ident),
            syn::Item::Macro(i) => i.ident.as_ref(),
            syn::Item::Use(u) if !matches!(u.vis, syn::Visibility::Inherited) => {
                let mut paths = Vec::new();
                flatten_use(&u.tree, &mut Vec::new(), &mut paths);
                for path in paths {
                    if glob_use(&u.tree) {
                        module.globs.push(path);
                    } else if let Some(last) = path.last() {
                        module.reexports.insert(last.clone(), path);
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(name) = name {
            module.defined.insert(name.to_string());
        }
    }
    module
}

fn glob_use(tree: &syn::UseTree) -> bool {
    match tree {
        syn::UseTree::Path(path) => glob_use(&path.tree),
        syn::UseTree::Glob(_) => true,
        _ => false,
    }
}

/// A crate's file modules: module path (`cluster::state`) → module.
fn modules(krate: &str, files: &[&(String, syn::File)]) -> BTreeMap<Vec<String>, Module> {
    let mut modules = BTreeMap::new();
    for (file, syntax) in files {
        let Some(rest) = file.strip_prefix(&format!("{krate}/src/")) else { continue };
        let rest = rest.trim_end_matches(".rs");
        let mut path: Vec<String> = rest.split('/').map(str::to_owned).collect();
        if path.last().is_some_and(|last| last == "mod") {
            path.pop();
        }
        if path == ["lib"] || path == ["main"] {
            path.clear();
        }
        if path.first().is_some_and(|first| first == "bin") {
            continue; // each binary is a crate of its own
        }
        modules.insert(path, module_of(file, syntax));
    }
    modules
}

/// Every path a file names (in `use` trees and in code), outside test-only items.
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
}

fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            flatten_use(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) => {
            let mut full = prefix.clone();
            if name.ident != "self" {
                full.push(name.ident.to_string());
            }
            out.push(full);
        }
        syn::UseTree::Rename(rename) => {
            let mut full = prefix.clone();
            full.push(rename.ident.to_string());
            out.push(full);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                flatten_use(tree, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    // `pub(crate)`, `pub(super)`: where an item is seen from, not something it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        flatten_use(&item.tree, &mut Vec::new(), &mut self.found);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.found.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// The file a path leads to, if it leads into this crate's file modules. A name a module only
/// re-exports leads on to the file that defines it.
fn resolve(
    modules: &BTreeMap<Vec<String>, Module>,
    here: &[String],
    path: &[String],
) -> Option<String> {
    resolve_at(modules, here, path, 0)
}

fn resolve_at(
    modules: &BTreeMap<Vec<String>, Module>,
    here: &[String],
    path: &[String],
    depth: usize,
) -> Option<String> {
    let anchored = matches!(path.first().map(String::as_str), Some("crate" | "self" | "super"));
    let (mut base, mut rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (here.to_vec(), &path[1..]),
        Some(_) => (here.to_vec(), path),
        None => return None,
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    // The deepest file module the path goes through, and the name after it.
    let mut at = base.clone();
    let mut module = modules.get(&base).filter(|_| anchored);
    let mut next = rest.first();
    for (i, segment) in rest.iter().enumerate() {
        at.push(segment.clone());
        match modules.get(&at) {
            Some(found) => {
                module = Some(found);
                next = rest.get(i + 1);
            }
            // A relative path that does not start with a child module names an item or another
            // crate.
            None if i == 0 && !anchored => return None,
            None => {
                at.pop();
                break;
            }
        }
    }
    let module = module?;
    let Some(name) = next else { return Some(module.file.clone()) };
    if depth < 4 && !module.defined.contains(name) {
        if let Some(target) = module.reexports.get(name) {
            return resolve_at(modules, &at, target, depth + 1).or(Some(module.file.clone()));
        }
        for glob in &module.globs {
            let mut target = glob.clone();
            target.push(name.clone());
            if let Some(file) = resolve_at(modules, &at, &target, depth + 1) {
                let defines = modules.values().any(|m| m.file == file && m.defined.contains(name));
                if defines {
                    return Some(file);
                }
            }
        }
    }
    Some(module.file.clone())
}

/// The strongly connected components of more than one file (Tarjan's algorithm).
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next.as_str()) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next.as_str()]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next.as_str()) {
                    let low = self.low[node].min(self.index[next.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

fn import_graph(
    krate: &str,
    sources: &[(String, syn::File)],
) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<&(String, syn::File)> =
        sources.iter().filter(|(file, _)| file.starts_with(&format!("{krate}/src/"))).collect();
    let modules = modules(krate, &files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (here, module) in &modules {
        let file = &module.file;
        let Some((_, syntax)) = files.iter().find(|(f, _)| f == file) else { continue };
        let mut paths = Paths::default();
        paths.visit_file(syntax);
        let edges = graph.entry(file.clone()).or_default();
        for path in &paths.found {
            if let Some(target) = resolve(&modules, here, path) {
                if target != *file {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

#[test]
fn no_file_imports_from_a_file_that_imports_it_back() {
    let sources = sources();
    let mut report = Vec::new();
    for krate in LAYERED_CRATES {
        let graph = import_graph(krate, &sources);
        assert!(!graph.is_empty(), "{krate}: no sources found");
        for component in loops(&graph) {
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| component.contains(to))
                        .map(move |to| format!("    {from} -> {to}"))
                })
                .collect();
            report.push(format!("  {}:\n{}", component.join(", "), edges.join("\n")));
        }
    }
    assert!(
        report.is_empty(),
        "files that import from each other, around a loop (move what both need into a file \
         that needs neither):\n{}",
        report.join("\n")
    );
}

/// The checker finds a loop when there is one (and none in a chain), so a pass means something.
#[test]
fn the_loop_finder_finds_loops() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert!(loops(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    assert_eq!(
        loops(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
    let parse = |text: &str| syn::parse_file(text).expect("test source");
    let modules: BTreeMap<Vec<String>, Module> = [
        (vec![], module_of("lib.rs", &parse("mod cluster; pub use cluster::Ring;"))),
        (
            vec!["cluster".to_owned()],
            module_of("cluster.rs", &parse("mod state; pub use state::*; fn cluster_item() {}")),
        ),
        (
            vec!["cluster".to_owned(), "state".to_owned()],
            module_of("cluster/state.rs", &parse("pub struct ShardCluster; pub struct Ring;")),
        ),
    ]
    .into_iter()
    .collect();
    let path = |text: &str| text.split("::").map(str::to_owned).collect::<Vec<_>>();
    let here = vec!["cluster".to_owned(), "state".to_owned()];
    assert_eq!(
        resolve(&modules, &here, &path("super::cluster_item")).as_deref(),
        Some("cluster.rs")
    );
    assert_eq!(
        resolve(&modules, &[], &path("crate::cluster::state::ShardCluster")).as_deref(),
        Some("cluster/state.rs")
    );
    assert_eq!(
        resolve(&modules, &["cluster".to_owned()], &path("state::X")).as_deref(),
        Some("cluster/state.rs")
    );
    assert_eq!(resolve(&modules, &here, &path("std::rc::Rc")), None);
    // Through a glob re-export, and through a named one at the crate root.
    assert_eq!(
        resolve(&modules, &[], &path("crate::cluster::ShardCluster")).as_deref(),
        Some("cluster/state.rs")
    );
    assert_eq!(resolve(&modules, &here, &path("crate::Ring")).as_deref(), Some("cluster/state.rs"));
}
