//! Embeds every `providers/*.yaml` and `scenarios/*.yaml` in the binary, so adding a
//! built-in vendor or scenario is adding a file (and a user adds a provider at run time
//! with `--providers-dir`, no rebuild at all).

use std::fmt::Write;
use std::path::PathBuf;

fn embed(dir_name: &str, static_name: &str, out_file: &str) {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(dir_name);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    let mut out = format!("/// Built-in {dir_name} files: (file name, text).\npub static {static_name}: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(out_file);
    std::fs::write(dest, out).unwrap();
}

fn main() {
    embed("providers", "BUILTIN_PROVIDERS", "builtin_providers.rs");
    embed("scenarios", "BUILTIN_SCENARIOS", "builtin_scenarios.rs");
}
