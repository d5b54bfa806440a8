//! The running pipeline: components wired by bounded channels.
//!
//! Every component runs on its own thread. Sources read and decode; Wasm
//! transforms are CPU-bound calls; sinks write. Threads keep that work off any
//! async executor and make each component's pace visible to its neighbours
//! through the channels alone. Shutdown flows with the data: sources stop,
//! drop their senders, and each component ends when its input is drained.
//! Reloads use the same rule: a replaced component's queue closes once its
//! producers are rewired, and it ends when that queue is drained.

mod ack;
mod build;
mod edge;
mod reload;

pub use build::{build, limits, Built, Running, Snapshot};
pub use edge::{drain, Ack, Batch, Closed, Output, Rx, Shutdown, Stats, Tx, WeakOutput};
pub use reload::Swap;
