//! Builds the workspace's WebAssembly components (`wasm32-wasip2`) from a build script.
//!
//! The engine embeds the mock provider, and the integration tests load the real and hostile
//! plugins; both need the components built before they compile. Doing it here, from build
//! scripts, means `cargo build` and `cargo test` on a fresh clone need no manual step: this
//! crate installs the target with rustup when it is missing and runs a nested cargo in its own
//! target directory (`target/wasm`), so it never waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables of the outer build that must not reach the nested wasm build.
const SCRUBBED: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_NAME",
];

/// The target every provider component is built for.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile (defined in the workspace manifest) used for components.
pub const PROFILE: &str = "wasm";

/// The workspace root, found from the calling build script's manifest directory.
pub fn workspace_root(manifest_dir: &Path) -> PathBuf {
    let mut dir = manifest_dir.to_path_buf();
    loop {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.contains("[workspace]")
        {
            return dir;
        }
        if !dir.pop() {
            panic!("no workspace root above {}", manifest_dir.display());
        }
    }
}

/// Where built components land: `<root>/target/wasm/wasm32-wasip2/wasm/<crate_name>.wasm`.
pub fn output_dir(root: &Path) -> PathBuf {
    root.join("target").join("wasm").join(TARGET).join(PROFILE)
}

/// The file name cargo gives a package's component (dashes become underscores).
pub fn component_file(package: &str) -> String {
    format!("{}.wasm", package.replace('-', "_"))
}

fn target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
}

fn ensure_target() {
    if target_installed() {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed ({other:?}); \
             install it and build again"
        ),
    }
}

/// Builds `packages` for `wasm32-wasip2` and returns the directory holding the components.
/// Call from a build script; it prints the `rerun-if-changed` lines for the sources involved.
pub fn build(packages: &[&str]) -> PathBuf {
    build_with(packages, &[])
}

/// Like [`build`], plus `(package, example)` pairs built as components into `<dir>/examples/`.
pub fn build_with(packages: &[&str], examples: &[(&str, &str)]) -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    let root = workspace_root(&manifest_dir);
    for dir in ["wit", "sdk", "providers", "tests/plugins"] {
        let path = root.join(dir);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    // The wasm profile lives in the workspace manifest.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    ensure_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(root.join("target").join("wasm"));
    for p in packages {
        cmd.args(["-p", p]);
    }
    let mut example_cmds = Vec::new();
    for (package, example) in examples {
        example_cmds.push(vec![
            "-p".to_string(),
            package.to_string(),
            "--example".to_string(),
            example.to_string(),
        ]);
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .expect("failed to run cargo for the wasm build");
    if !output.status.success() {
        panic!(
            "building the wasm components {packages:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for extra in example_cmds {
        let mut ex = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        ex.current_dir(&root)
            .args(["build", "--target", TARGET, "--profile", PROFILE])
            .arg("--target-dir")
            .arg(root.join("target").join("wasm"))
            .args(&extra);
        for (key, _) in std::env::vars() {
            if SCRUBBED.contains(&key.as_str()) {
                ex.env_remove(&key);
            }
        }
        let out = ex
            .output()
            .expect("failed to run cargo for the wasm example build");
        if !out.status.success() {
            panic!(
                "building the wasm example {extra:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let dir = output_dir(&root);
    for p in packages {
        let file = dir.join(component_file(p));
        assert!(
            file.exists(),
            "cargo reported success but {} is missing",
            file.display()
        );
    }
    dir
}

/// Builds `package` once more as a variant: with `envs` set for the compiler (read by the crate
/// with `option_env!`, e.g. a version string), in its own target directory
/// (`target/wasm-variants/<variant>`) so that it never overwrites or invalidates the ordinary
/// build. Returns the path of the variant's component. Call from a build script.
pub fn build_variant(package: &str, variant: &str, envs: &[(&str, &str)]) -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    let root = workspace_root(&manifest_dir);
    for dir in ["wit", "sdk", "providers"] {
        let path = root.join(dir);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    ensure_target();
    let target_dir = root.join("target").join("wasm-variants").join(variant);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let output = cmd
        .output()
        .expect("failed to run cargo for the wasm variant build");
    if !output.status.success() {
        panic!(
            "building the wasm variant {variant} of {package} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(component_file(package));
    assert!(
        file.exists(),
        "cargo reported success but {} is missing",
        file.display()
    );
    file
}
