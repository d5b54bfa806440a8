//! Keeps 1 in `rate` events.
//!
//! ```toml
//! [transforms.sampled]
//! type = "wasm"
//! plugin = "sample.wasm"
//! config = { rate = 10, key = "trace_id" }
//! ```
//!
//! With `key`, the choice is a hash of that field's value, so every event of
//! a kept trace is kept, on every weir instance alike. Events without the
//! key (or without `key` configured) are sampled by a counter: exactly 1 in
//! `rate`, starting with the first.

use weir_sdk::{export_filter, Config, Event, Filter, Result, Value};

pub struct Sample {
    rate: u64,
    key: Option<String>,
    seen: u64,
}

/// FNV-1a: stable across platforms and versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Filter for Sample {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["rate", "key"])?;
        let rate: u64 = config.parse_or("rate", 10)?;
        if rate == 0 {
            return Err("rate: must be at least 1 (1 keeps everything)".into());
        }
        Ok(Sample {
            rate,
            key: config.get("key").map(str::to_string),
            seen: 0,
        })
    }

    fn keep(&mut self, event: &Event) -> Result<bool> {
        let keyed = match self.key.as_deref().and_then(|k| event.get(k)) {
            Some(Value::Str(s)) => Some(fnv1a(s.as_bytes())),
            Some(Value::Int(i)) => Some(fnv1a(&i.to_le_bytes())),
            _ => None,
        };
        Ok(match keyed {
            Some(h) => h.is_multiple_of(self.rate),
            None => {
                self.seen += 1;
                (self.seen - 1).is_multiple_of(self.rate)
            }
        })
    }
}

export_filter!(Sample);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{testing, BatchBuf};

    fn traces(n: usize, per_trace: usize) -> BatchBuf {
        let mut b = BatchBuf::new();
        for i in 0..n {
            let trace = format!("trace-{}", i / per_trace);
            b.log(0).field("trace_id", trace.as_str()).finish().unwrap();
        }
        b
    }

    #[test]
    fn keyed_sampling_keeps_whole_traces_at_about_the_rate() {
        let b = traces(40_000, 4);
        let run = testing::filter::<Sample>(&[("rate", "10"), ("key", "trace_id")], &b).unwrap();
        for trace in run.kept.chunks(4) {
            assert!(trace.iter().all(|k| *k == trace[0]), "a trace was split");
        }
        let kept = run.kept.iter().filter(|k| **k).count();
        assert!(
            (3_400..4_600).contains(&kept),
            "kept {kept} of 40000 at 1 in 10"
        );
        let again = testing::filter::<Sample>(&[("rate", "10"), ("key", "trace_id")], &b).unwrap();
        assert_eq!(run.kept, again.kept, "sampling must be deterministic");
    }

    #[test]
    fn without_a_key_exactly_one_in_n() {
        let mut b = BatchBuf::new();
        for _ in 0..30 {
            b.log(0).field("msg", "x").finish().unwrap();
        }
        let run = testing::filter::<Sample>(&[("rate", "3"), ("key", "trace_id")], &b).unwrap();
        let kept: Vec<usize> = (0..30).filter(|i| run.kept[*i]).collect();
        assert_eq!(kept, (0..30).step_by(3).collect::<Vec<_>>());
        assert!(testing::filter::<Sample>(&[("rate", "0")], &b).is_err());
    }
}
