//! Raw spec to validated spec: every check, every problem collected with its location and a hint.

use crate::confidence::{DEFAULT_CONFIDENCE, MAX_CONFIDENCE, MIN_CONFIDENCE};
pub use crate::message::{echo, num};
use serde_saphyr::Spanned;

use super::raw::*;
use super::{
    Allow, FleetEntry, Goal, Location, Network, Objective, Pins, Problem, Share, Spec, SpecError,
};
use crate::catalog::{Catalog, Guidance, Model, RuntimeProfile};
use crate::deployment::*;

mod keys;
mod recover;
mod spec;

use recover::parse_raw;

/// Loads a runtime profile named by a path in `runtime:` (the caller owns file access); an error
/// is one message per problem of the profile. The profile lives as long as the catalog (`'c`):
/// the caller owns both.
pub type ProfileLoader<'a, 'c> = &'a dyn Fn(&str) -> Result<&'c RuntimeProfile, Vec<String>>;

/// At most this many problems are reported (the rest are counted).
pub const MAX_PROBLEMS: usize = 50;
/// At most this many traffic classes (`workload.resolutions`) or fleet entries: each one multiplies
/// the estimates of every candidate.
pub const MAX_ENTRIES: usize = 16;
/// At most this many entries in an `allow:` list.
pub const MAX_ALLOW: usize = 16;

/// Whether a `runtime:` value names a profile file rather than a catalog id.
pub fn is_profile_path(s: &str) -> bool {
    s.ends_with(".yaml") || s.ends_with(".yml") || s.contains('/')
}

/// A value echoed in a problem: escaped and cut at 64 characters.
fn v(s: &str) -> String {
    echo(s, 64)
}

/// Parses and validates a spec against the embedded catalog; `runtime:` must be a catalog id.
pub fn parse(text: &str) -> Result<Spec<'static>, SpecError> {
    parse_with(
        text,
        &|path| {
            Err(vec![format!(
                "runtime profile files ({}) are read by the command-line tool",
                v(path)
            )])
        },
        Catalog::get(),
    )
}

/// Parses and validates a spec against `catalog`; `runtime:` may name a profile file, read
/// through `load`.
pub fn parse_with<'c>(
    text: &str,
    load: ProfileLoader<'_, 'c>,
    catalog: &'c Catalog,
) -> Result<Spec<'c>, SpecError> {
    let (raw, problems) = parse_raw(text);
    let mut v = Validator {
        problems,
        load,
        catalog,
    };
    let spec = raw.and_then(|raw| v.spec(raw));
    match spec {
        Some(s) if v.problems.is_empty() => Ok(s),
        _ => {
            let mut problems = v.problems;
            problems.sort_by_key(|p| p.location.map(|l| (l.line, l.column)).unwrap_or((0, 0)));
            if problems.len() > MAX_PROBLEMS {
                // The parse stops early, so how many more there are is unknown.
                problems.truncate(MAX_PROBLEMS);
                problems.push(Problem {
                    field: String::new(),
                    location: None,
                    message: format!(
                        "more problems follow (only the first {MAX_PROBLEMS} are listed)"
                    ),
                    hint: Some("fix these first".into()),
                });
            }
            Err(SpecError { problems })
        }
    }
}

struct Validator<'a, 'c> {
    problems: Vec<Problem>,
    load: ProfileLoader<'a, 'c>,
    catalog: &'c Catalog,
}

fn loc<T>(s: &Spanned<T>) -> Option<Location> {
    let l = s.referenced;
    (l.line() > 0).then(|| Location {
        line: l.line(),
        column: l.column(),
    })
}

fn one_of<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|x| name(*x) == s)
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|x| name(*x)).collect::<Vec<_>>().join(", ")
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_resolution(s: &str) -> Option<Resolution> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    Some(Resolution {
        width: w.trim().parse().ok()?,
        height: h.trim().parse().ok()?,
    })
}

/// Largest latency goal accepted, milliseconds (one hour).
const MAX_LATENCY_MS: f64 = 3.6e6;
/// Largest rate goal accepted, images per second.
const MAX_IMAGES_PER_S: f64 = 1e5;
/// Largest GPU price accepted, USD per hour.
const MAX_PRICE_PER_HOUR: f64 = 1e4;

