//! Compiled components cached on disk, keyed by content and engine.
//!
//! Compiling is 10 ms (Rust) to 18 s (Python) per component; loading a cached
//! artifact is ~1 ms. The key covers the Wasm bytes and the engine's
//! compatibility hash, so a new wasmtime or different settings recompile.

use anyhow::Result;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::Engine;

pub fn compile(engine: &Engine, wasm: &[u8], dir: Option<&Path>) -> Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, wasm).map_err(anyhow::Error::from);
    };
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = Sha256::new()
        .chain_update(wasm)
        .chain_update(engine_hash.finish().to_le_bytes())
        .finalize();
    let file = dir.join(format!("{}.cwasm", hex::encode(&key[..16])));
    if file.exists() {
        // SAFETY: the file was written by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the key), in a directory
        // the user owns. A corrupt file fails to load and is recompiled.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(file = %file.display(), "ignoring unreadable compiled cache entry: {e}")
            }
        }
    }
    let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
    // The cache is an optimisation: failing to write it is not an error.
    if let Err(e) = write_atomic(dir, &file, &component) {
        tracing::debug!(dir = %dir.display(), "cannot cache compiled component: {e}");
    }
    Ok(component)
}

fn write_atomic(dir: &Path, file: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}
