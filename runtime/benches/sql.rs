//! Streaming SQL throughput and memory, against DataFusion in batch.
//!
//! `cargo bench -p weir --bench sql` (or `scripts/bench`). One thread, CPU
//! time of that thread, medians of 3 runs over the same generated ~200-byte
//! JSON log lines, 10,000 events per second of event time.
//!
//! - weir: decode -> `tumble(1 second), service` with count, avg and
//!   approx_percentile_cont, incremental, as a pipeline query runs it.
//! - ceiling: DataFusion running the equivalent `date_bin` query in batch
//!   over the same events already in Arrow (no decode, no windows kept open).
//! - memory: the resident set while streaming N and 10 N events through the
//!   query; flat means state follows open windows, not events.

mod common;

use common::{cpu_now, decode};
use rand::{rngs::SmallRng, SeedableRng};
use weir::sources::generator;
use weir_layout::BatchBuf;
use weir_sql::datafusion::datasource::MemTable;
use weir_sql::datafusion::prelude::{SessionConfig, SessionContext};
use weir_sql::{Converter, Query, QueryOptions};

const RUNS: usize = 3;
const STEP_NS: i64 = 100_000; // 10,000 events per second of event time
const STREAM_SQL: &str = "SELECT tumble(interval '1 second') AS w, service, count(*) AS n, \
    avg(latency_ms) AS mean, approx_percentile_cont(latency_ms, 0.99) AS p99 \
    FROM logs GROUP BY 1, 2";
const BATCH_SQL: &str = "SELECT date_bin(interval '1 second', _time, timestamp '1970-01-01T00:00:00Z') AS w, \
    service, count(*) AS n, avg(latency_ms) AS mean, approx_percentile_cont(latency_ms, 0.99) AS p99 \
    FROM logs GROUP BY 1, 2";

fn lines(from: usize, n: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(from as u64);
    let mut buf = Vec::with_capacity(n * 210);
    for i in from..from + n {
        generator::write_line(
            &mut rng,
            1_700_000_000_000_000_000 + i as i64 * STEP_NS,
            &mut buf,
        );
    }
    buf
}

fn query() -> Query {
    let opts = QueryOptions {
        tables: vec!["logs".into()],
        allowed_lateness: 0,
        max_groups: None,
        schema: None,
    };
    Query::new(STREAM_SQL, opts).unwrap()
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut t: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let buf = lines(0, n);
    println!(
        "weir sql bench: {n} JSON log lines ({} bytes on average), {} s of event time, 1 thread, median of {RUNS}",
        buf.len() / n,
        n as i64 * STEP_NS / 1_000_000_000
    );
    println!("query: {STREAM_SQL}\n");

    let mut rows = 0;
    let decode_only = median(|| {
        let start = cpu_now();
        decode(&buf, 1024, |b| rows += b.len());
        cpu_now() - start
    });
    let streaming = median(|| {
        let mut q = query();
        let start = cpu_now();
        decode(&buf, 1024, |b| {
            rows += q
                .push(&b)
                .unwrap()
                .rows
                .iter()
                .map(|r| r.batch.num_rows())
                .sum::<usize>();
        });
        rows += q
            .finish()
            .unwrap()
            .iter()
            .map(|r| r.batch.num_rows())
            .sum::<usize>();
        cpu_now() - start
    });

    // The ceiling: the same aggregation by DataFusion over Arrow in memory.
    let mut batches: Vec<BatchBuf> = Vec::new();
    decode(&buf, 1024, |b| batches.push(b));
    let schema = std::sync::Arc::new(weir_sql::schema::infer(batches.iter().take(1)));
    let mut conv = Converter::new(schema.clone());
    let arrow: Vec<_> = batches.iter().map(|b| conv.convert(b)).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    ctx.register_table(
        "logs",
        std::sync::Arc::new(MemTable::try_new(schema, vec![arrow]).unwrap()),
    )
    .unwrap();
    let mut batch_rows = 0;
    let datafusion = median(|| {
        let start = cpu_now();
        let out = rt
            .block_on(async { ctx.sql(BATCH_SQL).await?.collect().await })
            .unwrap();
        batch_rows = out.iter().map(|r| r.num_rows()).sum::<usize>();
        cpu_now() - start
    });
    std::hint::black_box(rows);

    let per = |secs: f64| n as f64 / secs;
    println!("{:<52}{:>14}{:>11}", "", "events/cpu-s", "ns/event");
    let line = |name: &str, secs: f64| {
        println!(
            "{name:<52}{:>14.0}{:>11.0}",
            per(secs),
            secs * 1e9 / n as f64
        )
    };
    line("decode only", decode_only);
    line("decode + streaming query (weir, end to end)", streaming);
    line("  of which the query", streaming - decode_only);
    line(
        "DataFusion date_bin in batch over Arrow (ceiling)",
        datafusion,
    );
    println!(
        "\nquery stage against the batch ceiling: {:.2}x the CPU per event; end to end {:.2} M events/cpu-s (target 1.0); {batch_rows} rows",
        (streaming - decode_only) / datafusion,
        per(streaming) / 1e6
    );

    // Memory: stream N then 10 N events, generated batch by batch.
    println!("\nresident memory while streaming (state follows open windows, not events):");
    for events in [n, 10 * n] {
        let mut q = query();
        let base = resident_bytes();
        let mut peak = base;
        let mut open = 0;
        let mut done = 0;
        while done < events {
            let chunk = 16 * 1024;
            decode(&lines(done, chunk.min(events - done)), 1024, |b| {
                q.push(&b).unwrap();
                peak = peak.max(resident_bytes());
                open = open.max(q.stats().open_windows);
            });
            done += chunk;
        }
        q.finish().unwrap();
        println!(
            "  {events:>9} events: peak {:>6.1} MiB above the start, {} windows open at most",
            (peak.saturating_sub(base)) as f64 / (1 << 20) as f64,
            open
        );
    }
}
