//! Where events leave weir. Each sink writes whole batches and flushes after
//! each, so what a sink accepted is on its way out.

pub mod component;
pub mod http;
pub mod kafka;
pub mod prometheus;
pub mod template;
mod writer;

pub use component::{Runner, Sink};
