//! Alert rule evaluation per window close, and the latency from a window
//! closing to the webhook POST.
//!
//! `cargo bench -p weir --bench alerts` (or `scripts/bench`).
//!
//! - rounds: 1,000 rules over one query whose windows have 10,000 rows
//!   (groups); each rule holds for 10 of them, so 10,000 alert instances,
//!   with a templated summary. Reported per evaluation round: the first
//!   (every instance fires and is handed to the dispatcher) and steady
//!   ones (all still firing), against the floor of evaluating the 1,000
//!   conditions alone (DataFusion, vectorised) over the same rows.
//! - latency: a window closes in a real query, its row fires a rule, and
//!   the dispatcher POSTs Alertmanager's JSON to a local HTTP server
//!   (`group_wait = "0s"`); median and worst over 50 alerts.

// The test suite's HTTP recorder, standing in for the webhook receiver.
#[path = "../tests/e2e/common/mod.rs"]
mod testing;

use std::sync::Arc;
use std::time::{Duration, Instant};
use testing::{eventually, Recorder};
use weir::config::Pipeline;
use weir_layout::BatchBuf;
use weir_sql::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use weir_sql::{Condition, Query, QueryOptions, Rows};

const RULES: usize = 1_000;
const GROUPS: usize = 10_000;
const ROUNDS: usize = 10;
const S: i64 = 1_000_000_000;

const QUERY: &str = r#"
[sources.app]
type = "stdin"

[queries.q]
inputs = ["app"]
sql = "SELECT window_start, service, count(*) AS errors FROM app GROUP BY tumble(interval '10 seconds'), service"
schema = { service = "string" }

[sinks.out]
type = "blackhole"
inputs = ["q"]
"#;

fn pipeline(dir: &std::path::Path, extra: &str) -> Pipeline {
    let text = format!(
        "[settings]\ndata_dir = \"{}\"\n{QUERY}\n{extra}",
        dir.display()
    );
    Pipeline::parse(&dir.join("pipeline.toml"), &text).expect("the bench pipeline parses")
}

fn query(p: &Pipeline) -> Query {
    let q = &p.file.queries["q"];
    let cols: Vec<(String, String)> = q
        .schema
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let opts = QueryOptions {
        tables: weir::sql::table_names(&q.inputs),
        schema: Some(weir_sql::schema::declared(&cols).unwrap()),
        allowed_lateness: 0,
        max_groups: None,
    };
    Query::new(&q.sql, opts).unwrap()
}

fn rounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::new();
    for r in 0..RULES {
        let (lo, hi) = (r * 10, r * 10 + 10);
        rules.push_str(&format!(
            "[alerts.r{r}]\nquery = \"q\"\ncondition = \"errors >= {lo} AND errors < {hi}\"\n\
             labels = {{ team = \"t{}\" }}\nsummary = \"{{{{ service }}}}: {{{{ errors }}}} errors\"\n\n",
            r % 7
        ));
    }
    // Notifications go nowhere fast; group_wait keeps them out of the way.
    rules.push_str(
        "[route]\ngroup_wait = \"1h\"\n[receivers.null]\ntype = \"file\"\npath = \"/dev/null\"\n",
    );
    let p = pipeline(dir.path(), &rules);
    let q = query(&p);
    let hub = weir::alerts::build(&p).unwrap().unwrap();
    let eval = hub.attach(&p, "q", &q).unwrap().unwrap();
    hub.start();

    let schema = q.output_schema().unwrap();
    let services: StringArray = (0..GROUPS).map(|i| Some(format!("svc-{i}"))).collect();
    let errors: Int64Array = (0..GROUPS as i64).map(Some).collect();
    let rows = |end: i64| Rows {
        window_end: end,
        batch: RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![end - 10 * S; GROUPS]).with_timezone("UTC"),
                ),
                Arc::new(services.clone()),
                Arc::new(errors.clone()),
            ],
        )
        .unwrap(),
    };

    let mut times = Vec::new();
    for round in 0..ROUNDS as i64 {
        let r = rows((round + 1) * 10 * S);
        let t = Instant::now();
        eval.observe(&q, std::slice::from_ref(&r), Some(r.window_end));
        times.push(t.elapsed());
    }
    let firing = hub.list().len();
    assert_eq!(firing, GROUPS, "every instance fired");

    // The floor: the conditions alone over the same rows.
    let batch = rows(10 * S).batch;
    let conditions: Vec<Condition> = (0..RULES)
        .map(|r| {
            Condition::new(
                &format!("errors >= {} AND errors < {}", r * 10, r * 10 + 10),
                &schema,
            )
            .unwrap()
        })
        .collect();
    let mut floor = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for c in &conditions {
            std::hint::black_box(c.evaluate(&batch).unwrap());
        }
        floor.push(t.elapsed());
    }
    let steady = median(&times[1..]);
    let floor = median(&floor);
    println!("rule evaluation: {RULES} rules x {GROUPS} rows per window, {firing} alert instances");
    println!("  first round (all fire):  {:>8.1} ms", ms(times[0]));
    println!("  steady round (median):   {:>8.1} ms", ms(steady));
    println!("  conditions alone:        {:>8.1} ms", ms(floor));
    println!(
        "  steady / conditions:     {:>8.2}x",
        steady.as_secs_f64() / floor.as_secs_f64()
    );
    drop(eval);
    hub.close();
}

fn latency() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Recorder::start(Vec::new());
    let extra = format!(
        "[alerts.hot]\nquery = \"q\"\ncondition = \"errors > 0 AND service <> 'quiet'\"\n\n\
         [route]\ngroup_by = [\"alertname\", \"service\"]\ngroup_wait = \"0s\"\n\
         [receivers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url
    );
    let p = pipeline(dir.path(), &extra);
    let mut q = query(&p);
    let hub = weir::alerts::build(&p).unwrap().unwrap();
    let eval = hub.attach(&p, "q", &q).unwrap().unwrap();
    hub.start();
    let mut lat = Vec::new();
    for i in 0..50i64 {
        let mut b = BatchBuf::new();
        b.log(i * 10 * S + S)
            .field("service", format!("svc-{i}").as_str())
            .finish()
            .unwrap();
        q.push(&b).unwrap();
        // The next window's event closes window i.
        let mut next = BatchBuf::new();
        next.log((i + 1) * 10 * S + S)
            .field("service", "quiet")
            .finish()
            .unwrap();
        let t = Instant::now();
        let pushed = q.push(&next).unwrap();
        eval.observe(&q, &pushed.rows, Some(q.stats().watermark));
        let n = i as usize + 1;
        eventually(10, "the webhook POST", || hook.count() == n);
        lat.push(hook.received()[i as usize].at - t);
    }
    lat.sort();
    println!("window close -> webhook POST (group_wait 0s), 50 alerts:");
    println!(
        "  median {:>6.2} ms, worst {:>6.2} ms",
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() - 1])
    );
    drop(eval);
    hub.close();
}

fn median(d: &[Duration]) -> Duration {
    let mut v = d.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    rounds();
    latency();
}
