//! `weir sql`: the streaming SQL engine over files, once. The files are the
//! table `events`, read in order as one stream: the same windows, watermark
//! and lateness rules as a `[queries.*]` section, and every window closes at
//! the end of the input.

use crate::codec::{for_each_line, Decoder, Format, DEFAULT_MAX_LINE_BYTES};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use weir_layout::BatchBuf;
use weir_sql::arrow::array::RecordBatch;
use weir_sql::{Query, QueryOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// An aligned text table.
    Table,
    /// JSON lines, as a pipeline's sinks write them.
    Json,
    /// CSV with a header line.
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
    /// One SELECT statement over `events` (with --live: over the
    /// component named in FROM).
    sql: String,
    /// The input files (JSON lines, or text with --format text).
    #[arg(required_unless_present = "live")]
    files: Vec<PathBuf>,
    /// Instead of files, run the query over a running pipeline's live
    /// stream from now on, through its admin API (`[api]` in the
    /// pipeline), printing each closed window's rows as JSON lines until
    /// Ctrl-C. The pipeline is not disturbed.
    #[arg(long, value_name = "URL", conflicts_with = "files")]
    live: Option<String>,
    /// With --live: the API's bearer token (`[api] token`).
    #[arg(
        long,
        env = "WEIR_API_TOKEN",
        hide_env_values = true,
        requires = "live"
    )]
    token: Option<String>,
    /// How rows are printed.
    #[arg(long = "output", short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// How the files are decoded: json or text.
    #[arg(long, default_value = "json")]
    format: String,
    /// How far behind the newest event an event still counts for its
    /// window (e.g. 30s); older ones are reported as late.
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    allowed_lateness: String,
    /// The field holding each event's time (RFC 3339 or epoch numbers).
    #[arg(long, default_value = "timestamp", value_name = "FIELD")]
    timestamp_field: String,
    /// A column's type, as COLUMN=TYPE (repeatable; the rest are not
    /// columns). Without it, the first events decide the types.
    #[arg(long, value_name = "COLUMN=TYPE")]
    schema: Vec<String>,
}

const BATCH: usize = 4096;

/// `weir sql`: over files, or `--live` over a running pipeline.
pub fn main(a: Args) -> Result<ExitCode> {
    match &a.live {
        Some(url) => {
            let api = super::ApiArgs {
                api: url.clone(),
                token: a.token.clone(),
            };
            live(&api, &a.sql, &a.allowed_lateness)
        }
        None => run(a),
    }
}

