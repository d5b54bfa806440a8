//! Constants of layout version 1. `wit/LAYOUT.md` is the prose form.

/// First four bytes of every batch.
pub const MAGIC: [u8; 4] = *b"WEIR";
/// The layout version this crate reads and writes.
pub const VERSION: u16 = 1;
/// Bytes before the first event: magic, version, flags, count.
pub const HEADER_LEN: usize = 12;
/// Offset of the u32 event count in the header.
pub const COUNT_OFFSET: usize = 8;

/// Value tags.
pub mod tag {
    pub const NULL: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const STR: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const ARRAY: u8 = 7;
    pub const OBJECT: u8 = 8;
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// A timestamp and a tree of fields.
    Log = 0,
    /// Name, labels, kind and value(s).
    Metric = 1,
}

impl EventKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(EventKind::Log),
            1 => Some(EventKind::Metric),
            _ => None,
        }
    }
}

/// The kind of a metric event, as in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
    Summary = 3,
}

impl MetricKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            3 => Some(MetricKind::Summary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}
