//! Run a plugin's logic natively, without Wasm, in `cargo test`.
//!
//! ```
//! use weir_sdk::{testing, BatchBuf, Config, Event, Filter, Result};
//!
//! struct ErrorsOnly;
//! impl Filter for ErrorsOnly {
//!     fn new(_: &Config) -> Result<Self> { Ok(ErrorsOnly) }
//!     fn keep(&mut self, e: &Event) -> Result<bool> { Ok(e.get_str("level") == Some("error")) }
//! }
//!
//! let mut batch = BatchBuf::new();
//! batch.log(0).field("level", "error").finish().unwrap();
//! batch.log(0).field("level", "info").finish().unwrap();
//! let run = testing::filter::<ErrorsOnly>(&[], &batch).unwrap();
//! assert_eq!(run.kept, [true, false]);
//! ```

use crate::{BatchBuf, Config, Filter, Transform};

/// What a filter decided for each event.
#[derive(Debug)]
pub struct FilterRun {
    pub kept: Vec<bool>,
    /// `(event index, message)` for events that failed.
    pub errors: Vec<(u32, String)>,
}

/// What a transform produced.
#[derive(Debug)]
pub struct TransformRun {
    pub output: BatchBuf,
    pub errors: Vec<(u32, String)>,
}

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Builds `F` from `pairs` and runs it over `batch` as weir would.
pub fn filter<F: Filter>(pairs: &[(&str, &str)], batch: &BatchBuf) -> crate::Result<FilterRun> {
    let mut f = F::new(&config(pairs))?;
    let (bits, errors) = crate::__private::filter_batch(&mut f, batch.as_bytes())?;
    let kept = (0..batch.len())
        .map(|i| weir_layout::Bitmap::get(&bits, i))
        .collect();
    Ok(FilterRun { kept, errors })
}

/// Builds `T` from `pairs` and runs it over `batch` as weir would.
pub fn transform<T: Transform>(
    pairs: &[(&str, &str)],
    batch: &BatchBuf,
) -> crate::Result<TransformRun> {
    let mut t = T::new(&config(pairs))?;
    let (bytes, errors) = crate::__private::transform_batch(&mut t, batch.as_bytes())?;
    Ok(TransformRun {
        output: BatchBuf::from_bytes(bytes)?,
        errors,
    })
}
