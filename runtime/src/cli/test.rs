//! `weir test -c FILE`: the pipeline's `[[tests]]`. Each test feeds events
//! to one transform (its real plugin) or query (and the alert rules that
//! read it) and checks what comes out: a count, SQL conditions every event
//! meets, the exact events (a diff when they differ), or the alerts.
//! Nothing else of the pipeline runs, and no notification is sent.

use crate::alerts::AlertView;
use crate::codec::{json_encode, Decoder, Format, Line, DEFAULT_MAX_LINE_BYTES};
use crate::config::{Expect, Pipeline, PipelineTest, Problems, TransformConfig};
use crate::plugin::PluginEngine;
use crate::topology::Stats;
use anyhow::Result;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use weir_layout::BatchBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file with `[[tests]]`.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let p = match Pipeline::load(&a.config) {
        Ok(p) => p,
        Err(problems) => return Ok(super::run::report(&problems)),
    };
    let engine = super::run::engine(&p)?;
    let (mut passed, mut failed) = (0, 0);
    for t in &p.file.tests {
        match run(&p, &engine, t) {
            Ok(()) => {
                println!("test {} ... ok", t.name);
                passed += 1;
            }
            Err(why) => {
                println!("test {} ... FAILED\n{}\n", t.name, indent(&why));
                failed += 1;
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn run(p: &Pipeline, engine: &PluginEngine, t: &PipelineTest) -> Result<(), String> {
    let batch = input(t)?;
    let f = &p.file;
    let (out, alerts) = if let Some(tc) = f.transforms.get(&t.input) {
        (transform(p, engine, &t.input, tc, batch)?, None)
    } else if f.queries.contains_key(&t.input) {
        query(p, &t.input, batch)?
    } else {
        let known = f
            .transforms
            .keys()
            .chain(f.queries.keys())
            .map(String::as_str);
        let hint = crate::config::closest(&t.input, known)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "input: `{}` is not a transform or query{hint}",
            t.input
        ));
    };
    check(&t.expect, &out, alerts.as_deref())
}

/// The test's events, decoded as a source decodes lines.
fn input(t: &PipelineTest) -> Result<BatchBuf, String> {
    let mut lines: Vec<String> = t
        .events
        .iter()
        .map(|e| serde_json::to_string(e).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    lines.extend(t.lines.iter().cloned());
    let mut decoder = Decoder::new(Format::Json, "timestamp", DEFAULT_MAX_LINE_BYTES);
    let mut batch = BatchBuf::new();
    let now = crate::codec::timestamp::now_ns();
    for (i, l) in lines.iter().enumerate() {
        decoder.decode(
            &mut batch,
            Line::Full(l.as_bytes()),
            "test input",
            i as u64 + 1,
            now,
        );
    }
    Ok(batch)
}

fn transform(
    p: &Pipeline,
    engine: &PluginEngine,
    name: &str,
    tc: &TransformConfig,
    batch: BatchBuf,
) -> Result<BatchBuf, String> {
    let TransformConfig::Wasm(w) = tc;
    let limits = crate::topology::limits(p, w)?;
    let plugin = engine
        .load(name, &p.resolve(&w.plugin), tc.plugin_config(), limits)
        .map_err(|e| format!("{e:#}"))?;
    let instance = plugin.instantiate().map_err(|e| format!("{e:#}"))?;
    let mut worker = crate::transforms::wasm::Worker::new(plugin, instance, w.on_error);
    Ok(worker.process(batch, &Stats::default()).out)
}

type QueryOut = (BatchBuf, Option<Vec<AlertView>>);

fn query(p: &Pipeline, name: &str, batch: BatchBuf) -> Result<QueryOut, String> {
    let mut job = crate::sql::build(p, name, &p.file.queries[name]).map_err(|e| e.to_string())?;
    let hub = crate::alerts::build(p).map_err(|ps| Problems(ps).to_string())?;
    if let Some(h) = &hub {
        h.without_notifications();
    }
    let evaluator = match &hub {
        Some(h) => h
            .attach(p, name, &job.query)
            .map_err(|ps| Problems(ps).to_string())?,
        None => None,
    };
    let q = &mut job.query;
    let pushed = q.push(&batch).map_err(|e| e.to_string())?;
    let mut rows = pushed.rows;
    if let Some(e) = &evaluator {
        e.observe(q, &rows, Some(q.stats().watermark));
    }
    let last = q.finish().map_err(|e| e.to_string())?;
    if let Some(e) = &evaluator {
        e.observe(q, &last, None);
    }
    rows.extend(last);
    let mut out = BatchBuf::new();
    for r in &rows {
        weir_sql::append_rows(&r.batch, &mut out, 0).map_err(|e| e.to_string())?;
    }
    let alerts = hub.map(|h| h.list().into_iter().filter(|a| a.query == name).collect());
    Ok((out, alerts))
}

fn check(expect: &Expect, out: &BatchBuf, alerts: Option<&[AlertView]>) -> Result<(), String> {
    let actual: Vec<Value> = out
        .iter()
        .map(|e| {
            let mut buf = Vec::new();
            json_encode::write_event(&mut buf, &e);
            serde_json::from_slice(&buf).unwrap_or(Value::Null)
        })
        .collect();
    let mut problems = Vec::new();
    if let Some(n) = expect.count {
        if actual.len() != n {
            problems.push(format!(
                "expected {n} events, got {}:\n{}",
                actual.len(),
                lines(&actual)
            ));
        }
    }
    if !expect.conditions.is_empty() && !out.is_empty() {
        let schema = Arc::new(weir_sql::schema::infer([out]));
        let table = weir_sql::Converter::new(schema.clone()).convert(out);
        for c in &expect.conditions {
            let cond = weir_sql::Condition::new(c, &table.schema())
                .map_err(|e| format!("condition `{c}`: {e}"))?;
            let holds = cond
                .evaluate(&table)
                .map_err(|e| format!("condition `{c}`: {e}"))?;
            let failing: Vec<Value> = (0..holds.len())
                .filter(|&i| !holds.value(i))
                .map(|i| actual[i].clone())
                .collect();
            if !failing.is_empty() {
                problems.push(format!("`{c}` does not hold for:\n{}", lines(&failing)));
            }
        }
    }
    if let Some(want) = &expect.events {
        let want: Vec<Value> = want
            .iter()
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .collect();
        if want != actual {
            problems.push(format!(
                "the events differ (- expected, + actual):\n{}",
                diff(&want, &actual)
            ));
        }
    }
    if let Some(want) = &expect.alerts {
        let alerts = alerts.ok_or("`alerts` are expected of queries")?;
        let matches = |w: &indexmap::IndexMap<String, String>, a: &AlertView| {
            w.iter().all(|(k, v)| match k.as_str() {
                "state" => a.state.as_str() == v,
                _ => a.labels.get(k) == Some(v),
            })
        };
        let missing: Vec<String> = want
            .iter()
            .filter(|w| !alerts.iter().any(|a| matches(w, a)))
            .map(|w| format!("{w:?}"))
            .collect();
        if !missing.is_empty() || want.len() != alerts.len() {
            let got: Vec<String> = alerts
                .iter()
                .map(|a| format!("{} {:?}", a.state.as_str(), a.labels))
                .collect();
            problems.push(format!(
                "expected {} alerts{}; got {}:\n{}",
                want.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(", missing {}", missing.join(", "))
                },
                alerts.len(),
                got.join("\n")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn lines(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Line by line, in order: what is only expected, what is only actual.
fn diff(want: &[Value], got: &[Value]) -> String {
    let mut out = Vec::new();
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w == g => out.push(format!("  {g}")),
            (w, g) => {
                if let Some(w) = w {
                    out.push(format!("- {w}"));
                }
                if let Some(g) = g {
                    out.push(format!("+ {g}"));
                }
            }
        }
    }
    out.join("\n")
}
