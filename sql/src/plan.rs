//! From SQL to the pieces a stream runs: DataFusion plans the query once
//! over an empty table of the right schema, and the physical plan is split
//! at its aggregate.
//!
//! - Below the aggregate (`WHERE`, projections): expressions evaluated on
//!   every incoming batch, without re-planning ([`Steps`]).
//! - The aggregate: its group and aggregate expressions drive the
//!   incremental windowed aggregate (`aggregate.rs`).
//! - Above it (`HAVING`, the `SELECT` list, `ORDER BY`, `LIMIT`): the plan
//!   itself, re-run over each closed window's rows ([`Post`]).

use crate::schema::{time_type, SchemaRef, TIME};
use crate::window::{Rewritten, Window, WINDOW_END, WINDOW_START};
use crate::Error;
use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Field, Schema};
use datafusion::catalog::memory::{DataSourceExec, MemorySourceConfig};
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// A planned streaming query.
pub struct Plan {
    pub window: Option<Window>,
    /// The columns of the events the query reads (`_time` first): the only
    /// ones converted from each batch.
    pub read: SchemaRef,
    /// `read` plus the window columns: what the steps run on.
    pub input: SchemaRef,
    pub steps: Steps,
    /// The aggregate (raw-input mode) and what runs above it.
    pub aggregate: Option<(Arc<AggregateExec>, Post)>,
    pub output: SchemaRef,
    /// Output columns that carry `GROUP BY` values (not the window's).
    pub keys: Vec<String>,
    ctx: SessionContext,
    /// Runs DataFusion's (async) plans on the query's own thread.
    rt: tokio::runtime::Runtime,
}

impl Plan {
    /// Plans `q` over a table of `schema` registered under each of `tables`.
    pub fn new(q: &Rewritten, tables: &[String], schema: &Schema) -> Result<Plan, Error> {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if q.window.is_some() {
            for name in [WINDOW_START, WINDOW_END] {
                if schema.field_with_name(name).is_ok() {
                    return Err(Error::Schema(format!(
                        "the events have a field `{name}`, which windowed queries reserve for the window; rename it before the query"
                    )));
                }
                fields.push(Field::new(name, time_type(), true));
            }
        }
        let table = Arc::new(Schema::new(fields));
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        for name in tables {
            let mem = MemTable::try_new(table.clone(), vec![vec![]])?;
            ctx.register_table(name.as_str(), Arc::new(mem))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let physical = rt.block_on(async {
            let state = ctx.state();
            let logical = state.statement_to_plan(q.statement.clone()).await?;
            state.create_physical_plan(&logical).await
        })?;

        // Walk down to the aggregate, keeping the nodes above it.
        let mut above: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut node = physical.clone();
        let mut top_agg: Option<Arc<dyn ExecutionPlan>> = None;
        loop {
            if let Some(agg) = node.downcast_ref::<AggregateExec>() {
                if top_agg.is_none() {
                    top_agg = Some(node.clone());
                }
                if matches!(
                    agg.mode(),
                    AggregateMode::Final | AggregateMode::FinalPartitioned
                ) {
                    node = skip_exchanges(agg.input().clone());
                    continue;
                }
                break;
            }
            let children = node.children();
            match children.as_slice() {
                [] => break,
                [child] => {
                    let child = (*child).clone();
                    if top_agg.is_none() {
                        above.push(node.clone());
                    }
                    node = child;
                }
                _ => {
                    return Err(Error::Unsupported(format!(
                        "`{}` reads more than one input (joins, unions and subqueries do not run over streams)",
                        node.name()
                    )))
                }
            }
        }

        let output = physical.schema();
        let Some(top) = top_agg else {
            if q.window.is_some() {
                return Err(Error::Unsupported(
                    "a window needs an aggregate: GROUP BY the window and use count(*), sum(...), ...".into(),
                ));
            }
            if let Some(bad) = above.iter().find(|n| !is_row_wise(n.as_ref())) {
                return Err(Error::Unsupported(format!(
                    "`{}` needs the whole input; without a window a query runs row by row (filters and projections only)",
                    bad.name()
                )));
            }
            let steps = Steps::new(&physical)?;
            let (read, input) = steps.read(&table);
            return Ok(Plan {
                window: None,
                read,
                input,
                steps,
                aggregate: None,
                output,
                keys: Vec::new(),
                ctx,
                rt,
            });
        };
        let agg_node = node;
        let agg = agg_node
            .downcast_ref::<AggregateExec>()
            .expect("the walk stops at an aggregate");
        if q.window.is_none() {
            return Err(Error::Unsupported(
                "an aggregate over a stream needs a window: add tumble(interval '1 minute') (or hop/session) to GROUP BY".into(),
            ));
        }
        if agg.group_expr().has_grouping_set() {
            return Err(Error::Unsupported(
                "GROUPING SETS, CUBE and ROLLUP do not run over streams".into(),
            ));
        }
        let keys = key_columns(&top, &above);
        let agg = Arc::new(agg.clone());
        let steps = Steps::new(agg.input())?;
        let (read, input) = steps.read(&table);
        let post = Post {
            above,
            agg_schema: top.schema(),
        };
        Ok(Plan {
            window: q.window,
            read,
            input,
            steps,
            aggregate: Some((agg, post)),
            output,
            keys,
            ctx,
            rt,
        })
    }

    pub fn task_ctx(&self) -> Arc<datafusion::execution::TaskContext> {
        self.ctx.task_ctx()
    }
}

/// Follows the aggregate's group columns (but the window's) up through the
/// nodes above it, to the output columns that still carry them unchanged.
fn key_columns(top: &Arc<dyn ExecutionPlan>, above: &[Arc<dyn ExecutionPlan>]) -> Vec<String> {
    let groups = top
        .downcast_ref::<AggregateExec>()
        .map_or(0, |a| a.group_expr().expr().len());
    let mut schema = top.schema();
    let mut keys: Vec<bool> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| i < groups && f.name() != WINDOW_START && f.name() != WINDOW_END)
        .collect();
    for node in above.iter().rev() {
        let out = node.schema();
        keys = match node.downcast_ref::<ProjectionExec>() {
            Some(p) => p
                .expr()
                .iter()
                .map(|e| {
                    e.expr
                        .downcast_ref::<Column>()
                        .is_some_and(|c| keys.get(c.index()) == Some(&true))
                })
                .collect(),
            None => out
                .fields()
                .iter()
                .map(|f| schema.index_of(f.name()).is_ok_and(|i| keys[i]))
                .collect(),
        };
        schema = out;
    }
    schema
        .fields()
        .iter()
        .zip(keys)
        .filter(|(_, k)| *k)
        .map(|(f, _)| f.name().clone())
        .collect()
}

