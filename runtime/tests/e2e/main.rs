//! Every end-to-end test of weir in one binary: each links wasmtime,
//! DataFusion and librdkafka, so one binary is linked once instead of once a
//! file. The tests run the real `weir` binary (`CARGO_BIN_EXE_weir`), with
//! the real plugins and the real agents and services each module names.
//!
//! Run one module with its path: `cargo test --release -p weir --test e2e kafka::`.

mod common;

mod agents;
mod alerts;
mod api;
mod cli;
mod http_sinks;
mod kafka;
mod languages;
mod listeners;
mod pipeline;
mod reload;
mod sandbox;
mod sql;
