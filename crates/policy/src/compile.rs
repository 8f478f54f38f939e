//! Parsing and validation of an organisation's policy text.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{Effect, Policy, PolicyId, ValidationMode};
use miette::Diagnostic;
use serde::Serialize;

use crate::location::{Position, statement_starts};
use crate::model::model;
use crate::{DEFAULT_POLICIES, Limits};

/// The annotation that names a policy. Its value becomes the Cedar policy id.
const ID_ANNOTATION: &str = "id";
const IDLE_DETACH_ANNOTATION: &str = "idle_detach_minutes";
const MAX_SESSION_ANNOTATION: &str = "max_session_minutes";
/// The largest value of a limit annotation: 7 days in minutes.
const MAX_LIMIT_MINUTES: u64 = 7 * 24 * 60;

/// A compiled and validated set of policies, ready for [`crate::authorize`].
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) cedar: cedar_policy::PolicySet,
    /// Limits of the permit policies that carry limit annotations, by policy id.
    limits: HashMap<PolicyId, Limits>,
}

impl PolicySet {
    /// Parses and validates (strict mode) against the schema. Errors list every problem with
    /// 1-based line and column.
    ///
    /// Besides Cedar's own checks, every policy needs a unique, non-empty `@id` annotation,
    /// `@idle_detach_minutes` and `@max_session_minutes` must be whole numbers from 1 to 10080
    /// on permit policies, and templates (policies with `?principal` or `?resource`) are
    /// rejected, and so are annotations other than these and `@description`.
    pub fn compile(text: &str) -> Result<PolicySet, PolicyErrors> {
        let parsed = match cedar_policy::PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                let problems = errors
                    .iter()
                    .map(|error| problem_at_label(text, error, Position::START));
                return Err(PolicyErrors::sorted(problems.collect()));
            }
        };

        let statements = located_statements(text, &parsed);
        let mut problems = Vec::new();
        let (named, limits) = check_annotations(&parsed, &statements, &mut problems);
        validate(text, &parsed, &statements, &mut problems);
        if !problems.is_empty() {
            return Err(PolicyErrors::sorted(problems));
        }

        let mut cedar = cedar_policy::PolicySet::new();
        for (id, policy) in named {
            // The checks above leave only unique ids, so `add` fails only on a bug.
            if let Err(error) = cedar.add(policy.new_id(id)) {
                return Err(PolicyErrors::sorted(vec![PolicyProblem::at(
                    Position::START,
                    error.to_string(),
                )]));
            }
        }
        Ok(PolicySet { cedar, limits })
    }

    /// Returns [`DEFAULT_POLICIES`] compiled.
    pub fn defaults() -> PolicySet {
        // The test `defaults_compile` checks that this succeeds.
        Self::compile(DEFAULT_POLICIES).expect("DEFAULT_POLICIES compile")
    }

    /// Returns the tightest limits among the policies with ids `ids`.
    pub(crate) fn limits_of<'a>(&self, ids: impl IntoIterator<Item = &'a PolicyId>) -> Limits {
        ids.into_iter()
            .filter_map(|id| self.limits.get(id))
            .fold(Limits::default(), |tightest, limits| tightest.tightest(limits.clone()))
    }
}

/// Annotations a policy may carry; any other is most likely a misspelt limit, so it is refused.
const KNOWN_ANNOTATIONS: [&str; 4] = [
    ID_ANNOTATION,
    IDLE_DETACH_ANNOTATION,
    MAX_SESSION_ANNOTATION,
    "description",
];

