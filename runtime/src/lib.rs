//! weir: a stream processor for logs and metrics with WebAssembly plugins.
//!
//! The data path, top to bottom: [`sources`] read bytes and [`codec`] turns
//! them into batches in the packed layout of `weir-layout`; [`transforms`]
//! hand each batch to a Wasm plugin through [`plugin`]; [`sinks`] write what
//! comes out. [`topology`] wires them with bounded channels, and [`config`]
//! is the pipeline file that describes it all.
//!
//! ```no_run
//! use weir::{config::Pipeline, plugin::PluginEngine, topology};
//!
//! let pipeline = Pipeline::load("pipeline.toml".as_ref()).expect("valid pipeline");
//! let engine = PluginEngine::new(PluginEngine::default_cache_dir()).expect("engine");
//! let running = topology::build(&pipeline, &engine).expect("builds").start();
//! running.wait();
//! ```

pub mod alerts;
pub mod api;
pub mod buffers;
pub mod cli;
pub use weir_codec as codec;
pub mod component;
pub mod config;
pub mod plugin;
pub mod sinks;
pub mod sources;
pub mod sql;
pub mod tls;
pub mod topology;
pub mod transforms;

/// Makes ring the TLS crypto provider (for Slack, webhooks, and the CLI's
/// HTTP calls); idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
