//! Windows written in the SQL itself: `tumble(interval '1 minute')`,
//! `hop(interval '10 seconds', interval '1 minute')` (slide, width) and
//! `session(interval '30 seconds')` (gap).
//!
//! The call is rewritten, before DataFusion plans the query, to the column
//! `window_start`, and `window_end` joins the `GROUP BY`, so both are plain
//! grouping columns that the query may select. The streaming aggregate fills
//! them: by event time for fixed windows, from each session's first and last
//! events for sessions.

use crate::interval::parse_duration;
use crate::Error;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::{
    self, visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, SetExpr,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use std::ops::ControlFlow;

/// The column a window call becomes.
pub const WINDOW_START: &str = "window_start";
/// The end of each window (exclusive), grouped alongside the start.
pub const WINDOW_END: &str = "window_end";

/// A window over event time, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Back-to-back windows of `width`.
    Tumble { width: i64 },
    /// Windows of `width` starting every `slide`; an event is in each window
    /// that covers it.
    Hop { slide: i64, width: i64 },
    /// Per group: events closer than `gap` to each other share a window.
    Session { gap: i64 },
}

impl Window {
    /// Calls `f` with the start of each fixed window that holds `ts`, oldest
    /// first. Sessions have no fixed windows.
    #[inline]
    pub fn for_each_start(&self, ts: i64, mut f: impl FnMut(i64)) {
        match *self {
            Window::Tumble { width } => f(ts - ts.rem_euclid(width)),
            Window::Hop { slide, width } => {
                let last = ts - ts.rem_euclid(slide);
                let mut first = last;
                while first - slide > ts - width {
                    first -= slide;
                }
                let mut s = first;
                while s <= last {
                    f(s);
                    s += slide;
                }
            }
            Window::Session { .. } => {}
        }
    }

    /// How long a window lasts from its start, for fixed windows.
    pub fn width(&self) -> Option<i64> {
        match *self {
            Window::Tumble { width } | Window::Hop { width, .. } => Some(width),
            Window::Session { .. } => None,
        }
    }

    /// How far apart the ends of successive windows of one group are: the
    /// width, the slide, or for sessions the gap (the soonest a later
    /// session of the same group can close).
    pub fn step(&self) -> i64 {
        match *self {
            Window::Tumble { width } => width,
            Window::Hop { slide, .. } => slide,
            Window::Session { gap } => gap,
        }
    }
}

/// A query with its window call rewritten away.
#[derive(Debug)]
pub struct Rewritten {
    pub statement: Statement,
    pub window: Option<Window>,
}

/// Parses `sql` (one `SELECT`) and rewrites its window call.
pub fn rewrite(sql: &str) -> Result<Rewritten, Error> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| Error::Sql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Error::Sql(format!(
            "expected one SELECT statement, found {}",
            statements.len()
        )));
    }
    let mut statement = statements.pop_front().expect("one statement");
    let Statement::Statement(inner) = &mut statement else {
        return Err(Error::Sql("expected a SELECT statement".into()));
    };
    let ast::Statement::Query(query) = inner.as_mut() else {
        return Err(Error::Sql("expected a SELECT statement".into()));
    };

    let mut window: Option<Window> = None;
    let mut problem: Option<Error> = None;
    let _ = visit_expressions_mut(query.as_mut(), |expr| {
        let Expr::Function(f) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        if !matches!(name.as_str(), "tumble" | "hop" | "session") {
            return ControlFlow::Continue(());
        }
        let found = window_of(&name, &f.args);
        match found {
            Ok(w) if window.is_none_or(|seen| seen == w) => {
                window = Some(w);
                *expr = Expr::Identifier(Ident::new(WINDOW_START));
                ControlFlow::Continue(())
            }
            Ok(_) => {
                problem = Some(Error::Sql(
                    "a query has one window: every window call must be the same".into(),
                ));
                ControlFlow::Break(())
            }
            Err(e) => {
                problem = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = problem {
        return Err(e);
    }
    if window.is_some() {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(Error::Sql(
                "a windowed query must be a single SELECT ... GROUP BY".into(),
            ));
        };
        let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
            return Err(Error::Sql(
                "GROUP BY ALL is not supported with windows; list the columns".into(),
            ));
        };
        let named =
            |e: &Expr, n: &str| matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(n));
        if !exprs.iter().any(|e| named(e, WINDOW_END)) {
            exprs.push(Expr::Identifier(Ident::new(WINDOW_END)));
        }
    }
    Ok(Rewritten { statement, window })
}

