//! Write weir plugins in Rust.
//!
//! A plugin is a type that implements [`Filter`] (keep or drop each event) or
//! [`Transform`] (zero or more events out per event in), exported with one
//! macro. Events are zero-copy views over the batch weir hands the plugin;
//! nothing is decoded that the plugin does not read.
//!
//! ```no_run
//! use weir_sdk::{export_filter, Config, Event, Filter, Result};
//!
//! struct ErrorsOnly;
//!
//! impl Filter for ErrorsOnly {
//!     fn new(_config: &Config) -> Result<Self> {
//!         Ok(ErrorsOnly)
//!     }
//!     fn keep(&mut self, event: &Event) -> Result<bool> {
//!         Ok(event.get_str("level") == Some("error"))
//!     }
//! }
//!
//! export_filter!(ErrorsOnly);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and point a
//! pipeline's `plugin = "..."` at the `.wasm` file. Test the logic natively
//! with [`testing`].

// The generated bindings name their runtime by crate path.
extern crate self as weir_sdk;

mod config;
mod error;
pub mod host;
pub mod testing;

pub use config::Config;
pub use error::{Error, Result};
pub use weir_layout::{
    Array, ArrayBuilder, BatchBuf, EventKind, LogBuilder, Metric, MetricKind, MetricValue, Object,
    ObjectBuilder, Value,
};

/// One event of the batch being processed: read fields with
/// [`Event::get`], [`Event::get_str`] and [`Event::lookup`].
pub type Event<'a> = weir_layout::EventView<'a>;

/// A plugin that keeps or drops events.
///
/// ```
/// use weir_sdk::{Config, Event, Filter, Result};
///
/// /// Keeps events whose `status` is at least `min_status`.
/// struct StatusAtLeast(i64);
///
/// impl Filter for StatusAtLeast {
///     fn new(config: &Config) -> Result<Self> {
///         Ok(StatusAtLeast(config.parse_or("min_status", 500)?))
///     }
///     fn keep(&mut self, event: &Event) -> Result<bool> {
///         let status = event.get("status").and_then(|v| v.as_i64());
///         Ok(status.ok_or("no integer `status` field")? >= self.0)
///     }
/// }
/// ```
pub trait Filter: Sized + 'static {
    /// Builds the filter from the pipeline's `config` table.
    fn new(config: &Config) -> Result<Self>;

    /// Whether to keep `event`. An `Err` is reported for this event only;
    /// the pipeline's `on_error` decides what happens to it.
    ///
    /// Called once per event from the SDK's batch loop. For a filter that
    /// must be fast, mark it `#[inline(always)]` and build error messages in
    /// a `#[cold]` function: in a Wasm guest a call per event can cost more
    /// than the check itself (`plugins/level-filter` does both).
    fn keep(&mut self, event: &Event) -> Result<bool>;

    /// Called after each batch: the place to report counters once per batch.
    fn end_batch(&mut self) {}
}

/// A plugin that turns each event into zero or more events.
///
/// ```
/// use weir_sdk::{Config, Event, Output, Result, Transform};
///
/// /// Adds `env = "<configured>"` to every event.
/// struct AddEnv(String);
///
/// impl Transform for AddEnv {
///     fn new(config: &Config) -> Result<Self> {
///         Ok(AddEnv(config.require("env")?.to_string()))
///     }
///     fn transform(&mut self, event: &Event, out: &mut Output) -> Result<()> {
///         out.log(event.timestamp())
///             .fields_from(event.object().ok_or("not a log event")?, |_| false)
///             .field("env", self.0.as_str())
///             .finish()?;
///         Ok(())
///     }
/// }
/// ```
pub trait Transform: Sized + 'static {
    /// Builds the transform from the pipeline's `config` table.
    fn new(config: &Config) -> Result<Self>;

    /// Writes the events that `event` becomes into `out` (none to drop it).
    fn transform(&mut self, event: &Event, out: &mut Output) -> Result<()>;

    /// Called after each batch: the place to report counters once per batch.
    fn end_batch(&mut self) {}
}

/// Where a [`Transform`] writes its events.
pub struct Output {
    batch: BatchBuf,
}

impl Output {
    /// Passes `event` on unchanged (a byte copy, nothing re-encoded).
    pub fn emit(&mut self, event: &Event) -> Result<()> {
        Ok(self.batch.push_raw(event.raw())?)
    }

    /// Starts a new log event; call `finish()` on it to emit it.
    pub fn log(&mut self, timestamp: i64) -> LogBuilder<'_> {
        self.batch.log(timestamp)
    }

    /// Emits a metric event.
    pub fn metric(
        &mut self,
        timestamp: i64,
        name: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: &MetricValue,
    ) -> Result<()> {
        Ok(self
            .batch
            .push_metric(timestamp, name, kind, labels, value)?)
    }
}

