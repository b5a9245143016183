//! The committed schemas under `schemas/` must be exactly what the code generates.
//! To rewrite them after changing a config type: `UPDATE_SCHEMAS=1 cargo test --test schemas`.

use find_workers_limit::config::SchemaKind;

#[test]
fn schemas_match_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut drifted = Vec::new();
    for kind in [
        SchemaKind::Provider,
        SchemaKind::Scenario,
        SchemaKind::Result,
    ] {
        let path = dir.join(kind.file_name());
        let generated = kind.generate();
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if generated != committed {
            if update {
                std::fs::write(&path, &generated).unwrap();
            } else {
                let line = generated
                    .lines()
                    .zip(committed.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| generated.lines().count().min(committed.lines().count()));
                drifted.push(format!(
                    "schemas/{} differs from the code from line {}:\n  generated: {}\n  committed: {}",
                    kind.file_name(),
                    line + 1,
                    generated.lines().nth(line).unwrap_or("(end of file)"),
                    committed.lines().nth(line).unwrap_or("(end of file)"),
                ));
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "{}\n\nRegenerate with: UPDATE_SCHEMAS=1 cargo test --test schemas, then rebuild and commit schemas/",
        drifted.join("\n")
    );
}

#[test]
fn committed_schemas_compile_as_json_schema() {
    for kind in [
        SchemaKind::Provider,
        SchemaKind::Scenario,
        SchemaKind::Result,
    ] {
        let v: serde_json::Value = serde_json::from_str(kind.committed()).unwrap();
        jsonschema::options()
            .build(&v)
            .unwrap_or_else(|e| panic!("{}: {e}", kind.file_name()));
    }
}