impl<'c> Validator<'_, 'c> {
    /// The same workload key given in `deployment:` and `workload:` with different values.
    fn conflict(&mut self, key: &str, workload: u32, pin: u32, at: Option<Location>) {
        self.problem(
            &format!("workload.{key}"),
            at,
            format!("{workload} here, but deployment.{key} is {pin}"),
            format!("give {key} once, or the same value in both"),
        );
    }

    fn problem(
        &mut self,
        field: &str,
        location: Option<Location>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let hint = hint.into();
        self.problems.push(Problem {
            field: field.into(),
            location,
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
        });
    }

    /// A technique module's problem with its key, placed at the key.
    fn key_problem(&mut self, field: &str, at: Option<Location>, e: crate::technique::KeyProblem) {
        self.problem(field, at, e.message, e.hint);
    }

    fn choice<T: Copy>(
        &mut self,
        field: &str,
        s: &Spanned<String>,
        all: &[T],
        name: impl Fn(T) -> &'static str + Copy,
    ) -> Option<T> {
        let got = one_of(all, name, &s.value);
        if got.is_none() {
            self.problem(
                field,
                loc(s),
                format!("unknown value '{}'", v(&s.value)),
                format!("expected one of {}", names(all, name)),
            );
        }
        got
    }

    fn count(&mut self, field: &str, s: &Spanned<i64>, min: i64, max: i64) -> Option<u32> {
        if s.value < min || s.value > max {
            self.problem(
                field,
                loc(s),
                format!("{} is out of range", s.value),
                format!("use an integer from {min} to {max}"),
            );
            None
        } else {
            Some(s.value as u32)
        }
    }

    /// A number in `(0, max]`, or `[0, max]` with `zero` (NaN and infinities never).
    fn number(&mut self, field: &str, s: &Spanned<f64>, zero: bool, max: f64) -> Option<f64> {
        let x = s.value;
        if x.is_finite() && (x > 0.0 || zero && x == 0.0) && x <= max {
            Some(x)
        } else {
            let lo = if zero { "[0" } else { "(0" };
            self.problem(
                field,
                loc(s),
                format!("{} is out of range", num(x)),
                format!("use a number in {lo}, {}]", num(max)),
            );
            None
        }
    }

    /// `goal.confidence`: a probability from the median up (`confidence::MIN_CONFIDENCE` to
    /// `MAX_CONFIDENCE`); the default where it is wrong, the problem recorded.
    fn confidence(&mut self, s: &Spanned<f64>) -> f64 {
        let x = s.value;
        if (MIN_CONFIDENCE..=MAX_CONFIDENCE).contains(&x) {
            return x;
        }
        self.problem(
            "goal.confidence",
            loc(s),
            format!("{} is out of range", num(x)),
            format!(
                "use a probability in [{MIN_CONFIDENCE}, {MAX_CONFIDENCE}]: 0.9 judges every target at the 90th percentile of the model's error, 0.5 at the point estimate"
            ),
        );
        DEFAULT_CONFIDENCE
    }

    fn resolution(&mut self, field: &str, s: &Spanned<String>) -> Option<Resolution> {
        match parse_resolution(&s.value) {
            Some(r)
                if r.width >= 64
                    && r.height >= 64
                    && r.width <= 8192
                    && r.height <= 8192
                    && r.width % 16 == 0
                    && r.height % 16 == 0 =>
            {
                Some(r)
            }
            Some(_) => {
                self.problem(
                    field,
                    loc(s),
                    format!("'{}' is not a usable image size", v(&s.value)),
                    "use multiples of 16 pixels between 64 and 8192, e.g. 1024x1024",
                );
                None
            }
            None => {
                self.problem(
                    field,
                    loc(s),
                    format!("'{}' is not WIDTHxHEIGHT", v(&s.value)),
                    "write the size as e.g. 1024x1024",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recover::mask_entry;
    use super::*;

    #[test]
    fn contract_estimate_keys_are_accepted() {
        let s = parse(
            "model: flux2-klein-4b\ngpu: h200\nruntime: diffusers\ndeployment:\n  resolution: 1024x1024\n  batch: 1\n  steps: 4\n  weights: bf16\n  attention: sdpa\n  text_encoder: resident\n  offload: none\n  vae_tiling: false\n  cache: none\n  parallel: {gpus: 1}\n",
        )
        .unwrap();
        let d = s.deployment();
        assert_eq!(
            d.resolution,
            Resolution {
                width: 1024,
                height: 1024
            }
        );
        assert_eq!(d.steps, 4);
        assert_eq!(s.estimate_gpu().unwrap().id, "h200");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let e =
            parse("model: flux2-klein-4b\ngpu: h201\ndeployment:\n  weights: fp16\n  batch: 0\n")
                .unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert_eq!(e.problems[0].location.unwrap().line, 2);
        assert_eq!(e.problems[1].field, "deployment.weights");
        assert_eq!(e.problems[1].location.unwrap().line, 4);
        assert!(
            e.problems[1]
                .hint
                .as_deref()
                .unwrap()
                .contains("fp8-storage")
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_location() {
        let e = parse("model: flux2-klein-4b\ndeploymnt:\n  batch: 1\n").unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].message.contains("deploymnt"), "{e}");
        assert_eq!(e.problems[0].location.unwrap().line, 2);
    }

    #[test]
    fn unknown_keys_and_type_errors_are_reported_together_with_the_rest() {
        let e = parse(
            "model: flux2-klein-4b\ngpu: h201\ndeployment:\n  bach: 2\n  steps: four\n  parallel: {gpus: 2, ulyses: 2}\nfleet:\n  - {gpu: h200, available: many}\nallow:\n  batch: [1, 1]\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "gpu",
                "deployment.bach",
                "deployment.steps",
                "deployment.parallel.ulyses",
                "fleet.available",
                "allow.batch"
            ],
            "{e}"
        );
        let lines: Vec<u64> = e
            .problems
            .iter()
            .map(|p| p.location.unwrap().line)
            .collect();
        assert_eq!(lines, [2, 4, 5, 6, 8, 10]);
    }

    #[test]
    fn a_masked_entry_leaves_every_other_position_alone() {
        let text = "a: {x: 1, bad: 2, y: 3}\nb:\n  c: 1\n  - d\ne: 2\n";
        let flow = mask_entry(
            text,
            Location {
                line: 1,
                column: 11,
            },
        )
        .unwrap();
        assert_eq!(flow, "a: {x: 1,         y: 3}\nb:\n  c: 1\n  - d\ne: 2\n");
        let block = mask_entry(text, Location { line: 2, column: 1 }).unwrap();
        assert_eq!(block, "a: {x: 1, bad: 2, y: 3}\n  \n      \n     \ne: 2\n");
    }

    #[test]
    fn dbcache_parameters_come_as_a_map() {
        let s = parse("model: flux2-klein-base-4b\ngpu: h200\ndeployment:\n  cache: {kind: dbcache, threshold: 0.2, warmup_steps: 3, compute_blocks: 2}\n").unwrap();
        assert_eq!(
            s.deployment().cache,
            Cache::Dbcache {
                threshold: 0.2,
                warmup_steps: 3,
                compute_blocks: 2,
                back_blocks: 0,
                max_continuous_cached_steps: None,
            }
        );
    }
}
