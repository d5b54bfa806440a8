//! What the host gives each instance: the `host` imports, a WASI context
//! that grants nothing (no files, sockets, env or args), and a memory cap.

use super::bindings::{self, Level};
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Mutex;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// Counters a plugin keeps through `counter-add`, shared by its instances.
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    pub fn add(&self, name: &str, delta: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(name) {
            Some(v) => *v = v.saturating_add(delta),
            None => {
                m.insert(name.to_string(), delta);
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An instance's memory cap (`memory_limit_mb`). Growing past it traps,
/// and the refusal is remembered: the call's failure is then reported as
/// memory, not as a trap, without reading the trap's text.
pub struct MemoryLimit {
    max: usize,
    refused: bool,
}

impl MemoryLimit {
    /// Whether a growth was refused since the last call; clears it.
    pub fn take_refused(&mut self) -> bool {
        std::mem::take(&mut self.refused)
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max || maximum.is_some_and(|m| desired > m) {
            self.refused = true;
            let what = format!("forcing trap when growing memory to {desired} bytes");
            return Err(wasmtime::Error::msg(what));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("forcing a memory growth failure to be a trap"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            let what = format!("forcing trap when growing table to {desired} elements");
            return Err(wasmtime::Error::msg(what));
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("forcing a table growth failure to be a trap"))
    }
}

pub struct HostState {
    pub plugin: String,
    pub counters: std::sync::Arc<Counters>,
    pub limits: MemoryLimit,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn new(plugin: &super::Plugin) -> Result<Self> {
        // Guests built for wasm32-wasip2 import WASI even when they use none
        // of it; link it with nothing granted but what the pipeline names.
        // Plugin stderr (panic messages) goes to weir's stderr; stdout is
        // closed so it cannot corrupt output.
        let mut b = WasiCtx::builder();
        b.inherit_stderr()
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in &plugin.limits.read_dirs {
            let guest = dir.to_string_lossy();
            b.preopened_dir(dir, guest, FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("allow_read: cannot open {}: {e}", dir.display()))?;
        }
        let connect = plugin.limits.connect.clone();
        b.allow_tcp(!connect.is_empty());
        b.socket_addr_check(move |addr, use_| {
            let ok = match use_ {
                SocketAddrUse::TcpConnect => connect.contains(&addr),
                // The implicit bind a connect performs first.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            Box::pin(async move { ok })
        });
        let wasi = b.build();
        Ok(HostState {
            plugin: plugin.name.clone(),
            counters: plugin.counters.clone(),
            limits: MemoryLimit {
                max: plugin.limits.memory_bytes,
                refused: false,
            },
            wasi,
            table: ResourceTable::new(),
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.counters.add(&name, delta);
    }
}

impl bindings::filter::weir::plugin::types::Host for HostState {}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker).map_err(anyhow::Error::from)?;
    bindings::filter::Filter::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(anyhow::Error::from)?;
    Ok(())
}
