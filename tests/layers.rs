//! The rule of `src/lib.rs`, checked: a module uses only its own layer's
//! code and the layers below it, so nothing reaches back up the data flow.
//! Reads the source as text (`crate::<module>` outside comments), which is
//! how a reviewer reads it too; a `use` that breaks the rule fails here
//! with the file and the line.

use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first; the same order as the table in `src/lib.rs`.
const LAYERS: &[&[&str]] = &[
    &["common", "error", "logging"],
    &["config"],
    &["cli", "systemd"],
    &["ssh"],
    &["landing", "ledger"],
    &["report"],
    &["transfer"],
    &["commands"],
];

/// Inside `transfer/`, the same rule: the rules below the engine, the
/// engine below the pass that drives it.
const TRANSFER: &[&[&str]] = &[
    &["classify", "rules"],
    &["engine", "plan"],
    &["pass", "harness"],
];

fn rank(table: &[&[&str]], name: &str) -> Option<usize> {
    table.iter().position(|layer| layer.contains(&name))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path component under `src/` (file stem for a top-level file)
/// and, for `transfer/`, the second.
fn module_of(src: &Path, file: &Path) -> (String, Option<String>) {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts = rel.iter().map(|p| {
        Path::new(p)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    });
    let top = parts.next().unwrap();
    let sub = parts.next();
    (top, sub)
}

/// `crate::a::b` references outside comments, with their line numbers.
fn references(text: &str) -> Vec<(usize, String, Option<String>)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts = path.split("::").filter(|p| !p.is_empty());
            if let Some(top) = parts.next() {
                out.push((n + 1, top.to_string(), parts.next().map(str::to_string)));
            }
        }
        // `use crate::{a, b}` is not used here; flag it so this check stays whole.
        assert!(
            !code.contains("crate::{"),
            "line {}: grouped `use crate::{{...}}` defeats the layer check; \
             write one `use` per module",
            n + 1
        );
    }
    out
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let (top, sub) = module_of(&src, file);
        // The binaries sit above every layer; a module's unit tests
        // (`tests.rs`) may drive it through the test harness above it.
        if top == "main" || top == "lib" || top == "bin" || file.ends_with("tests.rs") {
            continue;
        }
        let own = rank(LAYERS, &top)
            .unwrap_or_else(|| panic!("{}: module {top} is in no layer", file.display()));
        let text = fs::read_to_string(file).unwrap();
        for (line, used, used_sub) in references(&text) {
            checked += 1;
            let Some(theirs) = rank(LAYERS, &used) else {
                violations.push(format!(
                    "{}:{line}: crate::{used} is in no layer",
                    file.display()
                ));
                continue;
            };
            if theirs > own {
                violations.push(format!(
                    "{}:{line}: {top} (layer {own}) uses crate::{used} (layer {theirs})",
                    file.display()
                ));
            }
            if top == "transfer"
                && used == "transfer"
                && let (Some(me), Some(it)) = (sub.as_deref(), used_sub.as_deref())
                && me != "mod"
            {
                let (mine, its) = (rank(TRANSFER, me), rank(TRANSFER, it));
                if let (Some(mine), Some(its)) = (mine, its)
                    && its > mine
                {
                    violations.push(format!(
                        "{}:{line}: transfer::{me} uses transfer::{it}, a later stage",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} references found: the scan is broken"
    );
    assert!(
        violations.is_empty(),
        "layer rule broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_use() {
    // The scan itself: a landing file that uses the transfer engine.
    let refs = references("use crate::transfer::engine::Engine; // crate::commands\n");
    assert_eq!(
        refs,
        [(1, "transfer".to_string(), Some("engine".to_string()))]
    );
    assert!(rank(LAYERS, "transfer") > rank(LAYERS, "landing"));
}
