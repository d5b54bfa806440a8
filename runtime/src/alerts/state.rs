//! What outlives a restart: each alert's state, what was notified to
//! whom, and the silences, in one JSON file under the data directory,
//! replaced atomically (write, fsync, rename) so a crash leaves the old
//! file or the new one.

use super::rule::Instance;
use super::silence::Silence;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    /// By rule, by group key.
    #[serde(default)]
    pub rules: BTreeMap<String, BTreeMap<String, Instance>>,
    /// By receiver and group.
    #[serde(default)]
    pub notified: BTreeMap<String, Sent>,
    #[serde(default)]
    pub silences: Vec<Silence>,
}

/// The last notification of a group to a receiver.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Sent {
    /// Fingerprints of the alerts it reported firing.
    pub firing: BTreeSet<String>,
    /// When (wall clock, ms since the epoch).
    pub at_ms: i64,
}

pub const VERSION: u32 = 1;

impl Saved {
    /// The saved state, or an empty one when there is none yet; a file
    /// that cannot be read is an error rather than silently forgotten.
    pub fn load(path: &Path) -> Result<Saved, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a weir alert state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}
