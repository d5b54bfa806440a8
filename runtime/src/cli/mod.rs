//! The `weir` command line.

mod alerts;
mod graph;
mod plugin_new;
mod plugin_run;
mod progress;
mod run;
mod sql;
mod table;
mod tap;
mod test;
mod top;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// weir: run logs and metrics through WebAssembly plugins.
///
/// Start with the quickstart: `weir run -c examples/quickstart/pipeline.toml`.
/// A pipeline file has [sources.*], [transforms.*] and [sinks.*] sections,
/// each naming its `inputs`; see examples/ and docs/.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its inputs end or SIGINT/SIGTERM (which drain
    /// everything in flight before exiting).
    ///
    /// Plugin files are watched and hot-reloaded. SIGHUP reloads the pipeline
    /// file: components whose settings did not change keep running.
    Run {
        /// The pipeline file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also reload the pipeline file whenever it changes.
        #[arg(long)]
        watch: bool,
    },
    /// Check a pipeline without running it: the file parses, inputs exist,
    /// files are there, plugins load and accept their config. Every problem
    /// is listed with its file and line.
    Validate {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the pipeline's `[[tests]]`: events into one transform or query,
    /// checks on what comes out; a diff and a non-zero exit on failure.
    Test(test::Args),
    /// Run SQL over JSON-lines files, with the windows of a pipeline query:
    /// `weir sql "SELECT tumble(interval '1 minute') AS minute, service,
    /// count(*) FROM events GROUP BY minute, service" app.log`.
    ///
    /// The files are the table `events`, read in order as one stream. Each
    /// event's time comes from --timestamp-field; every window closes at the
    /// end of the input. Windows: tumble(w), hop(slide, w), session(gap).
    Sql(sql::Args),
    /// Print the events leaving a component of a running pipeline as JSON
    /// lines (`weir tap warnings --limit 10`), without disturbing it.
    Tap(tap::Args),
    /// A running pipeline's components, refreshing in place: events/s in
    /// and out, errors, queue fill, plugin time (q to quit).
    Top(top::Args),
    /// Draw the pipeline: Graphviz DOT (default), Mermaid, or SVG.
    Graph(graph::Args),
    /// Alerts of a running pipeline, through its admin API: list them,
    /// and silence them.
    #[command(subcommand)]
    Alerts(alerts::Command),
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run one plugin over JSON lines from stdin and print what it keeps or
    /// produces: `weir plugin run level_filter.wasm --config level=warn < app.log`.
    Run {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// A setting for the plugin's init, as KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// How stdin is decoded: json (one object per line) or text.
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Create a plugin project (Rust, Python or JavaScript) that builds and
    /// passes its test as generated: `weir plugin new my-filter --lang python`.
    New {
        /// Name (lowercase letters, digits, `-` and `_`).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: plugin_new::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Path to weir's Rust SDK (default: the one this binary was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    init_logging();
    crate::install_tls_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, watch } => run::run(&config, watch),
        Command::Validate { config } => run::validate(&config),
        Command::Sql(args) => sql::main(args),
        Command::Alerts(cmd) => alerts::main(cmd),
        Command::Graph(args) => graph::main(args),
        Command::Tap(args) => tap::main(args),
        Command::Top(args) => top::main(args),
        Command::Test(args) => test::main(args),
        Command::Plugin(PluginCommand::Run {
            plugin,
            config,
            format,
        }) => plugin_run::run(&plugin, &config, &format),
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            path,
            sdk,
        }) => plugin_new::run(&name, lang, path, sdk),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Where a running pipeline's admin API is, for the commands that use it.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The pipeline's admin API (its `[api]` address).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8686")]
    pub api: String,
    /// The API's bearer token (`[api] token`).
    #[arg(long, env = "WEIR_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ApiArgs {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.trim_end_matches('/'))
    }

    /// A client that sends the token; `timeout` None for streams.
    pub fn client(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<reqwest::blocking::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(reqwest::blocking::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .build()?)
    }

    /// Sends `req`; a failure says what was being done and why.
    pub fn call(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        use anyhow::Context;
        let resp = req.send().with_context(|| {
            format!(
                "{what}: cannot reach {}; is the pipeline running with an [api] section?",
                self.api
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().unwrap_or_default();
            anyhow::bail!("{what}: {status}: {}", text.trim());
        }
        Ok(resp)
    }
}

/// Logs go to stderr (stdout carries events), with the pipeline's secrets
/// masked; `WEIR_LOG` sets the filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::config::secrets::RedactingStderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
}
