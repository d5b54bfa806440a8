//! A boolean SQL expression over result rows, such as an alert rule's
//! `errors > 100 AND p99 > 250`: planned once by DataFusion against the
//! rows' schema, then evaluated on whole batches.

use crate::Error;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

/// A compiled condition.
///
/// ```
/// use weir_sql::arrow::array::{Int64Array, RecordBatch};
/// use weir_sql::arrow::datatypes::{DataType, Field, Schema};
/// use std::sync::Arc;
///
/// let schema = Arc::new(Schema::new(vec![Field::new("errors", DataType::Int64, true)]));
/// let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![3, 300]))]).unwrap();
/// let cond = weir_sql::Condition::new("errors > 100", &schema).unwrap();
/// let holds = cond.evaluate(&rows).unwrap();
/// assert!(!holds.value(0) && holds.value(1));
/// ```
#[derive(Debug, Clone)]
pub struct Condition {
    expr: Arc<dyn PhysicalExpr>,
}

impl Condition {
    /// Plans `sql` over rows of `schema`; it must be boolean.
    pub fn new(sql: &str, schema: &SchemaRef) -> Result<Condition, Error> {
        check_syntax(sql)?;
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let logical = ctx.parse_sql_expr(sql, &df_schema)?;
        let expr = ctx.create_physical_expr(logical, &df_schema)?;
        let ty = expr.data_type(schema)?;
        if ty != DataType::Boolean {
            return Err(Error::Sql(format!(
                "`{sql}` is {ty}, not a condition: compare it, e.g. `{sql} > 0`"
            )));
        }
        Ok(Condition { expr })
    }

    /// Whether each row meets the condition; NULL counts as not.
    pub fn evaluate(&self, rows: &RecordBatch) -> Result<BooleanArray, Error> {
        let v = self.expr.evaluate(rows)?.into_array(rows.num_rows())?;
        let b = v.as_boolean();
        Ok(match b.nulls() {
            Some(_) => arrow::compute::prep_null_mask_filter(b),
            None => b.clone(),
        })
    }
}

/// Checks that `sql` parses as one expression, for when the rows' schema
/// is not known yet.
pub fn check_syntax(sql: &str) -> Result<(), Error> {
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .map_err(|e| Error::Sql(format!("`{sql}`: {e}")))?;
    parser
        .parse_expr()
        .map_err(|e| Error::Sql(format!("`{sql}`: {e}")))?;
    match parser.peek_token().token {
        datafusion::sql::sqlparser::tokenizer::Token::EOF => Ok(()),
        t => Err(Error::Sql(format!(
            "`{sql}`: unexpected `{t}` after the condition"
        ))),
    }
}
