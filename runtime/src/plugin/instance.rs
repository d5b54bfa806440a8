//! One live plugin instance and the batch call.

use super::bindings::{filter, transform, EventError};
use super::host::HostState;
use super::{Plugin, PluginKind};
use anyhow::{anyhow, Result};
use wasmtime::Store;
use weir_layout::BatchBuf;

enum World {
    Filter(filter::Filter),
    Transform(transform::Transform),
}

/// An instantiated, initialised plugin with its own store.
pub struct Instance {
    store: Store<HostState>,
    world: World,
}

/// What a plugin answered for one batch.
#[derive(Debug)]
pub enum Reply {
    /// A filter's keep-bitmap.
    Keep(Vec<u8>),
    /// A transform's output, validated.
    Output(BatchBuf),
}

/// Why a batch call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err`; the instance is fine.
    #[error("plugin returned an error: {0}")]
    Returned(String),
    /// The plugin trapped or broke the contract; the instance must be rebuilt.
    #[error("{0}")]
    Broken(String),
}

impl Instance {
    pub(super) fn new(plugin: &Plugin) -> Result<Self> {
        let mut store = Store::new(&plugin.engine.engine, HostState::new(plugin));
        store.limiter(|s| &mut s.limits);
        let linker: &wasmtime::component::Linker<HostState> = &plugin.engine.linker;
        let world = match plugin.kind {
            PluginKind::Filter => World::Filter(
                filter::Filter::instantiate(&mut store, &plugin.component, linker)
                    .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?,
            ),
            PluginKind::Transform => World::Transform(
                transform::Transform::instantiate(&mut store, &plugin.component, linker)
                    .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?,
            ),
        };
        let init = match &world {
            World::Filter(w) => w.call_init(&mut store, &plugin.config),
            World::Transform(w) => w.call_init(&mut store, &plugin.config),
        };
        match init {
            Ok(Ok(())) => Ok(Instance { store, world }),
            Ok(Err(msg)) => Err(anyhow!("init refused the config: {msg}")),
            Err(trap) => Err(anyhow!("init trapped: {trap:#}")),
        }
    }

    /// Runs one batch. Per-event errors come back beside the reply.
    pub fn call(&mut self, batch: &BatchBuf) -> Result<(Reply, Vec<EventError>), CallError> {
        let bytes = batch.as_vec();
        match &self.world {
            World::Filter(w) => {
                let v = settle(w.call_filter(&mut self.store, bytes))?;
                Ok((Reply::Keep(v.keep), v.errors))
            }
            World::Transform(w) => {
                let o = settle(w.call_transform(&mut self.store, bytes))?;
                let out = BatchBuf::from_bytes(o.events).map_err(|e| {
                    CallError::Broken(format!("plugin returned a malformed batch: {e}"))
                })?;
                Ok((Reply::Output(out), o.errors))
            }
        }
    }
}

fn settle<T>(r: wasmtime::Result<Result<T, String>>) -> Result<T, CallError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(CallError::Returned(msg)),
        Err(trap) => Err(CallError::Broken(format!("plugin trapped: {trap:#}"))),
    }
}
