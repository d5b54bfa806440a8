//! What the benchmarks share: CPU clocks, generated lines and batches, and
//! timing a running weir through its admin API.
#![allow(dead_code)]

#[path = "../../tests/e2e/common/net.rs"]
pub mod net;
#[path = "../../tests/e2e/common/tansu.rs"]
pub mod tansu;

pub use net::free_port;

use rand::{rngs::SmallRng, SeedableRng};
use std::time::{Duration, Instant};
use weir::codec::{Decoder, Format, Line};
use weir::sources::generator;
use weir_layout::BatchBuf;

/// CPU time of this thread, in seconds.
pub fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `n` generated ~200-byte JSON log lines.
pub fn lines(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buf = Vec::with_capacity(n * 210);
    for i in 0..n {
        generator::write_line(&mut rng, 1_700_000_000_000_000_000 + i as i64, &mut buf);
    }
    buf
}

/// Decodes every line into batches of `size`, handing each to `each`.
pub fn decode(buf: &[u8], size: usize, mut each: impl FnMut(BatchBuf)) {
    let mut d = Decoder::new(Format::Json, "timestamp", 102_400);
    let mut batch = BatchBuf::with_capacity(size, size * 256);
    for (i, line) in buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        d.decode(&mut batch, Line::Full(line), "bench", i as u64, 0);
        if batch.len() == size {
            each(std::mem::replace(
                &mut batch,
                BatchBuf::with_capacity(size, size * 256),
            ));
        }
    }
    if !batch.is_empty() {
        each(batch);
    }
}

/// Batches of `size` from `n` generated lines.
pub fn batches(n: usize, size: usize) -> Vec<BatchBuf> {
    let mut v = Vec::new();
    decode(&lines(n, 7), size, |b| v.push(b));
    v
}

/// CPU time of a process so far (all its threads), in seconds.
pub fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: utime and stime are fields
    // 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / tick
}

/// Times a running weir from its `source`'s first event out to its
/// `sink`'s `n`th event written (for a Kafka sink: acknowledged by the
/// broker), by its admin API; and the CPU it spent meanwhile.
pub fn watch_weir(api: u16, source: &str, sink: &str, n: usize, pid: u32) -> (f64, f64) {
    weir::install_tls_provider();
    let url = format!("http://127.0.0.1:{api}/components");
    let client = reqwest::blocking::Client::new();
    let count = |name: &str| -> u64 {
        let body = client
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .and_then(|c| c["events_out"].as_u64())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    loop {
        if first.is_none() && count(source) > 0 {
            first = Some((Instant::now(), process_cpu(pid)));
        }
        if let Some((t, cpu)) = first.filter(|_| count(sink) >= n as u64) {
            return (t.elapsed().as_secs_f64(), process_cpu(pid) - cpu);
        }
        assert!(Instant::now() < deadline, "weir did not finish");
        // Often enough to time a run of seconds, rarely enough not to
        // take CPU from what is measured.
        std::thread::sleep(Duration::from_millis(25));
    }
}
