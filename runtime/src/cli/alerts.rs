//! `weir alerts list` and `weir alerts silence ...`: the alerts of a
//! running pipeline, over its admin API (`[api]` in the pipeline).

use super::ApiArgs as Api;
use crate::alerts::silence::Silence;
use crate::alerts::AlertView;
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Command {
    /// Pending, firing and recently resolved alerts.
    List {
        #[command(flatten)]
        api: Api,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mute alerts by label matchers until the silence ends.
    #[command(subcommand)]
    Silence(SilenceCommand),
}

#[derive(Subcommand)]
pub enum SilenceCommand {
    /// `weir alerts silence add 'service="cart"' --for 2h --comment "deploy"`
    Add {
        /// Label matchers: label="value", label!="value", label=~"regex", label!~"regex".
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long the silence lasts.
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        #[arg(long, default_value = "")]
        comment: String,
        /// Who silenced it (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Silences, active and expired.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

pub fn main(cmd: Command) -> Result<ExitCode> {
    let timeout = Some(std::time::Duration::from_secs(10));
    match cmd {
        Command::List { api, json } => {
            let req = api.client(timeout)?.get(api.url("/alerts"));
            let text = api.call(req, "listing alerts")?.text()?;
            if json {
                println!("{text}");
            } else {
                let alerts: Vec<AlertView> = serde_json::from_str(&text)?;
                print_alerts(&alerts);
            }
        }
        Command::Silence(SilenceCommand::Add {
            matchers,
            duration,
            comment,
            author,
            api,
        }) => {
            let body = serde_json::json!({
                "matchers": matchers,
                "duration": duration,
                "comment": comment,
                "created_by": author.or_else(|| std::env::var("USER").ok()).unwrap_or_default(),
            });
            let req = api
                .client(timeout)?
                .post(api.url("/silences"))
                .json_body(&body);
            let text = api.call(req, "adding the silence")?.text()?;
            let id: serde_json::Value = serde_json::from_str(&text)?;
            println!("{}", id["id"].as_str().unwrap_or_default());
        }
        Command::Silence(SilenceCommand::List { api }) => {
            let req = api.client(timeout)?.get(api.url("/silences"));
            let text = api.call(req, "listing silences")?.text()?;
            let silences: Vec<Silence> = serde_json::from_str(&text)?;
            print_silences(&silences);
        }
        Command::Silence(SilenceCommand::Expire { id, api }) => {
            let req = api
                .client(timeout)?
                .delete(api.url(&format!("/silences/{id}")));
            api.call(req, "expiring the silence")?;
            println!("expired {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

trait JsonBody {
    fn json_body(self, v: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::blocking::RequestBuilder {
    fn json_body(self, v: &serde_json::Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(v.to_string())
    }
}

fn print_alerts(alerts: &[AlertView]) {
    if alerts.is_empty() {
        println!("no alerts");
        return;
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let state = if a.silenced {
                format!("{} (silenced)", a.state.as_str())
            } else {
                a.state.as_str().to_string()
            };
            let since = a
                .resolved_at
                .as_ref()
                .or(a.fired_at.as_ref())
                .unwrap_or(&a.active_at)
                .clone();
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![state, a.alertname.clone(), since, labels.join(" ")]
        })
        .collect();
    print_table(&["STATE", "ALERT", "SINCE", "LABELS"], &rows);
}

fn print_silences(silences: &[Silence]) {
    if silences.is_empty() {
        println!("no silences");
        return;
    }
    let now = crate::alerts::silence::now_ms();
    let rows: Vec<Vec<String>> = silences
        .iter()
        .map(|s| {
            let state = if s.is_active(now) {
                "active"
            } else {
                "expired"
            };
            let matchers: Vec<String> = s.matchers.iter().map(|m| m.to_string()).collect();
            vec![
                s.id.clone(),
                state.into(),
                crate::codec::timestamp::to_rfc3339(s.ends_at * 1_000_000),
                matchers.join(" "),
                s.comment.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "STATE", "ENDS", "MATCHERS", "COMMENT"], &rows);
}

fn print_table(head: &[&str], rows: &[Vec<String>]) {
    for line in super::table::lines(head, rows, head.len()) {
        println!("{line}");
    }
}
