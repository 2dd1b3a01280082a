//! The README's first screen and the docs pages it points to: the four
//! things a newcomer needs in the first 40 lines, and every relative link
//! (file and `#anchor`) in README.md and docs/ resolving.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_readme_first_screen_has_what_install_try_and_real_use() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first: String = readme.lines().take(40).collect::<Vec<_>>().join("\n");
    for needle in [
        "Keeps a Webex service app's access token working",
        "sudo apt install ./webex-token_",
        "sha256sum -c",
        "cargo install --locked --path .",
        "scripts/demo",
        "webex-token refresh",
        "docs/real-use.md",
        "docs/troubleshooting.md",
    ] {
        assert!(
            first.contains(needle),
            "README's first 40 lines lack `{needle}`"
        );
    }
    // The test command stays in the README; no hand-written flag table.
    assert!(readme.contains("scripts/test"));
    assert!(readme.contains("cargo test --workspace --locked"));
    assert!(!readme.contains("| `refresh ["), "a copy of the flag list");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with("```") {
            fence = !fence;
        }
        if !fence && l.starts_with('#') {
            out.push(slug(l.trim_start_matches('#').trim()));
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut files = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for part in text.split("](").skip(1) {
            let Some(target) = part.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.contains(' ') || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let dest = match path {
                "" => f.clone(),
                p => f.parent().unwrap_or(Path::new(".")).join(p),
            };
            let Ok(dest_text) = std::fs::read_to_string(&dest) else {
                if !dest.exists() {
                    bad.push(format!("{}: {target}", f.display()));
                }
                continue;
            };
            if !anchor.is_empty() && !anchors(&dest_text).iter().any(|a| a == anchor) {
                bad.push(format!("{}: {target} (no such heading)", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}