/// The tables a query reads (`FROM` and `JOIN`), in order of appearance.
pub fn tables(sql: &str) -> Result<Vec<String>, Error> {
    let r = rewrite(sql)?;
    let mut names: Vec<String> = Vec::new();
    let Statement::Statement(inner) = &r.statement else {
        return Ok(names);
    };
    let _ = ast::visit_relations(inner.as_ref(), |rel| {
        let name = rel.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(names)
}

fn window_of(name: &str, args: &FunctionArguments) -> Result<Window, Error> {
    let usage = match name {
        "tumble" => "tumble(interval '1 minute')",
        "hop" => "hop(interval '10 seconds', interval '1 minute') (slide, then width)",
        _ => "session(interval '30 seconds') (the gap)",
    };
    let bad = |why: String| Error::Sql(format!("{name}(...): {why}; write {usage}"));
    let FunctionArguments::List(list) = args else {
        return Err(bad("arguments are missing".into()));
    };
    let mut durations = Vec::new();
    for arg in &list.args {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
            return Err(bad(format!("`{arg}` is not an interval")));
        };
        let text = match e {
            Expr::Interval(i) => {
                let value = match i.value.as_ref() {
                    Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                match &i.leading_field {
                    Some(unit) => format!("{value} {unit}"),
                    None => value,
                }
            }
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                other => return Err(bad(format!("`{other}` is not an interval"))),
            },
            other => return Err(bad(format!("`{other}` is not an interval"))),
        };
        let ns = parse_duration(&text).map_err(bad)?;
        if ns <= 0 {
            return Err(bad(format!("`{text}` must be longer than zero")));
        }
        durations.push(ns);
    }
    match (name, durations.as_slice()) {
        ("tumble", [width]) => Ok(Window::Tumble { width: *width }),
        ("hop", [slide, width]) if slide <= width => Ok(Window::Hop {
            slide: *slide,
            width: *width,
        }),
        ("hop", [_, _]) => Err(bad("the slide is longer than the width".into())),
        ("session", [gap]) => Ok(Window::Session { gap: *gap }),
        _ => Err(bad(format!(
            "takes {} interval(s)",
            if name == "hop" { 2 } else { 1 }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_is_rewritten_and_end_is_grouped() {
        let r = rewrite(
            "SELECT tumble(interval '1 minute') AS w, service, count(*) FROM logs GROUP BY w, service",
        )
        .unwrap();
        assert_eq!(
            r.window,
            Some(Window::Tumble {
                width: 60_000_000_000
            })
        );
        let text = r.statement.to_string();
        assert!(text.contains("window_start AS w"), "{text}");
        assert!(text.contains("GROUP BY w, service, window_end"), "{text}");
    }

    #[test]
    fn tables_are_listed() {
        let t = tables("SELECT count(*) FROM app GROUP BY tumble(interval '1 minute')").unwrap();
        assert_eq!(t, ["app"]);
    }

    #[test]
    fn hop_and_session_arguments() {
        let r = rewrite("SELECT count(*) FROM t GROUP BY hop(interval '10' second, '1 minute')")
            .unwrap();
        assert_eq!(
            r.window,
            Some(Window::Hop {
                slide: 10_000_000_000,
                width: 60_000_000_000
            })
        );
        let r = rewrite("SELECT count(*) FROM t GROUP BY session(interval '30 seconds'), user")
            .unwrap();
        assert_eq!(
            r.window,
            Some(Window::Session {
                gap: 30_000_000_000
            })
        );
        let e = rewrite(
            "SELECT count(*) FROM t GROUP BY hop(interval '1 minute', interval '1 second')",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("slide is longer than the width"),
            "{e}"
        );
        let e = rewrite("SELECT count(*) FROM t GROUP BY tumble(5)").unwrap_err();
        assert!(e.to_string().contains("tumble(interval '1 minute')"), "{e}");
        assert!(rewrite("SELECT 1; SELECT 2").is_err());
    }

    #[test]
    fn fixed_windows_cover_each_event_exactly() {
        let s = 1_000_000_000;
        let mut starts = Vec::new();
        Window::Tumble { width: 60 * s }.for_each_start(61 * s, |x| starts.push(x));
        assert_eq!(starts, [60 * s]);
        starts.clear();
        Window::Tumble { width: 60 * s }.for_each_start(-1, |x| starts.push(x));
        assert_eq!(starts, [-60 * s]);
        starts.clear();
        Window::Hop {
            slide: 10 * s,
            width: 30 * s,
        }
        .for_each_start(25 * s, |x| starts.push(x));
        assert_eq!(starts, [0, 10 * s, 20 * s]);
        starts.clear();
        Window::Hop {
            slide: 10 * s,
            width: 30 * s,
        }
        .for_each_start(30 * s, |x| starts.push(x));
        assert_eq!(starts, [10 * s, 20 * s, 30 * s]);
        starts.clear();
        Window::Hop {
            slide: 20 * s,
            width: 30 * s,
        }
        .for_each_start(35 * s, |x| starts.push(x));
        assert_eq!(starts, [20 * s]);
    }
}
