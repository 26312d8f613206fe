//! Golden files: `tests/golden/<name>` holds what a test's output must be; with
//! `UPDATE_GOLDEN=1` the test writes it instead, and the diff is reviewed in the commit.
#![allow(dead_code)]

use std::path::Path;

/// Compares `actual` with `tests/golden/<name>`, or writes it with `UPDATE_GOLDEN=1`.
pub fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}; run with UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        let diff =
            similar::TextDiff::from_lines(&expected, actual).unified_diff().header("golden", "actual").to_string();
        panic!("{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it if the change is meant):\n{diff}");
    }
}
