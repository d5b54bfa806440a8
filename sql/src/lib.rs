//! SQL over live event streams, on Apache DataFusion.
//!
//! A query is ordinary DataFusion SQL over a table of events, with the
//! window written in the SQL: `tumble(interval '1 minute')`,
//! `hop(interval '10 seconds', interval '1 minute')` or
//! `session(interval '30 seconds')` in the `GROUP BY`. DataFusion plans it
//! once; weir runs the plan incrementally: each batch of events is filtered,
//! projected and folded into per-window partial aggregates, and a window's
//! rows come out once, when the watermark passes its end.
//!
//! ```
//! use weir_layout::BatchBuf;
//! use weir_sql::{Query, QueryOptions};
//!
//! let sql = "SELECT window_start, service, count(*) AS errors
//!            FROM logs WHERE level = 'error'
//!            GROUP BY tumble(interval '1 minute'), service";
//! let opts = QueryOptions { tables: vec!["logs".into()], ..Default::default() };
//! let mut query = Query::new(sql, opts).unwrap();
//!
//! let mut batch = BatchBuf::new();
//! for (secs, service, level) in [(1, "api", "error"), (2, "api", "error"), (3, "db", "info")] {
//!     batch.log(secs * 1_000_000_000).field("service", service).field("level", level).finish().unwrap();
//! }
//! assert!(query.push(&batch).unwrap().rows.is_empty()); // the minute is still open
//! let rows = query.finish().unwrap();                   // input ended: it closes
//! assert_eq!(rows[0].batch.num_rows(), 1);
//! ```

mod aggregate;
mod condition;
mod interval;
mod plan;
mod query;
pub mod schema;
mod to_arrow;
mod to_events;
pub mod window;

pub use condition::{check_syntax, Condition};
pub use interval::parse_duration;
pub use query::{batches, Pushed, Query, QueryOptions, QueryStats, Rows};
pub use to_arrow::Converter;
pub use to_events::{append_rows, rfc3339};
pub use window::{tables, Window};

pub use arrow;
pub use datafusion;

/// Why a query cannot run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse or is not one SELECT.
    #[error("{0}")]
    Sql(String),
    /// A declared schema is wrong, or the events clash with reserved names.
    #[error("{0}")]
    Schema(String),
    /// Valid SQL that does not run over a stream (joins, aggregates without
    /// a window, ...).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The query names a column that the events so far did not have.
    pub fn is_unknown_column(&self) -> bool {
        use datafusion::common::SchemaError;
        match self {
            Error::DataFusion(e) => matches!(
                e.find_root(),
                datafusion::error::DataFusionError::SchemaError(s, _)
                    if matches!(**s, SchemaError::FieldNotFound { .. })
            ),
            _ => false,
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::DataFusion(Box::new(e))
    }
}
