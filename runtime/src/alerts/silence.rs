//! Silences: label matchers that mute matching alerts until they expire.
//! A silenced alert still fires and is listed; it is only left out of
//! notifications. When the silence ends, a still-firing alert is notified
//! at its group's next turn.

use super::matcher::{all_match, Labels, Matcher};
use serde::{Deserialize, Serialize};

/// Times are wall-clock milliseconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at <= now_ms && now_ms < self.ends_at
    }

    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.is_active(now_ms) && all_match(&self.matchers, labels)
    }
}

/// Expired silences are kept this long for the record, as Alertmanager does.
const EXPIRED_RETENTION_MS: i64 = 5 * 24 * 3600 * 1000;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Silences(pub Vec<Silence>);

impl Silences {
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.0.iter().any(|s| s.mutes(labels, now_ms))
    }

    /// Adds a silence and returns its id.
    pub fn add(&mut self, mut s: Silence, now_ms: i64) -> String {
        self.0
            .retain(|old| old.ends_at.saturating_add(EXPIRED_RETENTION_MS) > now_ms);
        s.id = format!("{:016x}", rand::random::<u64>());
        let id = s.id.clone();
        self.0.push(s);
        id
    }

    /// Ends the silence now; false if there is no such silence.
    pub fn expire(&mut self, id: &str, now_ms: i64) -> bool {
        match self.0.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.ends_at = s.ends_at.min(now_ms);
                true
            }
            None => false,
        }
    }
}

pub fn now_ms() -> i64 {
    crate::codec::timestamp::now_ns() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_mutes_matching_alerts_until_it_expires() {
        let mut all = Silences::default();
        let s = Silence {
            id: String::new(),
            matchers: vec![Matcher::parse(r#"service="cart""#).unwrap()],
            starts_at: 0,
            ends_at: 1000,
            created_by: "me".into(),
            comment: String::new(),
        };
        let id = all.add(s, 0);
        let cart = super::super::matcher::labels(&[("service", "cart")]);
        let db = super::super::matcher::labels(&[("service", "db")]);
        assert!(all.mutes(&cart, 10));
        assert!(!all.mutes(&db, 10));
        assert!(!all.mutes(&cart, 1000), "ends_at is exclusive");
        assert!(all.expire(&id, 20));
        assert!(!all.mutes(&cart, 30));
        assert!(!all.expire("nope", 30));
    }
}
