//! What weir offers a plugin: its log and the plugin's own counters.
//!
//! ```no_run
//! weir_sdk::host::warn("unknown level `fatal`, keeping the event");
//! weir_sdk::host::counter_add("redacted_emails", 12);
//! ```
//!
//! Outside Wasm (in native unit tests) log lines go to stderr and counters
//! are dropped.

#[cfg(target_arch = "wasm32")]
use crate::__private::filter::weir::plugin::host as imports;

#[cfg(target_arch = "wasm32")]
fn log(level: imports::Level, message: &str) {
    imports::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn log(level: &str, message: &str) {
    eprintln!("[plugin {level}] {message}");
}

macro_rules! level_fn {
    ($name:ident, $variant:ident) => {
        #[doc = concat!("Logs `message` at ", stringify!($name), " level.")]
        pub fn $name(message: &str) {
            #[cfg(target_arch = "wasm32")]
            log(imports::Level::$variant, message);
            #[cfg(not(target_arch = "wasm32"))]
            log(stringify!($name), message);
        }
    };
}

level_fn!(trace, Trace);
level_fn!(debug, Debug);
level_fn!(info, Info);
level_fn!(warn, Warn);
level_fn!(error, Error);

/// Adds `delta` to the plugin's counter `name`. Call once per batch with a sum.
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    imports::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, delta);
}
