//! `weir graph -c FILE`: the pipeline as a picture, in Graphviz DOT or
//! Mermaid text, or as SVG through Graphviz's `dot` when it is installed.

use crate::config::{Kind, Node, Pipeline, DEAD_LETTER, ERRORS, LATE};
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

pub fn main(a: Args) -> Result<ExitCode> {
    let p = match Pipeline::load(&a.config) {
        Ok(p) => p,
        Err(problems) => bail!("{problems}"),
    };
    let nodes = p.describe();
    let text = match a.format {
        Format::Mermaid => mermaid(&nodes),
        Format::Dot => dot(&nodes),
        Format::Svg => svg(&dot(&nodes))?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// An input and the label of its edge (`dead_letter`, `late`, `errors`,
/// or none).
fn edge(input: &str) -> (&str, Option<&str>) {
    for o in [DEAD_LETTER, LATE, ERRORS] {
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
