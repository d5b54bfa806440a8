//! Keeps events whose level is at or above a threshold.
//!
//! ```toml
//! [transforms.warnings]
//! type = "wasm"
//! plugin = "level_filter.wasm"
//! config = { level = "warn", field = "level", missing = "keep" }
//! ```
//!
//! Levels, lowest first: trace, debug, info, notice, warn, error, critical/fatal
//! (case-insensitive, common spellings accepted), or bunyan/pino numbers
//! (10 trace … 60 fatal). `missing` says what to do with an event without the
//! field: `keep` (default), `drop` or `error`. An unknown level is an error
//! for that event, so the pipeline's `on_error` decides.

use weir_sdk::{export_filter, Config, Error, Event, Filter, Result, Value};

/// Severity rank: higher is more severe.
#[inline(always)]
fn rank(level: &str) -> Option<u8> {
    // The spellings almost every logger writes, without normalising.
    match level {
        "info" => Some(2),
        "warn" => Some(4),
        "error" => Some(5),
        "debug" => Some(1),
        _ => rank_any_spelling(level),
    }
}

/// Any other spelling, trimmed and lowercased; out of line so that `rank`
/// stays small enough to inline.
#[inline(never)]
fn rank_any_spelling(level: &str) -> Option<u8> {
    let l = level.trim_ascii();
    let r = match l.len() {
        0..=9 => {
            let mut buf = [0u8; 9];
            let lower = &mut buf[..l.len()];
            lower.copy_from_slice(l.as_bytes());
            lower.make_ascii_lowercase();
            match &*lower {
                b"trace" | b"trc" => 0,
                b"debug" | b"dbg" => 1,
                b"info" | b"inf" | b"information" => 2,
                b"notice" => 3,
                b"warn" | b"warning" | b"wrn" => 4,
                b"error" | b"err" => 5,
                b"critical" | b"crit" | b"fatal" | b"alert" | b"emerg" | b"panic" => 6,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(r)
}

/// bunyan/pino numeric levels.
fn numeric_rank(n: i64) -> Option<u8> {
    match n {
        10 => Some(0),
        20 => Some(1),
        30 => Some(2),
        40 => Some(4),
        50 => Some(5),
        60 => Some(6),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Missing {
    Keep,
    Drop,
    Error,
}

pub struct LevelFilter {
    min: u8,
    field: String,
    missing: Missing,
}

impl Filter for LevelFilter {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["level", "field", "missing"])?;
        let level = config.get_or("level", "info");
        let min = rank(level).ok_or_else(|| {
            format!("level: unknown level `{level}` (use trace, debug, info, notice, warn, error or fatal)")
        })?;
        let missing = match config.get_or("missing", "keep") {
            "keep" => Missing::Keep,
            "drop" => Missing::Drop,
            "error" => Missing::Error,
            other => return Err(format!("missing: `{other}` is not keep, drop or error").into()),
        };
        Ok(LevelFilter {
            min,
            field: config.get_or("field", "level").to_string(),
            missing,
        })
    }

    // Inlined into the SDK's batch loop: in a Wasm guest a call per event
    // costs more than the comparison. Error messages are built out of line.
    #[inline(always)]
    fn keep(&mut self, event: &Event) -> Result<bool> {
        let r = match event.get(&self.field) {
            Some(Value::Str(s)) => match rank(s) {
                Some(r) => r,
                None => return Err(self.error(Some(Value::Str(s)))),
            },
            Some(Value::Int(n)) => match numeric_rank(n) {
                Some(r) => r,
                None => return Err(self.error(Some(Value::Int(n)))),
            },
            Some(other) => return Err(self.error(Some(other))),
            None => {
                return match self.missing {
                    Missing::Keep => Ok(true),
                    Missing::Drop => Ok(false),
                    Missing::Error => Err(self.error(None)),
                }
            }
        };
        Ok(r >= self.min)
    }
}

impl LevelFilter {
    /// Why the field's value (or its absence) is not a level.
    #[cold]
    #[inline(never)]
    fn error(&self, found: Option<Value>) -> Error {
        match found {
            Some(Value::Str(s)) => format!("unknown level `{s}` in `{}`", self.field),
            Some(Value::Int(n)) => format!("unknown numeric level {n}"),
            Some(other) => format!("`{}` is a {}, not a level", self.field, other.type_name()),
            None => format!("no `{}` field", self.field),
        }
        .into()
    }
}

export_filter!(LevelFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{testing, BatchBuf};

    fn batch(levels: &[Option<&str>]) -> BatchBuf {
        let mut b = BatchBuf::new();
        for l in levels {
            let mut e = b.log(0);
            if let Some(l) = l {
                e.field("level", *l);
            }
            e.field("msg", "x").finish().unwrap();
        }
        b
    }

    #[test]
    fn keeps_at_or_above_the_threshold_in_any_spelling() {
        let b = batch(&[
            Some("INFO"),
            Some("warning"),
            Some("Error"),
            Some("debug"),
            Some("fatal"),
        ]);
        let run = testing::filter::<LevelFilter>(&[("level", "warn")], &b).unwrap();
        assert_eq!(run.kept, [false, true, true, false, true]);
        assert!(run.errors.is_empty());
    }

    #[test]
    fn numeric_levels_follow_bunyan() {
        let mut b = BatchBuf::new();
        for n in [30, 40, 50] {
            b.log(0).field("level", n).finish().unwrap();
        }
        let run = testing::filter::<LevelFilter>(&[("level", "error")], &b).unwrap();
        assert_eq!(run.kept, [false, false, true]);
    }

    #[test]
    fn a_level_of_another_type_or_number_is_an_error_naming_it() {
        let mut b = BatchBuf::new();
        b.log(0).field("level", true).finish().unwrap();
        b.log(0).field("level", 35).finish().unwrap();
        b.log(0).field("level", " WARNING ").finish().unwrap();
        let run = testing::filter::<LevelFilter>(&[("level", "warn")], &b).unwrap();
        assert_eq!(
            run.errors,
            [
                (0, "`level` is a bool, not a level".to_string()),
                (1, "unknown numeric level 35".to_string())
            ]
        );
        assert!(run.kept[2], "a padded upper-case spelling is still a level");
    }

    #[test]
    fn missing_and_unknown_levels_follow_the_config() {
        let b = batch(&[None, Some("loud"), Some("error")]);
        let keep = testing::filter::<LevelFilter>(&[("level", "error")], &b).unwrap();
        assert_eq!(keep.kept, [true, false, true]);
        assert_eq!(
            keep.errors,
            [(1, "unknown level `loud` in `level`".to_string())]
        );
        let err = testing::filter::<LevelFilter>(&[("level", "error"), ("missing", "error")], &b)
            .unwrap();
        assert_eq!(err.errors[0], (0, "no `level` field".to_string()));
        let drop = testing::filter::<LevelFilter>(&[("missing", "drop")], &b).unwrap();
        assert!(!drop.kept[0]);
    }

    #[test]
    fn a_bad_config_is_refused_with_the_key() {
        let e = testing::filter::<LevelFilter>(&[("level", "loud")], &BatchBuf::new()).unwrap_err();
        assert!(
            e.to_string().starts_with("level: unknown level `loud`"),
            "{e}"
        );
        let e = testing::filter::<LevelFilter>(&[("levle", "warn")], &BatchBuf::new()).unwrap_err();
        assert!(e.to_string().contains("unknown setting `levle`"), "{e}");
    }
}