/// Generated bindings and the glue the export macros expand to. Not for
/// plugin authors: implement [`Filter`] or [`Transform`] instead.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    pub mod filter {
        wit_bindgen::generate!({
            world: "filter",
            path: "../../wit",
            runtime_path: "weir_sdk::__private::wit_bindgen::rt",
            default_bindings_module: "weir_sdk::__private::filter",
            pub_export_macro: true,
            export_macro_name: "__export_filter_world",
        });
    }

    pub mod transform {
        wit_bindgen::generate!({
            world: "transform",
            path: "../../wit",
            runtime_path: "weir_sdk::__private::wit_bindgen::rt",
            default_bindings_module: "weir_sdk::__private::transform",
            pub_export_macro: true,
            export_macro_name: "__export_transform_world",
        });
    }

    use crate::{Config, Filter, Output, Transform};
    use std::cell::RefCell;
    use weir_layout::{BatchBuf, BatchView, Bitmap};

    /// Per-event errors as `(index, message)`.
    pub type Errors = Vec<(u32, String)>;

    pub fn init<P>(
        slot: &RefCell<Option<P>>,
        config: Vec<(String, String)>,
        new: fn(&Config) -> crate::Result<P>,
    ) -> Result<(), String> {
        let plugin = new(&Config::new(config)).map_err(|e| e.to_string())?;
        *slot.borrow_mut() = Some(plugin);
        Ok(())
    }

    fn with<P, R>(
        slot: &RefCell<Option<P>>,
        f: impl FnOnce(&mut P) -> Result<R, String>,
    ) -> Result<R, String> {
        let mut guard = slot.borrow_mut();
        f(guard.as_mut().ok_or("called before init")?)
    }

    /// Runs a filter over a batch: the keep-bitmap and per-event errors.
    pub fn filter<F: Filter>(
        slot: &RefCell<Option<F>>,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Errors), String> {
        with(slot, |f| filter_batch(f, bytes))
    }

    pub fn filter_batch<F: Filter>(f: &mut F, bytes: &[u8]) -> Result<(Vec<u8>, Errors), String> {
        let batch = BatchView::new(bytes).map_err(|e| e.to_string())?;
        let mut keep = Bitmap::with_len(batch.len());
        let mut errors = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            let event = event.map_err(|e| format!("event {i}: {e}"))?;
            match f.keep(&event) {
                Ok(true) => keep.set(i),
                Ok(false) => {}
                Err(e) => errors.push((i as u32, e.to_string())),
            }
        }
        f.end_batch();
        Ok((keep.into_bytes(), errors))
    }

    /// Runs a transform over a batch: the output batch and per-event errors.
    pub fn transform<T: Transform>(
        slot: &RefCell<Option<T>>,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Errors), String> {
        with(slot, |t| transform_batch(t, bytes))
    }

    pub fn transform_batch<T: Transform>(
        t: &mut T,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Errors), String> {
        let batch = BatchView::new(bytes).map_err(|e| e.to_string())?;
        let mut out = Output {
            batch: BatchBuf::with_capacity(batch.len(), bytes.len()),
        };
        let mut errors = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            let event = event.map_err(|e| format!("event {i}: {e}"))?;
            let mark = out.batch.len();
            if let Err(e) = t.transform(&event, &mut out) {
                // An event that failed contributes no partial output.
                let _ = out.batch.split_off(mark);
                errors.push((i as u32, e.to_string()));
            }
        }
        t.end_batch();
        Ok((out.batch.into_bytes(), errors))
    }
}

/// Exports a [`Filter`] as the plugin's `filter` world, once per plugin:
/// `export_filter!(ErrorsOnly);` (see the crate example).
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::filter as __b;
            struct __WeirFilter;
            thread_local! {
                static __STATE: ::core::cell::RefCell<Option<$ty>> =
                    const { ::core::cell::RefCell::new(None) };
            }
            impl __b::Guest for __WeirFilter {
                fn init(config: __b::Config) -> Result<(), String> {
                    __STATE.with(|s| $crate::__private::init(s, config, <$ty as $crate::Filter>::new))
                }
                fn filter(events: __b::Batch) -> Result<__b::Verdict, String> {
                    let (keep, errors) = __STATE.with(|s| $crate::__private::filter(s, &events))?;
                    let errors = errors
                        .into_iter()
                        .map(|(index, message)| __b::weir::plugin::types::EventError { index, message })
                        .collect();
                    Ok(__b::Verdict { keep, errors })
                }
            }
            $crate::__private::filter::__export_filter_world!(__WeirFilter with_types_in $crate::__private::filter);
        };
    };
}

/// Exports a [`Transform`] as the plugin's `transform` world, once per
/// plugin: `export_transform!(AddEnv);` (see [`Transform`]).
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::transform as __b;
            struct __WeirTransform;
            thread_local! {
                static __STATE: ::core::cell::RefCell<Option<$ty>> =
                    const { ::core::cell::RefCell::new(None) };
            }
            impl __b::Guest for __WeirTransform {
                fn init(config: __b::Config) -> Result<(), String> {
                    __STATE.with(|s| $crate::__private::init(s, config, <$ty as $crate::Transform>::new))
                }
                fn transform(events: __b::Batch) -> Result<__b::Output, String> {
                    let (events, errors) = __STATE.with(|s| $crate::__private::transform(s, &events))?;
                    let errors = errors
                        .into_iter()
                        .map(|(index, message)| __b::weir::plugin::types::EventError { index, message })
                        .collect();
                    Ok(__b::Output { events, errors })
                }
            }
            $crate::__private::transform::__export_transform_world!(__WeirTransform with_types_in $crate::__private::transform);
        };
    };
}