fn is_row_wise(n: &dyn ExecutionPlan) -> bool {
    n.is::<FilterExec>() || n.is::<ProjectionExec>() || is_exchange(n)
}

/// Operators that move batches between partitions: with one partition they
/// pass batches through.
fn is_exchange(n: &dyn ExecutionPlan) -> bool {
    matches!(
        n.name(),
        "CoalesceBatchesExec" | "CoalescePartitionsExec" | "RepartitionExec"
    )
}

fn skip_exchanges(mut n: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    while is_exchange(n.as_ref()) {
        match n.children().as_slice() {
            [c] => n = (*c).clone(),
            _ => break,
        }
    }
    n
}

/// The row-wise operators between the table and the aggregate (or the
/// output), evaluated in order on each batch.
pub struct Steps(Vec<Step>);

/// A query's first `WHERE`, to be evaluated on the columns it reads
/// before the rest of each row is converted: a selective filter then
/// converts the rows it keeps, not every row.
pub struct Prefilter {
    /// `_time` and the columns the predicate reads.
    pub schema: SchemaRef,
    /// The predicate, over `schema`.
    pub predicate: Arc<dyn PhysicalExpr>,
}

enum Step {
    /// The scan: keeps the columns the plan reads, by name.
    Columns(Vec<String>),
    Filter(Arc<dyn PhysicalExpr>, SchemaRef),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

impl Steps {
    fn new(top: &Arc<dyn ExecutionPlan>) -> Result<Steps, Error> {
        let mut steps = Vec::new();
        let mut node = top.clone();
        loop {
            if let Some(f) = node.downcast_ref::<FilterExec>() {
                steps.push(Step::Filter(f.predicate().clone(), node.schema()));
                node = f.input().clone();
            } else if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                let exprs = p.expr().iter().map(|e| e.expr.clone()).collect();
                steps.push(Step::Project(exprs, node.schema()));
                node = p.input().clone();
            } else if node.is::<DataSourceExec>() {
                let names = node
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                steps.push(Step::Columns(names));
                break;
            } else if is_exchange(node.as_ref()) {
                node = skip_exchanges(node);
            } else {
                return Err(Error::Unsupported(format!(
                    "`{}` does not run over streams (supported: WHERE, expressions, one GROUP BY with a window, HAVING, ORDER BY and LIMIT per window)",
                    node.name()
                )));
            }
        }
        steps.reverse();
        Ok(Steps(steps))
    }

