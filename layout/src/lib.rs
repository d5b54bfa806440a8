//! weir's packed event batch layout, shared by the host and the guest SDKs.
//!
//! Events cross the Wasm boundary as one byte buffer per batch rather than as
//! typed WIT records: one copy per batch instead of one guest allocation per
//! string. The host decodes input straight into this layout, so handing a batch
//! to a plugin is a single `memcpy`. The format is specified in `wit/LAYOUT.md`.
//!
//! ```
//! use weir_layout::{BatchBuf, Value};
//!
//! let mut batch = BatchBuf::new();
//! batch
//!     .log(1_700_000_000_000_000_000)
//!     .field("level", "error")
//!     .field("latency_ms", 250)
//!     .finish()
//!     .unwrap();
//!
//! let event = batch.iter().next().unwrap();
//! assert_eq!(event.get_str("level"), Some("error"));
//! assert_eq!(event.get("latency_ms"), Some(Value::Int(250)));
//! ```

mod batch;
mod bitmap;
mod read;
pub mod spec;
mod words;
mod write;

pub use batch::BatchBuf;
pub use bitmap::Bitmap;
pub use read::{Array, BatchView, EventView, Fields, Metric, MetricValue, Object, Value};
pub use spec::{EventKind, MetricKind};
pub use write::{ArrayBuilder, Encoder, LogBuilder, Mark, ObjectBuilder};

/// Why bytes are not a valid batch, or why an event could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The buffer does not start with `WEIR`.
    BadMagic,
    /// A layout version this code does not read.
    UnsupportedVersion(u16),
    /// A length or count points past the end of its buffer.
    Truncated { at: usize },
    /// A byte that is not a known value tag, event kind or metric kind.
    BadTag { at: usize, tag: u8 },
    /// A string that is not UTF-8.
    BadUtf8 { at: usize },
    /// The header count disagrees with the events present.
    CountMismatch { header: u32, found: u32 },
    /// A key longer than 65,535 bytes.
    KeyTooLong(usize),
    /// A string, byte string or container over 4 GiB.
    TooLarge(usize),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::BadMagic => write!(f, "not a weir batch (missing WEIR magic)"),
            LayoutError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "batch layout version {v} is not supported (this build reads 1)"
                )
            }
            LayoutError::Truncated { at } => write!(f, "batch truncated at byte {at}"),
            LayoutError::BadTag { at, tag } => write!(f, "unknown tag {tag} at byte {at}"),
            LayoutError::BadUtf8 { at } => write!(f, "invalid UTF-8 in string at byte {at}"),
            LayoutError::CountMismatch { header, found } => {
                write!(f, "header says {header} events, found {found}")
            }
            LayoutError::KeyTooLong(n) => write!(f, "key of {n} bytes exceeds 65535"),
            LayoutError::TooLarge(n) => write!(f, "value of {n} bytes exceeds 4 GiB"),
        }
    }
}

impl std::error::Error for LayoutError {}
