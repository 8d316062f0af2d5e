//! Every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`
//! through its target, under plain `cargo test`: what the fuzzer once found
//! stays checked without `cargo fuzz`.
//!
//! `write_seed_corpus` (ignored) rewrites the seed files:
//! `cargo test -p logbook-testkit --test corpus -- --ignored write_seed_corpus`.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use logbook_testkit::{TARGETS, seeds, target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `<fuzz>/<kind>/<target>/`, by target, skipping dot files
/// (such as `.gitkeep`) and README files.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let root = fuzz_dir().join(kind);
    let mut out = Vec::new();
    let Ok(dirs) = fs::read_dir(&root) else {
        return out;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            target(&name).is_some(),
            "{} names no fuzz target",
            dir.display()
        );
        for file in fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let file_name = path.file_name().unwrap().to_string_lossy();
            if path.is_file() && !file_name.starts_with('.') && !file_name.starts_with("README") {
                out.push((name.clone(), path));
            }
        }
    }
    out.sort();
    out
}

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn run_all(kind: &str) -> usize {
    let inputs = inputs(kind);
    let mut failures = Vec::new();
    for (name, path) in &inputs {
        let f = target(name).unwrap();
        let data = fs::read(path).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
            failures.push(format!("{}: {}", path.display(), message(&*panic)));
        }
    }
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
    inputs.len()
}

#[test]
fn every_corpus_file_passes_its_target() {
    let n = run_all("corpus");
    assert!(n > 0, "no corpus found under {}", fuzz_dir().display());
}

#[test]
fn every_regression_file_passes_its_target() {
    run_all("regressions");
}

#[test]
fn every_target_has_a_seed_corpus() {
    let inputs = inputs("corpus");
    for (name, _) in TARGETS {
        let n = inputs.iter().filter(|(t, _)| t == name).count();
        assert!(n >= 3, "fuzz/corpus/{name} holds {n} files");
    }
}

/// The generated seeds pass too (the committed ones may be older).
#[test]
fn generated_seeds_pass() {
    for (name, f) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for (file, data) in seeds {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
                panic!("seed {name}/{file}: {}", message(&*panic));
            }
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus: run by hand to refresh the seeds"]
fn write_seed_corpus() {
    for (name, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        fs::create_dir_all(&dir).unwrap();
        for (file, data) in seeds(name) {
            fs::write(dir.join(file), data).unwrap();
        }
    }
}
