//! `weir graph -c FILE`: the pipeline as a picture, in Graphviz DOT or
//! Mermaid text, or as SVG through Graphviz's `dot` when it is installed.

use crate::config::{
    Pipeline, ReceiverConfig, SinkConfig, SourceConfig, TransformConfig, DEAD_LETTER, LATE,
};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// dot, mermaid, or svg (runs Graphviz's `dot`).
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Dot,
    Mermaid,
    Svg,
}

/// A component (or alert rule, or receiver) and what it reads.
struct Node {
    /// Unique across kinds: alerts and receivers have names of their own.
    id: String,
    name: String,
    kind: Kind,
    what: String,
    inputs: Vec<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Source,
    Transform,
    Query,
    Sink,
    Alert,
    Receiver,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Query => "query",
            Kind::Sink => "sink",
            Kind::Alert => "alert",
            Kind::Receiver => "receiver",
        }
    }
}

pub fn main(a: Args) -> Result<ExitCode> {
    let p = match Pipeline::load(&a.config) {
        Ok(p) => p,
        Err(problems) => bail!("{problems}"),
    };
    let nodes = nodes(&p);
    let text = match a.format {
        Format::Mermaid => mermaid(&nodes),
        Format::Dot => dot(&nodes),
        Format::Svg => svg(&dot(&nodes))?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn nodes(p: &Pipeline) -> Vec<Node> {
    let f = &p.file;
    let mut out = Vec::new();
    let mut add = |id: String, name: &str, kind: Kind, what: String, inputs: Vec<String>| {
        out.push(Node {
            id,
            name: name.to_string(),
            kind,
            what,
            inputs,
        })
    };
    for (n, s) in &f.sources {
        let what = match s {
            SourceConfig::File(x) => format!("file {}", x.path.display()),
            SourceConfig::Stdin(_) => "stdin".into(),
            SourceConfig::Generator(_) => "generator".into(),
        };
        add(n.clone(), n, Kind::Source, what, vec![]);
    }
    for (n, t) in &f.transforms {
        let TransformConfig::Wasm(w) = t;
        let plugin = w.plugin.file_name().unwrap_or_default().to_string_lossy();
        let what = format!("wasm {plugin}");
        add(n.clone(), n, Kind::Transform, what, t.inputs().to_vec());
    }
    for (n, q) in &f.queries {
        add(n.clone(), n, Kind::Query, "sql".into(), q.inputs.clone());
    }
    for (n, s) in &f.sinks {
        let what = match s {
            SinkConfig::Stdout(_) => "stdout".to_string(),
            SinkConfig::File(x) => format!("file {}", x.path.display()),
            SinkConfig::Blackhole(_) => "blackhole".into(),
            SinkConfig::PrometheusExporter(x) => format!("prometheus {}", x.address),
        };
        add(n.clone(), n, Kind::Sink, what, s.inputs().to_vec());
    }
    for (n, a) in &f.alerts {
        let id = format!("alert/{n}");
        add(
            id,
            n,
            Kind::Alert,
            a.condition.clone(),
            vec![a.query.clone()],
        );
    }
    if !f.alerts.is_empty() {
        let rules: Vec<String> = f.alerts.keys().map(|a| format!("alert/{a}")).collect();
        for (n, r) in &f.receivers {
            let what = match r {
                ReceiverConfig::Slack(_) => "slack",
                ReceiverConfig::Webhook(_) => "webhook",
                ReceiverConfig::Stdout(_) => "stdout",
                ReceiverConfig::File(_) => "file",
            };
            add(
                format!("receiver/{n}"),
                n,
                Kind::Receiver,
                what.into(),
                rules.clone(),
            );
        }
    }
    out
}

/// An input and the label of its edge (`dead_letter`, `late`, or none).
fn edge(input: &str) -> (&str, Option<&str>) {
    for o in [DEAD_LETTER, LATE] {
        if let Some(from) = input.strip_suffix(o).and_then(|s| s.strip_suffix('.')) {
            return (from, Some(o));
        }
    }
    (input, None)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(nodes: &[Node]) -> String {
    let mut s = String::from("digraph weir {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in nodes {
        let shape = match n.kind {
            Kind::Source => "cds",
            Kind::Transform => "box",
            Kind::Query => "box3d",
            Kind::Sink => "folder",
            Kind::Alert => "hexagon",
            Kind::Receiver => "note",
        };
        s.push_str(&format!(
            "  \"{}\" [shape={shape}, label=\"{}\\n{}: {}\"];\n",
            quote(&n.id),
            quote(&n.name),
            n.kind.name(),
            quote(&n.what)
        ));
    }
    for n in nodes {
        for i in &n.inputs {
            let (from, label) = edge(i);
            match label {
                Some(l) => s.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{l}\", style=dashed];\n",
                    quote(from),
                    quote(&n.id)
                )),
                None => s.push_str(&format!("  \"{}\" -> \"{}\";\n", quote(from), quote(&n.id))),
            }
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid(nodes: &[Node]) -> String {
    // Mermaid ids must be plain: n0, n1, ...; names go in the labels.
    let id = |id: &str| {
        nodes
            .iter()
            .position(|n| n.id == id)
            .map(|i| format!("n{i}"))
    };
    let mut s = String::from("flowchart LR\n");
    for (i, n) in nodes.iter().enumerate() {
        let label = format!("{}<br/>{}: {}", n.name, n.kind.name(), n.what).replace('"', "#quot;");
        let (open, close) = match n.kind {
            Kind::Source => ("[/", "/]"),
            Kind::Transform => ("[", "]"),
            Kind::Query => ("[[", "]]"),
            Kind::Sink => ("[\\", "\\]"),
            Kind::Alert => ("{{", "}}"),
            Kind::Receiver => ("(", ")"),
        };
        s.push_str(&format!("  n{i}{open}\"{label}\"{close}\n"));
    }
    for n in nodes {
        for i in &n.inputs {
            let (from, label) = edge(i);
            let (Some(a), Some(b)) = (id(from), id(&n.id)) else {
                continue;
            };
            match label {
                Some(l) => s.push_str(&format!("  {a} -. {l} .-> {b}\n")),
                None => s.push_str(&format!("  {a} --> {b}\n")),
            }
        }
    }
    s
}

fn svg(dot: &str) -> Result<String> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("Graphviz's `dot` is not installed (apt-get install graphviz); --format dot or mermaid print the graph as text")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(dot.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("dot failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
