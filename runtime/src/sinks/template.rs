//! Names made from event fields: `logs-{{ service }}`, as in Vector.
//!
//! Parsed once; rendering an event appends text and field values to a
//! reused buffer, so a constant name costs nothing per event.

use weir_layout::{EventView, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A dotted field path.
    Field(String),
}

impl Template {
    /// Parses `text`; an unclosed or empty `{{ }}` is an error.
    ///
    /// ```
    /// # use weir::sinks::template::Template;
    /// assert!(Template::parse("logs-{{ service }}").is_ok());
    /// assert!(Template::parse("logs-{{ service").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without `}}}}` in {text:?}"))?;
            let field = after[..close].trim();
            if field.is_empty() {
                return Err(format!("an empty `{{{{ }}}}` in {text:?}"));
            }
            parts.push(Part::Field(field.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text when no field is named.
    pub fn constant(&self) -> Option<&str> {
        match &self.parts[..] {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Renders `event` into `out` (cleared first); the error names the
    /// field that is missing or not a scalar.
    pub fn render<'a>(&'a self, event: &EventView<'_>, out: &mut String) -> Result<(), &'a str> {
        use std::fmt::Write;
        out.clear();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => match event.lookup(f) {
                    Some(Value::Str(s)) => out.push_str(s),
                    Some(Value::Int(i)) => {
                        let _ = write!(out, "{i}");
                    }
                    Some(Value::Float(x)) => {
                        let _ = write!(out, "{x}");
                    }
                    Some(Value::Bool(b)) => {
                        let _ = write!(out, "{b}");
                    }
                    _ => return Err(f),
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::BatchBuf;

    #[test]
    fn fields_fill_the_holes() {
        let mut b = BatchBuf::new();
        b.log(0)
            .field("service", "cart")
            .field("shard", 3)
            .finish()
            .unwrap();
        let t = Template::parse("logs-{{ service }}.{{shard}}").unwrap();
        let mut out = String::new();
        t.render(&b.get(0).unwrap(), &mut out).unwrap();
        assert_eq!(out, "logs-cart.3");
        assert_eq!(t.constant(), None);
        let missing = Template::parse("x-{{ region }}").unwrap();
        assert_eq!(missing.render(&b.get(0).unwrap(), &mut out), Err("region"));
        assert_eq!(Template::parse("plain").unwrap().constant(), Some("plain"));
    }
}
