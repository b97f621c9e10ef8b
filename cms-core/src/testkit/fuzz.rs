//! The committed inputs of the repository's fuzz targets (`fuzz/`), for the unit
//! tests that replay them on the stable toolchain through the same entry points the
//! targets call (`cms_server::fuzz`, `cms_driver_opennebula::fuzz`).

use std::path::Path;

/// The committed inputs of one target, from `fuzz/seeds`, `fuzz/corpus` (what fuzzing
/// grew, minimized) and `fuzz/regressions` (inputs that once failed), each with its
/// path under `fuzz/`, in path order.
pub fn committed_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for folder in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("read a corpus file");
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            out.push((format!("{folder}/{target}/{name}"), bytes));
        }
    }
    out.sort();
    out
}

/// Replays every committed input of `target` through `run` (whether it accepts the
/// input): none may panic; seeds named `ok-*` must be accepted and `bad-*` refused.
/// Panics when the target has no seeds at all.
pub fn replay(target: &str, run: fn(&[u8]) -> bool) {
    let inputs = committed_inputs(target);
    assert!(
        inputs.iter().any(|(n, _)| n.starts_with("seeds/")),
        "no seeds for the fuzz target {target}: run scripts/fuzz seeds"
    );
    for (name, bytes) in &inputs {
        let accepted = run(bytes);
        let file = name.rsplit('/').next().unwrap_or_default();
        if file.starts_with("ok-") {
            assert!(accepted, "{name} is refused");
        } else if file.starts_with("bad-") {
            assert!(!accepted, "{name} is accepted");
        }
    }
}
