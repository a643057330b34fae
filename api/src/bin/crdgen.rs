//! Writes the CustomResourceDefinitions generated from the Rust types to `crds/` and to
//! the Helm chart's `charts/eventcast/crds/` (`cargo run -p eventcast-api --bin crdgen`),
//! or checks that the checked-in files are current (`--check`, exit status 1 when they
//! differ).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stale = Vec::new();
    for dir in [root.join("crds"), root.join("charts/eventcast/crds")] {
        for (file, yaml) in eventcast_api::crd::generated_crds() {
            let path = dir.join(&file);
            if check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                    stale.push(path.display().to_string());
                }
            } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml)) {
                eprintln!("writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            } else {
                println!("wrote {}", path.display());
            }
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "out of date (run `cargo run -p eventcast-api --bin crdgen`): {}",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}
