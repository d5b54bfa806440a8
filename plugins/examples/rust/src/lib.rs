//! Keeps events whose `level` is `error` (or the configured `level`).

use weir_sdk::{export_filter, Config, Event, Filter, Result};

struct KeepErrors {
    level: String,
}

impl Filter for KeepErrors {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["level"])?;
        Ok(KeepErrors {
            level: config.get_or("level", "error").to_string(),
        })
    }

    fn keep(&mut self, event: &Event) -> Result<bool> {
        Ok(event.get_str("level") == Some(self.level.as_str()))
    }
}

export_filter!(KeepErrors);
