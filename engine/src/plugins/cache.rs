//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds; loading a precompiled
//! artifact takes a few. The key is the sha256 of the component bytes plus wasmtime's
//! compatibility hash of this engine (version and compiler settings), so an engine upgrade never
//! picks up stale code. Each entry starts with a header holding the sha256 of the artifact, which
//! is verified before deserializing: wasmtime trusts precompiled code blindly, so a truncated or
//! tampered file must never reach it. Any mismatch falls back to compiling and rewriting the entry.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::LoadError;

const MAGIC: &[u8] = b"TGPCWASM1\n";
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// A compiled component and where it came from.
pub struct Compiled {
    pub component: Component,
    pub from_cache: bool,
}

/// sha256 hex of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entry_path(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let compat = hasher.finish();
    dir.join(format!("{digest}-{compat:016x}.cwasm"))
}

/// Compiles `bytes` (whose sha256 hex is `digest`), through the cache in `dir` if any.
/// Blocking: call from a blocking thread.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    dir: Option<&Path>,
) -> Result<Compiled, LoadError> {
    let Some(dir) = dir else {
        return compile_fresh(engine, bytes).map(|component| Compiled {
            component,
            from_cache: false,
        });
    };
    let path = entry_path(dir, engine, digest);
    match read_verified(&path) {
        Ok(Some(entry)) => {
            let artifact = &entry[HEADER_LEN..];
            // SAFETY: `Component::deserialize` runs the artifact's machine code without
            // validating it. The artifact is one this host wrote itself (the file name carries
            // the engine's compatibility hash) and its sha256 was checked just above against the
            // header written with it, on the very bytes handed to wasmtime (read into memory, so
            // the file cannot change between the check and the use). The cache directory must be
            // writable only by the operator, like the binary itself.
            match unsafe { Component::deserialize(engine, artifact) } {
                Ok(component) => {
                    return Ok(Compiled {
                        component,
                        from_cache: true,
                    });
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cached component does not deserialize; recompiling")
                }
            }
        }
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "cached component rejected; recompiling")
        }
    }
    let artifact = engine
        .precompile_component(bytes)
        .map_err(|e| LoadError::Compile {
            message: format!("{e:#}"),
        })?;
    // SAFETY: these bytes were produced by `precompile_component` on this engine just now.
    let component =
        unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| LoadError::Compile {
            message: format!("{e:#}"),
        })?;
    if let Err(e) = write_atomic(dir, &path, &artifact) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache entry");
    }
    Ok(Compiled {
        component,
        from_cache: false,
    })
}

fn compile_fresh(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    Component::new(engine, bytes).map_err(|e| LoadError::Compile {
        message: format!("{e:#}"),
    })
}

/// Reads an entry and returns it whole (artifact from `HEADER_LEN` on) if its checksum holds;
/// `Ok(None)` if absent.
fn read_verified(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    if data.len() < HEADER_LEN || !data.starts_with(MAGIC) || data[HEADER_LEN - 1] != b'\n' {
        return Err("bad header".into());
    }
    let expected = &data[MAGIC.len()..HEADER_LEN - 1];
    let artifact = &data[HEADER_LEN..];
    if sha256_hex(artifact).as_bytes() != expected {
        return Err("checksum mismatch".into());
    }
    Ok(Some(data))
}

fn write_atomic(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(sha256_hex(artifact).as_bytes())?;
        file.write_all(b"\n")?;
        file.write_all(artifact)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
