//! The `config` table a pipeline gives a plugin instance.

use crate::{Error, Result};
use std::str::FromStr;

/// Settings from the pipeline file, as strings, with typed accessors whose
/// errors name the key.
///
/// ```
/// let config = weir_sdk::Config::new(vec![("rate".into(), "10".into())]);
/// assert_eq!(config.parse_or("rate", 1u64).unwrap(), 10);
/// assert_eq!(config.get_or("key", "trace_id"), "trace_id");
/// assert!(config.parse_or::<u64>("rate", 1).is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an error saying it is required.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::from(format!("`{key}` is required")))
    }

    /// `key` parsed as `T`, or `default` when unset.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| Error::from(format!("`{key}`: cannot use `{v}`: {e}"))),
        }
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|s| s.trim().trim_matches('"'))
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keys not in `known`: call from `new` to reject typos.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<()> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => {
                Err(format!("unknown setting `{k}` (known: {})", known.join(", ")).into())
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
