//! One live plugin instance and the batch call.

use super::bindings::{filter, transform, EventError};
use super::host::HostState;
use super::{Metering, Plugin, PluginKind, FUEL_PER_CALL};
use anyhow::{anyhow, Result};
use wasmtime::Store;
use weir_layout::BatchBuf;

/// A plugin's component with its imports resolved, per world.
#[derive(Clone)]
pub(super) enum Pre {
    Filter(filter::FilterPre<HostState>),
    Transform(transform::TransformPre<HostState>),
}

impl Pre {
    pub(super) fn new(
        linker: &wasmtime::component::Linker<HostState>,
        component: &wasmtime::component::Component,
        kind: PluginKind,
    ) -> Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match kind {
            PluginKind::Filter => Pre::Filter(filter::FilterPre::new(pre)?),
            PluginKind::Transform => Pre::Transform(transform::TransformPre::new(pre)?),
        })
    }
}

enum World {
    Filter(filter::Filter),
    Transform(transform::Transform),
}

/// An instantiated, initialised plugin with its own store.
pub struct Instance {
    store: Store<HostState>,
    world: World,
    limits: super::Limits,
    deadline_ticks: u64,
    metering: Metering,
}

/// Deadline for instantiation and `init`, which may load a language runtime.
const INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn ticks(d: std::time::Duration) -> u64 {
    (d.as_millis() / super::EPOCH_TICK.as_millis()).max(1) as u64 + 1
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
    #[error("{message}")]
    Broken { failure: Failure, message: String },
}

/// How an instance broke, for counters and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It ran past its deadline.
    Timeout,
    /// It tried to grow its memory past the cap.
    Memory,
    /// Any other trap: a panic, an out-of-bounds access, `unreachable`.
    Trap,
    /// It returned bytes that are not a valid batch.
    Malformed,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Memory => "memory",
            Failure::Trap => "trap",
            Failure::Malformed => "malformed_output",
        }
    }

    /// What broke a call: `memory_refused` when the limiter refused a
    /// growth during it.
    fn classify(
        e: &wasmtime::Error,
        limits: &super::Limits,
        memory_refused: bool,
    ) -> (Failure, String) {
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt | wasmtime::Trap::OutOfFuel)
        ) {
            let ms = limits.timeout.as_millis();
            (
                Failure::Timeout,
                format!("plugin ran past its {ms} ms deadline (timeout_ms) and was stopped"),
            )
        } else if memory_refused {
            let mb = limits.memory_bytes >> 20;
            (Failure::Memory, format!("plugin tried to grow its memory past {mb} MiB (memory_limit_mb) and was stopped"))
        } else {
            (Failure::Trap, format!("plugin trapped: {e:#}"))
        }
    }
}

impl Instance {
    pub(super) fn new(plugin: &Plugin) -> Result<Self> {
        let mut store = Store::new(&plugin.engine.engine, HostState::new(plugin)?);
        store.limiter(|s| &mut s.limits);
        let metering = plugin.engine.metering;
        match metering {
            Metering::Epoch => store.set_epoch_deadline(ticks(INIT_TIMEOUT)),
            Metering::Fuel => store.set_fuel(FUEL_PER_CALL).map_err(anyhow::Error::from)?,
            Metering::None => {}
        }
        let world = match &plugin.pre {
            Ok(Pre::Filter(pre)) => pre.instantiate(&mut store).map(World::Filter),
            Ok(Pre::Transform(pre)) => pre.instantiate(&mut store).map(World::Transform),
            Err(e) => Err(wasmtime::Error::msg(e.clone())),
        }
        .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?;
        let init = match &world {
            World::Filter(w) => w.call_init(&mut store, &plugin.config),
            World::Transform(w) => w.call_init(&mut store, &plugin.config),
        };
        match init {
            Ok(Ok(())) => Ok(Instance {
                store,
                world,
                limits: plugin.limits.clone(),
                deadline_ticks: ticks(plugin.limits.timeout),
                metering,
            }),
            Ok(Err(msg)) => Err(anyhow!("init refused the config: {msg}")),
            Err(trap) => Err(anyhow!("init trapped: {trap:#}")),
        }
    }

    /// Runs one batch. Per-event errors come back beside the reply.
    pub fn call(&mut self, batch: &BatchBuf) -> Result<(Reply, Vec<EventError>), CallError> {
        let bytes = batch.as_vec();
        match self.metering {
            Metering::Epoch => self.store.set_epoch_deadline(self.deadline_ticks),
            Metering::Fuel => {
                // Refilling cannot fail: fuel is on for this engine.
                let _ = self.store.set_fuel(FUEL_PER_CALL);
            }
            Metering::None => {}
        }
        let limits = &self.limits;
        match &self.world {
            World::Filter(w) => {
                let r = w.call_filter(&mut self.store, bytes);
                let v = settle(r, limits, self.store.data_mut().limits.take_refused())?;
                Ok((Reply::Keep(v.keep), v.errors))
            }
            World::Transform(w) => {
                let r = w.call_transform(&mut self.store, bytes);
                let o = settle(r, limits, self.store.data_mut().limits.take_refused())?;
                let out = BatchBuf::from_bytes(o.events).map_err(|e| CallError::Broken {
                    failure: Failure::Malformed,
                    message: format!("plugin returned a malformed batch: {e}"),
                })?;
                Ok((Reply::Output(out), o.errors))
            }
        }
    }
}

fn settle<T>(
    r: wasmtime::Result<Result<T, String>>,
    limits: &super::Limits,
    memory_refused: bool,
) -> Result<T, CallError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(CallError::Returned(msg)),
        Err(e) => {
            let (failure, message) = Failure::classify(&e, limits, memory_refused);
            Err(CallError::Broken { failure, message })
        }
    }
}
