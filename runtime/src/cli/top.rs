//! `weir top`: a running pipeline's components, refreshing in place: events
//! per second in and out, errors, queue fill and plugin time per batch, from
//! the admin API. `q`, Esc or Ctrl-C quit. When stdout is not a terminal it
//! prints plain lines instead, one per component per refresh.

use super::ApiArgs;
use crate::api::components::Component;
use anyhow::Result;
use crossterm::event::{self, Event, KeyCode, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// How often to refresh.
    #[arg(long, default_value = "1s")]
    interval: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Puts the terminal back however `top` ends.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode()?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

pub fn main(a: Args) -> Result<ExitCode> {
    let interval = weir_sql::parse_duration(&a.interval)
        .map(|ns| Duration::from_nanos(ns.max(100_000_000) as u64))
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let client = a.api.client(Some(Duration::from_secs(5)))?;
    let tty = std::io::stdout().is_terminal();
    let _screen = if tty { Some(Screen::enter()?) } else { None };
    let mut prev: Option<(Instant, Vec<Component>)> = None;
    loop {
        let fetched = a
            .api
            .call(
                client.get(a.api.url("/components")),
                "reading the components",
            )
            .and_then(|r| Ok(serde_json::from_str::<Vec<Component>>(&r.text()?)?));
        let now = Instant::now();
        let mut out = std::io::stdout().lock();
        match &fetched {
            Ok(comps) => {
                let rows = rows(comps, prev.as_ref().map(|(t, c)| (now - *t, &c[..])));
                if tty {
                    queue!(
                        out,
                        cursor::MoveTo(0, 0),
                        terminal::Clear(terminal::ClearType::All)
                    )?;
                    write!(out, "weir top: {}  (q to quit)\r\n\r\n", a.api.api)?;
                    for line in super::table::lines(&HEAD, &rows, 3) {
                        write!(out, "{line}\r\n")?;
                    }
                } else {
                    for r in &rows {
                        writeln!(out, "{}", r.join(" "))?;
                    }
                }
            }
            Err(e) if tty => {
                queue!(
                    out,
                    cursor::MoveTo(0, 0),
                    terminal::Clear(terminal::ClearType::All)
                )?;
                write!(out, "weir top: {e:#}\r\n(retrying; q to quit)\r\n")?;
            }
            Err(e) => return Err(anyhow::anyhow!("{e:#}")),
        }
        out.flush()?;
        drop(out);
        if let Ok(comps) = fetched {
            prev = Some((now, comps));
        }
        if tty {
            if quit_within(interval)? {
                return Ok(ExitCode::SUCCESS);
            }
        } else {
            std::thread::sleep(interval);
        }
    }
}

/// Waits up to `d` for a key; true when it asks to quit.
fn quit_within(d: Duration) -> Result<bool> {
    let deadline = Instant::now() + d;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if !event::poll(left)? {
            break;
        }
        if let Event::Key(k) = event::read()? {
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

const HEAD: [&str; 10] = [
    "COMPONENT",
    "KIND",
    "STATE",
    "IN/S",
    "OUT/S",
    "IN",
    "OUT",
    "ERRORS",
    "QUEUE",
    "PLUGIN",
];

/// One row per component: rates from the difference with the last poll.
fn rows(comps: &[Component], prev: Option<(Duration, &[Component])>) -> Vec<Vec<String>> {
    comps
        .iter()
        .map(|c| {
            let before = prev.and_then(|(dt, p)| Some((dt, p.iter().find(|x| x.name == c.name)?)));
            let rate = |now: u64, then: fn(&Component) -> u64| match before {
                Some((dt, b)) if dt.as_secs_f64() > 0.0 => {
                    format!(
                        "{:.0}",
                        now.saturating_sub(then(b)) as f64 / dt.as_secs_f64()
                    )
                }
                _ => "-".into(),
            };
            let plugin = match c.calls {
                0 => "-".to_string(),
                n => format!("{} µs/batch", c.busy_ns / n / 1000),
            };
            vec![
                c.name.clone(),
                c.kind.map_or("output", |k| k.name()).into(),
                (if c.running { "running" } else { "done" }).into(),
                rate(c.events_in, |x| x.events_in),
                rate(c.events_out, |x| x.events_out),
                c.events_in.to_string(),
                c.events_out.to_string(),
                c.errors.to_string(),
                c.queue.map_or("-".into(), |(n, cap)| format!("{n}/{cap}")),
                plugin,
            ]
        })
        .collect()
}
