//! What both benchmarks need: a per-thread CPU clock and generated batches.
#![allow(dead_code)]

use rand::{rngs::SmallRng, SeedableRng};
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
