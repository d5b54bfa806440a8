//! Test only: a transform that misbehaves on purpose.
//!
//! `mode` (config) picks the behaviour; every mode passes other events on
//! with `version` set to this build's version (1, or 2 with feature `v2`):
//! - `pass`: nothing else.
//! - `spin`: loops forever on an event with `spin = true`.
//! - `bomb`: allocates without end on an event with `bomb = true`.
//! - `trap`: panics on events whose `i` is `n - 1` modulo `n`.
//! - `error`: returns an error for events whose `i` is a multiple of `n`.
//! - `probe`: tries to read the file `path` and to connect to `addr`, and
//!   fails the event if either works; else records what was refused.

use std::hint::black_box;
use weir_sdk::{export_transform, Config, Event, Output, Result, Transform};

const VERSION: i64 = if cfg!(feature = "v2") { 2 } else { 1 };

pub struct Hostile {
    mode: String,
    n: i64,
    path: String,
    addr: String,
}

impl Transform for Hostile {
    fn new(config: &Config) -> Result<Self> {
        Ok(Hostile {
            mode: config.get_or("mode", "pass").to_string(),
            n: config.parse_or("n", 1000)?,
            path: config.get_or("path", "/etc/hostname").to_string(),
            addr: config.get_or("addr", "127.0.0.1:9").to_string(),
        })
    }

    fn transform(&mut self, event: &Event, out: &mut Output) -> Result<()> {
        let flag = |k| event.get(k).and_then(|v| v.as_bool()) == Some(true);
        let i = event.get("i").and_then(|v| v.as_i64()).unwrap_or(-1);
        let mut probe = None;
        match self.mode.as_str() {
            "spin" if flag("spin") => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "bomb" if flag("bomb") => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" if i.rem_euclid(self.n) == self.n - 1 => panic!("planted panic at event {i}"),
            "error" if i.rem_euclid(self.n) == 0 => {
                return Err(format!("planted error at event {i}").into())
            }
            "probe" => {
                let file = match std::fs::read_to_string(&self.path) {
                    Ok(_) => return Err(format!("sandbox breach: read {}", self.path).into()),
                    Err(e) => e.to_string(),
                };
                let net = match std::net::TcpStream::connect(&self.addr) {
                    Ok(_) => {
                        return Err(format!("sandbox breach: connected to {}", self.addr).into())
                    }
                    Err(e) => e.to_string(),
                };
                probe = Some(format!("file: {file}; net: {net}"));
            }
            _ => {}
        }
        let mut log = out.log(event.timestamp());
        log.fields_from(event.object().ok_or("not a log")?, |_| false)
            .field("version", VERSION);
        if let Some(p) = &probe {
            log.field("probe", p.as_str());
        }
        log.finish()?;
        Ok(())
    }
}

export_transform!(Hostile);
