//! Stages between sources and sinks. Today: Wasm plugins.

pub mod wasm;
