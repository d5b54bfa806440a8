//! The `generator` source: realistic microservice JSON logs at a set rate.
//!
//! Lines go through the same JSON decoder as a file would, so a generator
//! pipeline measures the real decode path. ~200 bytes a line; levels 80 %
//! info, 15 % warn, 5 % error; 20 services; latency and status follow the
//! level, as they do in real services.

use super::component::{BuildContext, Job, Source};
use super::{Batcher, LineReader};
use crate::codec::{timestamp, Decoder, Format};
use crate::config::GeneratorSource;
use crate::topology::Shutdown;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const SERVICES: [&str; 20] = [
    "api-gateway",
    "auth",
    "billing",
    "cart",
    "catalog",
    "checkout",
    "inventory",
    "notifications",
    "orders",
    "payments",
    "pricing",
    "profile",
    "recommendations",
    "search",
    "shipping",
    "reviews",
    "sessions",
    "media",
    "ledger",
    "fraud",
];
const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v1/users",
    "/api/v1/items",
    "/healthz",
    "/api/v1/pay",
];

/// Appends one synthetic JSON log line (with `\n`) stamped `ts_ns`.
pub fn write_line(rng: &mut SmallRng, ts_ns: i64, out: &mut Vec<u8>) {
    let roll = rng.random_range(0..100u32);
    let (level, status, latency, msg) = match roll {
        0..80 => (
            "info",
            [200, 200, 201, 204][rng.random_range(0..4)],
            rng.random_range(2..120),
            "request completed",
        ),
        80..95 => (
            "warn",
            [404, 429, 409][rng.random_range(0..3)],
            rng.random_range(50..800),
            "slow or rejected request",
        ),
        _ => (
            "error",
            [500, 502, 503][rng.random_range(0..3)],
            rng.random_range(200..3000),
            "upstream call failed",
        ),
    };
    let service = SERVICES[rng.random_range(0..SERVICES.len())];
    let path = PATHS[rng.random_range(0..PATHS.len())];
    let trace: u128 = rng.random();
    let id = rng.random_range(1000..99999u32);
    use std::io::Write;
    let _ = writeln!(
        out,
        r#"{{"timestamp":"{}","level":"{level}","service":"{service}","trace_id":"{trace:032x}","latency_ms":{latency},"status":{status},"path":"{path}/{id}","msg":"{msg}"}}"#,
        timestamp::to_rfc3339(ts_ns),
    );
}

impl Source for GeneratorSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let batch_size = cx.pipeline.file.settings.batch_size.max(1);
        let (name, cfg) = (cx.name.to_string(), self.clone());
        Some(Box::new(move || {
            run(&name, &cfg, out, batch_size, shutdown)
        }))
    }
}

pub fn run(
    name: &str,
    cfg: &GeneratorSource,
    mut out: Batcher,
    batch_size: usize,
    shutdown: Shutdown,
) {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let decoder = Decoder::new(
        Format::Json,
        "timestamp",
        crate::codec::DEFAULT_MAX_LINE_BYTES,
    );
    let mut reader = LineReader::new(decoder, format!("generator {name}"));
    let limit = cfg.count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut made = 0u64;
    let mut lines = Vec::with_capacity(batch_size * 256);
    while made < limit && !shutdown.is_triggered() {
        let due = if cfg.rate > 0.0 {
            let due = (started.elapsed().as_secs_f64() * cfg.rate) as u64;
            if due <= made {
                if out.flush().is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            due.min(limit)
        } else {
            limit
        };
        let n = (due - made).min(batch_size as u64);
        let now = timestamp::now_ns();
        lines.clear();
        for _ in 0..n {
            write_line(&mut rng, now, &mut lines);
        }
        made += n;
        if reader.feed(&lines, &mut out).is_err() {
            return;
        }
    }
    let _ = reader.finish(&mut out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json_of_about_200_bytes_with_the_level_mix() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut buf = Vec::new();
        let mut errors = 0;
        for _ in 0..10_000 {
            write_line(&mut rng, 1_700_000_000_000_000_000, &mut buf);
        }
        let lines: Vec<&[u8]> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 10_000);
        let avg = buf.len() / lines.len();
        assert!((180..=230).contains(&avg), "average line {avg} bytes");
        for l in &lines {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            errors += usize::from(v["level"] == "error");
        }
        assert!((350..650).contains(&errors), "{errors} errors in 10k");
    }
}
