//! Host bindings generated from `wit/plugin.wit`, one module per world.

pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        with: {
            "weir:plugin/host": super::filter::weir::plugin::host,
            "weir:plugin/types": super::filter::weir::plugin::types,
        },
    });
}

pub use filter::weir::plugin::host::{Host, Level};
pub use filter::weir::plugin::types::EventError;
