//! `weir tap COMPONENT`: the events leaving a component of a running
//! pipeline, as JSON lines on stdout, through the admin API. The pipeline
//! is not slowed: a tap gets what fits in its own queue.

use super::ApiArgs;
use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The component (or output: `NAME.dead_letter`, `NAME.late`).
    component: String,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Print every Nth event.
    #[arg(long, default_value_t = 1)]
    sample: u64,
    #[command(flatten)]
    api: ApiArgs,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let mut query = vec![("sample", a.sample.to_string())];
    if let Some(n) = a.limit {
        query.push(("limit", n.to_string()));
    }
    let req = a
        .api
        .client(None)?
        .get(a.api.url(&format!("/tap/{}", a.component)))
        .query(&query);
    let resp = a.api.call(req, &format!("tapping `{}`", a.component))?;
    let mut out = std::io::stdout().lock();
    for line in std::io::BufReader::new(resp).lines() {
        let line = line.context("reading the tap")?;
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // stdout closed (`| head`): detach
        }
    }
    Ok(ExitCode::SUCCESS)
}
