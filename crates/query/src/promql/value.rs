//! The values a PromQL expression evaluates to.

use std::sync::Arc;

use lastmile_model::Labels;

/// One element of an instant vector. `t` is the sample's own timestamp for a selector
/// (what `timestamp()` reads) and the evaluation time for computed values.
#[derive(Clone, Debug)]
pub struct Sample {
    pub metric: Arc<Labels>,
    pub t: i64,
    pub v: f64,
}

/// A series of points: a row of a range vector or of a range query's result.
#[derive(Clone, Debug)]
pub struct Series {
    pub metric: Arc<Labels>,
    pub points: Vec<(i64, f64)>,
}

#[derive(Clone, Debug)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// What a query returns: an instant query's value at `t`, or a range query's matrix.
#[derive(Clone, Debug)]
pub enum QueryResult {
    Instant { t: i64, value: Value },
    Range(Vec<Series>),
}