    /// The first step's filter, when it reads fewer of the `read` columns
    /// than the query does and gives the same answer when evaluated twice
    /// (not `random()`): the rows it drops need no more than its columns.
    pub fn prefilter(&self, read: &SchemaRef) -> Option<Prefilter> {
        let Some(Step::Filter(predicate, _)) = self.0.get(1) else {
            return None;
        };
        if is_volatile(predicate) {
            return None;
        }
        let columns = collect_columns(predicate);
        let reads = |name: &str| name == TIME || columns.iter().any(|c| c.name() == name);
        let fields: Vec<Field> = read
            .fields()
            .iter()
            .filter(|f| reads(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        if fields.len() >= read.fields().len() {
            return None;
        }
        let schema = Arc::new(Schema::new(fields));
        let predicate = reassign_expr_columns(predicate.clone(), &schema).ok()?;
        Some(Prefilter { schema, predicate })
    }

    /// The event columns the scan reads (always `_time`), and those plus
    /// the table's window columns.
    fn read(&self, table: &SchemaRef) -> (SchemaRef, SchemaRef) {
        let names = match self.0.first() {
            Some(Step::Columns(names)) => names.as_slice(),
            _ => &[],
        };
        let is_window = |n: &str| n == WINDOW_START || n == WINDOW_END;
        let events: Vec<Field> = table
            .fields()
            .iter()
            .filter(|f| f.name() == TIME || (names.contains(f.name()) && !is_window(f.name())))
            .map(|f| f.as_ref().clone())
            .collect();
        let mut all = events.clone();
        all.extend(
            table
                .fields()
                .iter()
                .filter(|f| is_window(f.name()))
                .map(|f| f.as_ref().clone()),
        );
        (Arc::new(Schema::new(events)), Arc::new(Schema::new(all)))
    }

    /// Applies the steps to a batch of table rows.
    pub fn run(&self, mut batch: RecordBatch) -> Result<RecordBatch, Error> {
        for step in &self.0 {
            batch = match step {
                Step::Columns(names) => {
                    let schema = batch.schema();
                    let idx = names
                        .iter()
                        .map(|n| schema.index_of(n))
                        .collect::<Result<Vec<_>, _>>()?;
                    batch.project(&idx)?
                }
                Step::Filter(pred, out) => {
                    let mask = pred.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let filtered = arrow::compute::filter_record_batch(&batch, mask.as_boolean())?;
                    reconcile(filtered, out)?
                }
                Step::Project(exprs, out) => {
                    let n = batch.num_rows();
                    let cols = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch)?.into_array(n))
                        .collect::<Result<Vec<ArrayRef>, _>>()?;
                    RecordBatch::try_new(out.clone(), cols)?
                }
            };
        }
        Ok(batch)
    }
}

/// A filter may also project: keep the columns its output names.
fn reconcile(batch: RecordBatch, out: &SchemaRef) -> Result<RecordBatch, Error> {
    if batch.schema().fields().len() == out.fields().len() {
        return Ok(batch);
    }
    let schema = batch.schema();
    let idx = out
        .fields()
        .iter()
        .map(|f| schema.index_of(f.name()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(batch.project(&idx)?)
}

/// What runs above the aggregate, once per closed window.
#[derive(Clone)]
pub struct Post {
    above: Vec<Arc<dyn ExecutionPlan>>,
    /// The (final) aggregate's output: group columns then aggregate values.
    pub agg_schema: SchemaRef,
}

impl Post {
    /// Runs the operators above the aggregate over `rows`.
    pub fn run(&self, rows: RecordBatch, plan: &Plan) -> Result<Vec<RecordBatch>, Error> {
        if self.above.is_empty() {
            return Ok(vec![rows]);
        }
        let mut node: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![rows]], self.agg_schema.clone(), None)?;
        for parent in self.above.iter().rev() {
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            node = parent.clone().replace_children(vec![node], keep)?;
        }
        let ctx = plan.task_ctx();
        Ok(plan
            .rt
            .block_on(datafusion::physical_plan::collect(node, ctx))?)
    }
}
