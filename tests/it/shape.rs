//! The shape of the code, as `ARCHITECTURE.md` promises it: no source file past 600 lines
//! (the simulators aside: each speaks one whole upstream), a code map that matches the
//! tree both ways, and every public async fn of `shared` boxed where it is defined.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_outside_the_simulators_is_over_600_lines() {
    let mut files = Vec::new();
    for dir in ["shared", "worker", "api", "scheduler", "src", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "the walk found only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES)
                .then(|| format!("{} ({n} lines)", f.strip_prefix(root()).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// `shared`'s public async fns are awaited from every other crate: unboxed, each body (and
/// its sqlx code for both backends) is compiled again in each of them — about a minute of a
/// first build (README; ARCHITECTURE, "Async fns awaited across crates are boxed"). A new one must carry
/// `#[crate::boxed]` on the line above.
#[test]
fn every_public_async_fn_of_shared_is_boxed() {
    let mut files = Vec::new();
    rust_files(&root().join("shared/src"), &mut files);
    let (mut seen, mut unboxed) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("pub async fn ") {
                seen += 1;
                if i == 0 || lines[i - 1].trim() != "#[crate::boxed]" {
                    let name = file.strip_prefix(root()).unwrap().display();
                    unboxed.push(format!("{name}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(seen > 100, "the walk found only {seen} public async fns");
    assert!(unboxed.is_empty(), "not #[crate::boxed]: {unboxed:#?}");
}

/// The text of `### \`<crate>/\`` in the code map, up to the next heading.
fn section<'a>(doc: &'a str, krate: &str) -> &'a str {
    let head = format!("### `{krate}/`");
    let start = doc.find(&head).unwrap_or_else(|| panic!("ARCHITECTURE.md has no {head}"));
    let rest = &doc[start + head.len()..];
    &rest[..rest.find("\n#").unwrap_or(rest.len())]
}

#[test]
fn the_code_map_matches_the_tree() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for krate in ["shared", "worker", "scheduler", "api"] {
        let text = section(&doc, krate);
        let src = root().join(krate).join("src");
        // Each bullet's leading path is in the tree.
        for line in text.lines().filter(|l| l.starts_with("- `")) {
            let name = &line[3..line[3..].find('`').unwrap() + 3];
            assert!(
                src.join(name).exists(),
                "ARCHITECTURE.md names {krate}/src/{name}, which is gone"
            );
        }
        // Each file and directory of the crate's src is named.
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            if file == "lib.rs" && krate != "api" {
                continue;
            }
            let named = if path.is_dir() { format!("`{file}/`") } else { format!("`{file}`") };
            assert!(
                text.contains(&named),
                "{krate}/src/{file} is missing from ARCHITECTURE.md's code map"
            );
        }
    }
}