fn run(a: Args) -> Result<ExitCode> {
    let format = Format::parse(&a.format)?;
    if a.files.is_empty() {
        bail!("name at least one file to query (they are the table `events`)");
    }
    let lateness = weir_sql::parse_duration(&a.allowed_lateness)
        .map_err(|e| anyhow::anyhow!("--allowed-lateness: {e}"))?;
    let schema = if a.schema.is_empty() {
        None
    } else {
        let cols = a
            .schema
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => bail!("--schema `{kv}`: expected COLUMN=TYPE"),
            })
            .collect::<Result<Vec<_>>>()?;
        Some(weir_sql::schema::declared(&cols).context("--schema")?)
    };
    let opts = QueryOptions {
        tables: vec!["events".into()],
        schema,
        allowed_lateness: lateness,
        max_groups: None,
    };
    let mut query = Query::new(&a.sql, opts)?;
    let mut decoder = Decoder::new(format, &a.timestamp_field, DEFAULT_MAX_LINE_BYTES);
    let mut rows: Vec<RecordBatch> = Vec::new();
    let mut late = 0usize;
    // Events the query could not evaluate: left out of the results, each
    // alone, and counted with the first reason.
    let mut failed: (usize, Option<String>) = (0, None);
    let now = crate::codec::timestamp::now_ns();
    let mut batch = BatchBuf::with_capacity(BATCH, BATCH * 256);
    let mut push = |batch: &mut BatchBuf, query: &mut Query| -> Result<()> {
        let mut pushed = query.push(batch)?;
        late += pushed.late.len();
        failed.0 += pushed.failed.len();
        if failed.1.is_none() && !pushed.reasons.is_empty() {
            failed.1 = Some(pushed.reasons.swap_remove(0));
        }
        rows.extend(weir_sql::batches(pushed.rows));
        batch.clear();
        Ok(())
    };
    let total = a
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = super::progress::bytes(total);
    let mut events = 0u64;
    for path in &a.files {
        let origin = path.display().to_string();
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {origin}"))?;
        for_each_line(
            file,
            DEFAULT_MAX_LINE_BYTES,
            |line, line_no| -> Result<()> {
                bar.inc(line.len() as u64 + 1);
                events += 1;
                if events.is_multiple_of(65_536) {
                    bar.set_message(format!("{events} events"));
                }
                decoder.decode(&mut batch, line, &origin, line_no, now);
                if batch.len() >= BATCH {
                    push(&mut batch, &mut query).with_context(|| {
                        format!("the query failed on the events up to {origin}:{line_no}")
                    })?;
                }
                Ok(())
            },
        )
        .with_context(|| format!("reading {origin}"))?;
    }
    push(&mut batch, &mut query)
        .context("the query failed on the events up to the end of the input")?;
    bar.set_message(format!("{events} events"));
    bar.finish();
    rows.extend(weir_sql::batches(query.finish()?));

    let schema = query.output_schema();
    let mut out = std::io::stdout().lock();
    print(&mut out, a.output, &rows, schema)?;
    out.flush()?;
    let stats = query.stats();
    let mut notes = vec![
        format!("{} events", stats.events),
        format!("{} rows", stats.rows),
    ];
    if late > 0 {
        notes.push(format!(
            "{late} late (older than the watermark allows; see --allowed-lateness)"
        ));
    }
    if decoder.errors > 0 {
        notes.push(format!("{} lines could not be decoded", decoder.errors));
    }
    if let (n @ 1.., Some(first)) = failed {
        notes.push(format!(
            "{n} events could not be evaluated and were left out, first: {first}"
        ));
    }
    if stats.misfits > 0 {
        notes.push(format!(
            "{} values did not fit the schema and became NULL, first: {}",
            stats.misfits,
            query.first_misfit().unwrap_or("?")
        ));
    }
    eprintln!("{}", notes.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn print(
    out: &mut dyn Write,
    format: Output,
    rows: &[RecordBatch],
    schema: Option<weir_sql::arrow::datatypes::SchemaRef>,
) -> Result<()> {
    match format {
        Output::Table => {
            let text = match (rows.is_empty(), schema) {
                (true, Some(s)) => weir_sql::arrow::util::pretty::pretty_format_batches(&[
                    RecordBatch::new_empty(s),
                ])?,
                _ => weir_sql::arrow::util::pretty::pretty_format_batches(rows)?,
            };
            writeln!(out, "{text}")?;
        }
        Output::Json => {
            let mut buf = Vec::new();
            crate::sql::json_lines(rows, &mut buf)?;
            out.write_all(&buf)?;
        }
        Output::Csv => {
            let mut w = weir_sql::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for r in rows {
                w.write(r)?;
            }
        }
    }
    Ok(())
}

/// `weir sql --live URL`: streams the rows of a query attached to a running
/// pipeline until Ctrl-C (which closes the connection and detaches it).
fn live(api: &super::ApiArgs, sql: &str, allowed_lateness: &str) -> Result<ExitCode> {
    use std::io::BufRead;
    let req = api
        .client(None)?
        .post(api.url("/sql"))
        .query(&[("allowed_lateness", allowed_lateness)])
        .body(sql.to_string());
    let resp = api.call(req, "attaching the live query")?;
    let url = api.url("");
    eprintln!("attached to {url}: rows print as windows close (Ctrl-C to detach)");
    let mut out = std::io::stdout().lock();
    for line in std::io::BufReader::new(resp).lines() {
        let line = line.context("reading the live stream")?;
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    eprintln!("the pipeline ended the stream");
    Ok(ExitCode::SUCCESS)
}
