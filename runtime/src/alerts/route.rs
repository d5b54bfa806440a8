//! The routing tree, as in Alertmanager: every alert enters at the root;
//! the first child whose matchers match takes it (and the children after
//! it too, where that child says `continue`); an alert no child takes
//! stays with the node. Children inherit the settings they leave out.

use super::matcher::{all_match, Labels, Matcher};
use crate::config::RouteConfig;
use std::time::Duration;

/// A node, with inherited settings filled in.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    matchers: Vec<Matcher>,
    continue_: bool,
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub enum GroupBy {
    Labels(Vec<String>),
    /// `["..."]`: every label, so each alert is a group of its own.
    All,
}

const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

impl Route {
    /// Builds the tree; `fallback` is the receiver when the root names none.
    /// Errors are `(key, message)`.
    pub fn new(cfg: &RouteConfig, fallback: Option<&str>) -> Result<Route, (String, String)> {
        let root = Route {
            id: String::new(),
            receiver: String::new(),
            group_by: GroupBy::Labels(vec![super::alert::ALERTNAME.into()]),
            group_wait: DEFAULT_WAIT,
            group_interval: DEFAULT_INTERVAL,
            repeat_interval: DEFAULT_REPEAT,
            matchers: Vec::new(),
            continue_: false,
            routes: Vec::new(),
        };
        let mut r = Self::child(cfg, &root, "route".into())?;
        if r.receiver.is_empty() {
            r.receiver = fallback
                .ok_or_else(|| {
                    (
                        "receiver".into(),
                        "name the receiver alerts go to by default".into(),
                    )
                })?
                .to_string();
            fill(&mut r.routes, &r.receiver);
        }
        Ok(r)
    }

    fn child(cfg: &RouteConfig, parent: &Route, id: String) -> Result<Route, (String, String)> {
        let dur = |key: &str, v: &Option<String>, inherited: Duration| match v {
            None => Ok(inherited),
            Some(text) => weir_sql::parse_duration(text)
                .map(|ns| Duration::from_nanos(ns as u64))
                .map_err(|e| (format!("{id}.{key}"), e)),
        };
        let matchers = cfg
            .matchers
            .iter()
            .map(|m| Matcher::parse(m).map_err(|e| (format!("{id}.matchers"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut r = Route {
            id: id.clone(),
            receiver: cfg.receiver.clone().unwrap_or(parent.receiver.clone()),
            group_by: match &cfg.group_by {
                None => parent.group_by.clone(),
                Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
                Some(g) => GroupBy::Labels(g.clone()),
            },
            group_wait: dur("group_wait", &cfg.group_wait, parent.group_wait)?,
            group_interval: dur("group_interval", &cfg.group_interval, parent.group_interval)?,
            repeat_interval: dur(
                "repeat_interval",
                &cfg.repeat_interval,
                parent.repeat_interval,
            )?,
            matchers,
            continue_: cfg.continue_,
            routes: Vec::new(),
        };
        for (i, c) in cfg.routes.iter().enumerate() {
            let child = Self::child(c, &r, format!("{id}.routes[{i}]"))?;
            r.routes.push(child);
        }
        Ok(r)
    }

    /// The nodes that take an alert with `labels`.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut out = Vec::new();
        for child in &self.routes {
            if all_match(&child.matchers, labels) {
                out.extend(child.matching(labels));
                if !child.continue_ {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Every receiver the tree names, with the node that names it.
    pub fn receivers(&self) -> Vec<(&str, &str)> {
        let mut out = vec![(self.id.as_str(), self.receiver.as_str())];
        for c in &self.routes {
            out.extend(c.receivers());
        }
        out
    }

    /// The group an alert belongs to under this node: the node and the
    /// values of its `group_by` labels.
    pub fn group(&self, labels: &Labels) -> (String, Labels) {
        let group: Labels = match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        };
        let key = format!("{}:{}", self.id, super::alert::fingerprint(&group));
        (key, group)
    }
}

/// Children left without a receiver take the root's default.
fn fill(routes: &mut [Route], receiver: &str) {
    for r in routes {
        if r.receiver.is_empty() {
            r.receiver = receiver.to_string();
        }
        fill(&mut r.routes, &r.receiver.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::super::matcher::labels;
    use super::*;

    #[test]
    fn alerts_go_to_the_first_matching_child_unless_it_continues() {
        let cfg: RouteConfig = toml::from_str(
            r#"
receiver = "default"
group_by = ["alertname", "service"]
group_wait = "1s"
[[routes]]
matchers = ['severity="page"']
receiver = "pager"
continue = true
group_wait = "0s"
[[routes]]
matchers = ['team=~"web|shop"']
receiver = "web"
[[routes]]
matchers = ['severity="page"']
receiver = "after-continue"
"#,
        )
        .unwrap();
        let r = Route::new(&cfg, None).unwrap();
        let names = |l: &Labels| -> Vec<String> {
            r.matching(l).iter().map(|n| n.receiver.clone()).collect()
        };
        assert_eq!(
            names(&labels(&[("severity", "page"), ("team", "web")])),
            ["pager", "web"]
        );
        assert_eq!(
            names(&labels(&[("severity", "page")])),
            ["pager", "after-continue"]
        );
        assert_eq!(names(&labels(&[("team", "db")])), ["default"]);
        let pager = r.matching(&labels(&[("severity", "page")]))[0];
        assert_eq!(pager.group_wait, Duration::ZERO);
        assert_eq!(pager.group_interval, DEFAULT_INTERVAL, "inherited");
        let (k1, g) = pager.group(&labels(&[
            ("alertname", "a"),
            ("service", "x"),
            ("pod", "1"),
        ]));
        let (k2, _) = pager.group(&labels(&[
            ("alertname", "a"),
            ("service", "x"),
            ("pod", "2"),
        ]));
        assert_eq!(k1, k2, "pods of one service share a group");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn bad_durations_and_matchers_name_their_key() {
        let cfg: RouteConfig =
            toml::from_str("receiver = \"x\"\n[[routes]]\nmatchers = ['a']\n").unwrap();
        assert_eq!(
            Route::new(&cfg, None).unwrap_err().0,
            "route.routes[0].matchers"
        );
        let cfg: RouteConfig = toml::from_str("group_wait = \"soon\"\n").unwrap();
        assert_eq!(
            Route::new(&cfg, Some("x")).unwrap_err().0,
            "route.group_wait"
        );
        assert!(Route::new(&RouteConfig::default(), None).is_err());
    }
}