/// Checks the annotations of every statement and rejects templates, adding a problem for each
/// violation. Returns the policies under their @id, and the limits of those that set any.
fn check_annotations<'a>(
    parsed: &'a cedar_policy::PolicySet,
    statements: &[Statement],
    problems: &mut Vec<PolicyProblem>,
) -> (Vec<(PolicyId, &'a Policy)>, HashMap<PolicyId, Limits>) {
    let mut named = Vec::with_capacity(statements.len());
    let mut limits = HashMap::new();
    let mut first_use: HashMap<&str, Position> = HashMap::new();
    for statement in statements {
        let Some(policy) = parsed.policy(&statement.generated_id) else {
            problems.push(PolicyProblem::at(
                statement.position,
                "templates (policies with ?principal or ?resource) are not supported; name the principal or resource in a condition instead",
            ));
            continue;
        };
        for (key, _) in policy.annotations() {
            if !KNOWN_ANNOTATIONS.contains(&key) {
                problems.push(PolicyProblem::at(
                    statement.position,
                    format!(
                        "unknown annotation @{key}; use @id, @idle_detach_minutes, @max_session_minutes or @description"
                    ),
                ));
            }
        }
        match read_limits(policy) {
            Ok(Some(policy_limits)) => {
                if let Some(id) = policy.annotation(ID_ANNOTATION) {
                    limits.insert(PolicyId::new(id), policy_limits);
                }
            }
            Ok(None) => {}
            Err(messages) => {
                problems.extend(
                    messages
                        .into_iter()
                        .map(|message| PolicyProblem::at(statement.position, message)),
                );
            }
        }
        match policy.annotation(ID_ANNOTATION) {
            None => problems.push(PolicyProblem::at(
                statement.position,
                "policy has no @id annotation; add @id(\"...\") with a name unique in this policy set",
            )),
            Some(id) if id.trim().is_empty() => {
                problems.push(PolicyProblem::at(
                    statement.position,
                    "@id is empty; give the policy a name",
                ));
            }
            Some(id) => match first_use.get(id) {
                Some(first) => problems.push(PolicyProblem::at(
                    statement.position,
                    format!("@id(\"{id}\") is already used by the policy at line {}", first.line),
                )),
                None => {
                    first_use.insert(id, statement.position);
                    named.push((PolicyId::new(id), policy));
                }
            },
        }
    }
    (named, limits)
}

/// Validates `parsed` against the schema in strict mode, adding a problem for each error.
fn validate(text: &str, parsed: &cedar_policy::PolicySet, statements: &[Statement], problems: &mut Vec<PolicyProblem>) {
    let starts: HashMap<&PolicyId, Position> = statements
        .iter()
        .map(|statement| (&statement.generated_id, statement.position))
        .collect();
    let validation = model().validator.validate(parsed, ValidationMode::Strict);
    for error in validation.validation_errors() {
        let generated_id = error.policy_id();
        let fallback = starts.get(generated_id).copied().unwrap_or(Position::START);
        let mut problem = problem_at_label(text, error, fallback);
        let id = parsed
            .policy(generated_id)
            .and_then(|policy| policy.annotation(ID_ANNOTATION));
        problem.message = name_policy(&problem.message, generated_id, id);
        problems.push(problem);
    }
}

/// Every problem found in a policy text, sorted by position.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{}", first_problem(.problems))]
pub struct PolicyErrors {
    pub problems: Vec<PolicyProblem>,
}

impl PolicyErrors {
    fn sorted(mut problems: Vec<PolicyProblem>) -> PolicyErrors {
        problems.sort_by_key(|problem| (problem.line, problem.column));
        PolicyErrors { problems }
    }
}

fn first_problem(problems: &[PolicyProblem]) -> String {
    problems
        .first()
        .map_or_else(|| "invalid policies".to_owned(), ToString::to_string)
}

/// One problem in a policy text, at a 1-based line and column (counted in characters).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyProblem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl PolicyProblem {
    fn at(position: Position, message: impl Into<String>) -> PolicyProblem {
        PolicyProblem {
            line: position.line,
            column: position.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Builds a problem from a Cedar diagnostic, placed at its first labelled span or, when it has
/// none, at `fallback`. Cedar's help text, when there is one, follows the message.
fn problem_at_label(text: &str, diagnostic: &dyn Diagnostic, fallback: Position) -> PolicyProblem {
    let position = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(fallback, |label| Position::of_offset(text, label.offset()));
    let message = match diagnostic.help() {
        Some(help) => format!("{diagnostic}; {help}"),
        None => diagnostic.to_string(),
    };
    PolicyProblem::at(position, message)
}

/// Replaces the parser-generated policy id that starts a validation message (`for policy
/// `policy0`, …`) with the policy's @id, or drops it when the policy has none.
fn name_policy(message: &str, generated_id: &PolicyId, id: Option<&str>) -> String {
    let prefix = format!("for policy `{generated_id}`, ");
    match (message.strip_prefix(&prefix), id) {
        (Some(rest), Some(id)) => format!("for policy `{id}`, {rest}"),
        (Some(rest), None) => rest.to_owned(),
        (None, _) => message.to_owned(),
    }
}

/// A parsed statement (policy or template) with its parser-generated id and its position.
struct Statement {
    generated_id: PolicyId,
    position: Position,
}

/// Locates every statement of a parsed policy text, in source order. The parser names them
/// `policy0`, `policy1`, … in that order.
fn located_statements(text: &str, parsed: &cedar_policy::PolicySet) -> Vec<Statement> {
    let count = parsed.num_of_policies() + parsed.num_of_templates();
    let starts = statement_starts(text);
    // NOTE: the scanner is expected to find as many statements as the parser. If it ever does
    // not, problems without a source span are reported at line 1, column 1.
    let agree = starts.len() == count;
    (0..count)
        .map(|index| Statement {
            generated_id: PolicyId::new(format!("policy{index}")),
            position: if agree {
                Position::of_offset(text, starts[index])
            } else {
                Position::START
            },
        })
        .collect()
}

/// Reads the limit annotations of a policy: `Ok(None)` when it has none, or one message per
/// invalid annotation.
fn read_limits(policy: &Policy) -> Result<Option<Limits>, Vec<String>> {
    let mut messages = Vec::new();
    let mut read = |key: &str| match policy.annotation(key) {
        None => None,
        Some(_) if policy.effect() == Effect::Forbid => {
            messages.push(format!(
                "@{key} has no effect on a forbid policy; move it to a permit policy"
            ));
            None
        }
        Some(value) => match parse_minutes(value) {
            Some(minutes) => Some(Duration::from_secs(minutes * 60)),
            None => {
                messages.push(format!(
                    "invalid @{key}(\"{value}\"): expected a whole number of minutes from 1 to {MAX_LIMIT_MINUTES} (7 days)"
                ));
                None
            }
        },
    };
    let limits = Limits {
        idle_detach: read(IDLE_DETACH_ANNOTATION),
        max_session: read(MAX_SESSION_ANNOTATION),
    };
    if !messages.is_empty() {
        return Err(messages);
    }
    Ok((limits != Limits::default()).then_some(limits))
}

/// Parses a limit in minutes: ASCII digits only, from 1 to [`MAX_LIMIT_MINUTES`].
fn parse_minutes(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let minutes: u64 = value.parse().ok()?;
    (1..=MAX_LIMIT_MINUTES).contains(&minutes).then_some(minutes)
}
