//! Annotation templates (`summary`, `description`, ...), in minijinja
//! (Jinja2): `{{ service }} has {{ errors }} errors`. A template sees the
//! row's columns, `labels` and `alertname`.

use super::matcher::Labels;
use minijinja::{Environment, Value};
use std::collections::BTreeSet;

pub struct Templates {
    env: Environment<'static>,
    /// Annotation names, in order; each is a template of the same name.
    names: Vec<String>,
}

/// Names every template may use besides the row's columns.
const BUILTINS: [&str; 2] = ["labels", "alertname"];

impl Templates {
    /// Compiles each `(annotation, source)`; an error names the annotation.
    pub fn new(sources: &[(String, String)]) -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut names = Vec::new();
        for (name, src) in sources {
            env.add_template_owned(name.clone(), src.clone())
                .map_err(|e| format!("{name}: {}", describe(&e)))?;
            names.push(name.clone());
        }
        Ok(Templates { env, names })
    }

    /// Names a template uses that are neither in `columns` nor built in,
    /// as `(annotation, name)`: a typo found before anything runs.
    pub fn unknown_names(&self, columns: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for name in &self.names {
            let Ok(t) = self.env.get_template(name) else {
                continue;
            };
            let used: BTreeSet<String> = t.undeclared_variables(false).into_iter().collect();
            for v in used {
                if !columns.contains(&v) && !BUILTINS.contains(&v.as_str()) {
                    out.push((name.clone(), v));
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Renders every annotation over `ctx`; one that fails carries the
    /// error instead of its text, so the notification still goes out.
    pub fn render(&self, ctx: &Value) -> Labels {
        let mut out = Labels::new();
        for name in &self.names {
            let text = match self.env.get_template(name).and_then(|t| t.render(ctx)) {
                Ok(s) => s,
                Err(e) => format!("(template error: {})", describe(&e)),
            };
            out.insert(name.clone(), text);
        }
        out
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_columns_and_labels_and_report_unknown_names() {
        let t = Templates::new(&[
            (
                "summary".into(),
                "{{ service }}: {{ errors }} errors".into(),
            ),
            ("team".into(), "{{ labels.team }} {{ sevrity }}".into()),
        ])
        .unwrap();
        let ctx = minijinja::context! { service => "cart", errors => 7, labels => Value::from_serialize(Labels::from([("team".into(), "web".into())])) };
        let out = t.render(&ctx);
        assert_eq!(out["summary"], "cart: 7 errors");
        assert!(out["team"].starts_with("web"));
        let unknown = t.unknown_names(&["service".into(), "errors".into()]);
        assert_eq!(unknown, [("team".to_string(), "sevrity".to_string())]);
        let err = Templates::new(&[("summary".into(), "{{ service ".into())])
            .err()
            .unwrap();
        assert!(err.starts_with("summary: syntax error"), "{err}");
    }
}
