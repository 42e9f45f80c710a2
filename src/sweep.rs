//! What `sweep` varies and produces: `--vary KEY=V1,V2` parsed, the spec's keys rewritten for one
//! point of the cross product, and the points (the data the table, CSV, JSON and SVG views read;
//! `command::sweep` runs it).

use planner::search::Candidate;
use serde::Serialize;
use serde_json::Value;

/// One `--vary KEY=V1,V2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    /// The key as written (`weights`, `parallel.ulysses`, `gpu`, `model`, `workload.steps`).
    pub key: String,
    /// Its values, in order.
    pub values: Vec<String>,
}

/// Most `--vary` options of one sweep.
pub const MAX_KEYS: usize = 16;
/// Most dotted parts of a key (`deployment.parallel.ulysses` has 3; the spec nests 4 deep).
pub const MAX_KEY_DEPTH: usize = 6;
/// Longest key, characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Most values of one key.
pub const MAX_VALUES: usize = 1000;
/// Longest value, characters (a YAML scalar or a short list; no deep nesting fits).
pub const MAX_VALUE_CHARS: usize = 256;
/// Most points of a sweep (the cross product, multiplied with a check).
pub const MAX_POINTS: usize = 10_000;

impl std::str::FromStr for Vary {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Vary, String> {
        let shown = planner::spec::echo(s, 64);
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| format!("'{shown}': expected KEY=V1,V2 (e.g. weights=bf16,fp8)"))?;
        let key = key.trim();
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(format!(
                "'{shown}': a key of {} characters (at most {MAX_KEY_CHARS})",
                key.chars().count()
            ));
        }
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > MAX_KEY_DEPTH {
            return Err(format!(
                "'{shown}': a key {} levels deep (at most {MAX_KEY_DEPTH})",
                parts.len()
            ));
        }
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(format!(
                "'{shown}': a key is spec keys joined by '.' (letters, digits and '_'), e.g. \
                 parallel.ulysses"
            ));
        }
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!(
                "'{shown}': expected KEY=V1,V2 (e.g. weights=bf16,fp8)"
            ));
        }
        if values.len() > MAX_VALUES {
            return Err(format!(
                "'{shown}': {} values (at most {MAX_VALUES})",
                values.len()
            ));
        }
        if let Some(v) = values.iter().find(|v| v.chars().count() > MAX_VALUE_CHARS) {
            return Err(format!(
                "'{shown}': a value of {} characters (at most {MAX_VALUE_CHARS})",
                v.chars().count()
            ));
        }
        Ok(Vary {
            key: key.to_string(),
            values,
        })
    }
}

/// The number of points of `vary`'s cross product, or why it is refused: more keys than
/// `MAX_KEYS`, a key given twice (its values would be overwritten), or more than `MAX_POINTS`
/// points (multiplied with a check, so 64 keys of 2 values cannot wrap to 0).
pub fn points(vary: &[Vary]) -> std::result::Result<usize, String> {
    if vary.len() > MAX_KEYS {
        return Err(format!(
            "{} --vary options (at most {MAX_KEYS})",
            vary.len()
        ));
    }
    for (i, v) in vary.iter().enumerate() {
        if vary[..i].iter().any(|w| path_of(&w.key) == path_of(&v.key)) {
            return Err(format!(
                "--vary {} is given twice: list every value in one --vary",
                planner::spec::echo(&v.key, 64)
            ));
        }
    }
    vary.iter()
        .try_fold(1usize, |n, v| n.checked_mul(v.values.len()))
        .filter(|&n| n <= MAX_POINTS)
        .ok_or_else(|| {
            format!("more than {MAX_POINTS} points: narrow the sweep (at most {MAX_POINTS})")
        })
}

/// The path a key sets in the spec: top-level keys and sections as written, anything else under
/// `deployment:`.
pub fn path_of(key: &str) -> Vec<String> {
    let top = ["model", "gpu", "runtime"];
    let sections = ["deployment.", "workload.", "goal.", "allow."];
    if top.contains(&key) || sections.iter().any(|s| key.starts_with(s)) {
        key.split('.').map(str::to_string).collect()
    } else {
        std::iter::once("deployment".to_string())
            .chain(key.split('.').map(str::to_string))
            .collect()
    }
}

pub fn set(doc: &mut Value, path: &[String], value: Value) {
    let mut at = doc;
    for (i, k) in path.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let map = at.as_object_mut().expect("object");
        if i + 1 == path.len() {
            map.insert(k.clone(), value);
            return;
        }
        at = map
            .entry(k.clone())
            .or_insert(Value::Object(Default::default()));
    }
}

/// What each point is costed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The spec's fixed deployment on its GPU.
    Estimate,
    /// A plan per point.
    Plan,
}

/// One point of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The varied keys' values, in `--vary` order.
    pub values: Vec<String>,
    /// `ok`, `invalid` (the rewritten spec fails validation), `illegal` (a legality rule),
    /// `out_of_memory` (estimate) or `infeasible` (plan).
    pub status: &'static str,
    /// Why, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// GPU (the plan's choice in plan mode).
    pub gpu: String,
    /// Deployment knobs in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knobs: Option<String>,
    /// Latency of one batch (plan: p50 over the mix), milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Per image, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_image_ms: Option<f64>,
    /// Uncertainty range of `latency_ms` (estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_ms: Option<f64>,
    /// High end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_ms: Option<f64>,
    /// Memory peak per GPU, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// The GPU's memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Images per second of one replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    /// USD per 1,000 images (plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_1000_images: Option<f64>,
}

impl Point {
    pub fn empty(values: Vec<String>, status: &'static str, reason: String) -> Point {
        Point {
            values,
            status,
            reason: Some(reason),
            gpu: String::new(),
            knobs: None,
            latency_ms: None,
            per_image_ms: None,
            low_ms: None,
            high_ms: None,
            peak_bytes: None,
            capacity_bytes: None,
            images_per_s: None,
            cost_per_1000_images: None,
        }
    }
}

/// The sweep (`--format json|yaml`).
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// Schema version.
    pub schema_version: u32,
    /// The spec swept.
    pub spec: String,
    /// How each point was costed.
    pub mode: Mode,
    /// Varied keys, in `--vary` order.
    pub keys: Vec<String>,
    /// Points, in cross-product order (the last key varies fastest).
    pub points: Vec<Point>,
    /// The base spec's Pareto front (plan mode without `--vary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pareto: Vec<Candidate>,
}

pub fn parse_value(v: &str) -> Value {
    // A YAML value: numbers and booleans typed, `[4]` a list; anything unparsable a string.
    match serde_saphyr::from_str::<Value>(v) {
        Ok(Value::Null) | Err(_) => Value::String(v.to_string()),
        Ok(x) => x,
    }
}
