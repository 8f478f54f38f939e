use std::time::Duration;

use rdp_proxy_core::access::Role;
use time::macros::datetime;
use time::{OffsetDateTime, Weekday};
use uuid::Uuid;

use crate::model::model;
use crate::{
    Action, DEFAULT_POLICIES, Decision, Limits, PolicyErrors, PolicyProblem, PolicySet, Principal, PrincipalKind,
    Resource, ResourceKind, SessionFacts, TargetFacts, authorize,
};

/// Monday 4 May 2026, 12:00 UTC.
const MONDAY_NOON: OffsetDateTime = datetime!(2026-05-04 12:00 UTC);

fn principal(role: Role) -> Principal {
    Principal {
        id: Uuid::new_v4(),
        name: format!("{} user", role.as_str()),
        role,
        kind: PrincipalKind::User,
    }
}

fn api_key(role: Role) -> Principal {
    Principal {
        kind: PrincipalKind::ApiKey,
        ..principal(role)
    }
}

fn target(labels: &[(&str, &str)]) -> TargetFacts {
    TargetFacts {
        id: Uuid::new_v4(),
        name: "build-box".to_owned(),
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

fn session_of(owner: &Principal, target: TargetFacts) -> Resource {
    Resource::Session(SessionFacts {
        id: Uuid::new_v4(),
        owner: owner.id,
        owner_name: owner.name.clone(),
        owner_role: Some(owner.role),
        state: "active".to_owned(),
        target,
    })
}

/// Builds a resource of the kind `action` applies to. Sessions belong to `owner`.
fn resource_for(action: Action, owner: &Principal) -> Resource {
    match action.resource_kind() {
        ResourceKind::Org => Resource::Org(Uuid::new_v4()),
        ResourceKind::Target => Resource::Target(target(&[])),
        ResourceKind::Session => session_of(owner, target(&[])),
    }
}

fn compile(text: &str) -> PolicySet {
    match PolicySet::compile(text) {
        Ok(policies) => policies,
        Err(errors) => panic!("policies failed to compile: {:#?}", errors.problems),
    }
}

fn compile_errors(text: &str) -> PolicyErrors {
    match PolicySet::compile(text) {
        Ok(_) => panic!("policies compiled, expected problems:\n{text}"),
        Err(errors) => errors,
    }
}

/// Returns the commented-out example policy with `@id("{id}")` from [`DEFAULT_POLICIES`], with
/// the leading "// " removed from each of its lines.
fn default_example(id: &str) -> String {
    let first = format!("// @id(\"{id}\")");
    let lines: Vec<&str> = DEFAULT_POLICIES
        .lines()
        .skip_while(|line| *line != first)
        .take_while(|line| line.starts_with("// "))
        .map(|line| &line[3..])
        .collect();
    assert!(!lines.is_empty(), "example {id} not found in DEFAULT_POLICIES");
    lines.join("\n")
}

fn defaults_with(extra: &str) -> PolicySet {
    compile(&format!("{DEFAULT_POLICIES}\n{extra}"))
}

fn minutes(minutes: u64) -> Option<Duration> {
    Some(Duration::from_secs(minutes * 60))
}

/// Actions each role may take under the default policies on sessions it does not own.
fn allowed_by_default(role: Role) -> &'static [Action] {
    use Action::*;
    match role {
        Role::Owner | Role::Admin => &Action::ALL,
        Role::Operator => &[
            Connect,
            View,
            Attach,
            Observe,
            Takeover,
            Detach,
            Terminate,
            ClipboardCopy,
            ClipboardPaste,
            ListTargets,
            ViewAllSessions,
        ],
        Role::Member => &[Connect, ListTargets],
        Role::Auditor => &[ReadAudit, ViewAllSessions, ListTargets, View],
    }
}

/// Session actions a member may take on a session they own.
const MEMBER_OWN_SESSION: [Action; 7] = [
    Action::View,
    Action::Attach,
    Action::Detach,
    Action::Terminate,
    Action::Takeover,
    Action::ClipboardCopy,
    Action::ClipboardPaste,
];

#[test]
fn model_declares_every_action() {
    let declared: Vec<String> = model().validator.schema().actions().map(ToString::to_string).collect();
    for action in Action::ALL {
        let uid = model().action(action).to_string();
        assert!(declared.contains(&uid), "{uid} missing from the schema");
    }
    assert_eq!(declared.len(), Action::ALL.len());
}

#[test]
fn defaults_compile() {
    let policies = PolicySet::compile(DEFAULT_POLICIES);
    assert!(policies.is_ok(), "{:#?}", policies.err());
}

#[test]
fn defaults_role_action_matrix() {
    let policies = PolicySet::defaults();
    let someone_else = principal(Role::Member);
    for role in Role::ALL {
        let caller = principal(role);
        let allowed = allowed_by_default(role);
        for action in Action::ALL {
            let decision = authorize(
                &policies,
                &caller,
                action,
                &resource_for(action, &someone_else),
                MONDAY_NOON,
            );
            let expected = allowed.contains(&action);
            assert_eq!(
                decision.allowed,
                expected,
                "{} {}: {decision:?}",
                role.as_str(),
                action.as_str()
            );
            assert!(
                decision.errors.is_empty(),
                "{} {}: {decision:?}",
                role.as_str(),
                action.as_str()
            );
            assert_eq!(
                !decision.reasons.is_empty(),
                expected,
                "{} {}: {decision:?}",
                role.as_str(),
                action.as_str()
            );
        }
    }
}

#[test]
fn defaults_on_own_session() {
    let policies = PolicySet::defaults();
    for role in Role::ALL {
        let caller = principal(role);
        for action in Action::ALL {
            if action.resource_kind() != ResourceKind::Session {
                continue;
            }
            let own_session = session_of(&caller, target(&[]));
            let decision = authorize(&policies, &caller, action, &own_session, MONDAY_NOON);
            let expected = allowed_by_default(role).contains(&action)
                || (role == Role::Member && MEMBER_OWN_SESSION.contains(&action));
            assert_eq!(
                decision.allowed,
                expected,
                "{} {} on own session: {decision:?}",
                role.as_str(),
                action.as_str()
            );
        }
    }
}

#[test]
fn member_own_and_other_session() {
    let policies = PolicySet::defaults();
    let member = principal(Role::Member);
    let other = principal(Role::Member);

    let own = authorize(
        &policies,
        &member,
        Action::Takeover,
        &session_of(&member, target(&[])),
        MONDAY_NOON,
    );
    assert!(own.allowed);
    assert_eq!(own.reasons, ["member-own-sessions"]);

    let others = authorize(
        &policies,
        &member,
        Action::Takeover,
        &session_of(&other, target(&[])),
        MONDAY_NOON,
    );
    assert!(!others.allowed);
    assert!(others.reasons.is_empty());
    assert!(others.errors.is_empty());

    let observe_own = authorize(
        &policies,
        &member,
        Action::Observe,
        &session_of(&member, target(&[])),
        MONDAY_NOON,
    );
    assert!(!observe_own.allowed);
}

#[test]
fn operator_takes_over_any_session() {
    let policies = PolicySet::defaults();
    let operator = principal(Role::Operator);
    let member = principal(Role::Member);
    let decision = authorize(
        &policies,
        &operator,
        Action::Takeover,
        &session_of(&member, target(&[])),
        MONDAY_NOON,
    );
    assert!(decision.allowed);
    assert_eq!(decision.reasons, ["operator-sessions"]);
    assert_eq!(decision.limits, Limits::default());
}

#[test]
fn api_key_cannot_connect() {
    let policies = PolicySet::defaults();
    for role in Role::ALL {
        let key = api_key(role);
        for action in [Action::Connect, Action::Attach, Action::Observe, Action::Takeover] {
            let decision = authorize(&policies, &key, action, &resource_for(action, &key), MONDAY_NOON);
            assert!(!decision.allowed, "{} key {}", role.as_str(), action.as_str());
        }
    }

    let admin_key = api_key(Role::Admin);
    let connect = authorize(
        &policies,
        &admin_key,
        Action::Connect,
        &Resource::Target(target(&[])),
        MONDAY_NOON,
    );
    assert_eq!(connect.reasons, ["api-keys-no-desktops"]);
    assert_eq!(connect.limits, Limits::default());

    let manage = authorize(
        &policies,
        &admin_key,
        Action::ManageTargets,
        &Resource::Org(Uuid::new_v4()),
        MONDAY_NOON,
    );
    assert!(manage.allowed);
    assert_eq!(manage.reasons, ["admin-all"]);
}

#[test]
fn default_connect_limits() {
    let policies = PolicySet::defaults();
    let expected = Limits {
        idle_detach: minutes(480),
        max_session: minutes(1440),
    };
    for (role, policy) in [
        (Role::Member, "member-connect"),
        (Role::Operator, "operator-connect"),
        (Role::Admin, "admin-connect"),
        (Role::Owner, "admin-connect"),
    ] {
        let decision = authorize(
            &policies,
            &principal(role),
            Action::Connect,
            &Resource::Target(target(&[])),
            MONDAY_NOON,
        );
        assert!(decision.allowed, "{}", role.as_str());
        assert_eq!(decision.reasons, [policy], "{}", role.as_str());
        assert_eq!(decision.limits, expected, "{}", role.as_str());
    }
}

#[test]
fn tightest_limits_win() {
    let policies = compile(
        r#"
@id("long")
@idle_detach_minutes("60")
@max_session_minutes("600")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("short-idle")
@idle_detach_minutes("30")
permit (principal, action == RdpProxy::Action::"connect", resource)
when { principal.role == "member" };

@id("unlimited")
permit (principal, action == RdpProxy::Action::"connect", resource);
"#,
    );
    let connect = |role| {
        authorize(
            &policies,
            &principal(role),
            Action::Connect,
            &Resource::Target(target(&[])),
            MONDAY_NOON,
        )
    };

    let member = connect(Role::Member);
    assert!(member.allowed);
    assert_eq!(member.reasons, ["long", "short-idle", "unlimited"]);
    assert_eq!(
        member.limits,
        Limits {
            idle_detach: minutes(30),
            max_session: minutes(600),
        }
    );

    let operator = connect(Role::Operator);
    assert_eq!(
        operator.limits,
        Limits {
            idle_detach: minutes(60),
            max_session: minutes(600),
        }
    );
}

#[test]
fn limits_of_denied_request_are_empty() {
    let policies = compile(
        r#"
@id("connect")
@idle_detach_minutes("60")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("no-auditors")
forbid (principal, action, resource) when { principal.role == "auditor" };
"#,
    );
    let decision = authorize(
        &policies,
        &principal(Role::Auditor),
        Action::Connect,
        &Resource::Target(target(&[])),
        MONDAY_NOON,
    );
    assert!(!decision.allowed);
    assert_eq!(decision.reasons, ["no-auditors"]);
    assert_eq!(decision.limits, Limits::default());
}

#[test]
fn office_hours_example() {
    assert_eq!(MONDAY_NOON.weekday(), Weekday::Monday);
    let policies = defaults_with(&default_example("members-office-hours"));
    let member = principal(Role::Member);
    let connect = |who: &Principal, at: OffsetDateTime| {
        authorize(&policies, who, Action::Connect, &Resource::Target(target(&[])), at)
    };

    let cases = [
        (datetime!(2026-05-04 12:00 UTC), true),
        (datetime!(2026-05-04 07:00 UTC), true),
        (datetime!(2026-05-04 18:59 UTC), true),
        (datetime!(2026-05-04 06:59 UTC), false),
        (datetime!(2026-05-04 19:00 UTC), false),
        (datetime!(2026-05-08 12:00 UTC), true),  // Friday
        (datetime!(2026-05-09 12:00 UTC), false), // Saturday
        (datetime!(2026-05-10 12:00 UTC), false), // Sunday
        // The context is in UTC whatever offset the caller's time has.
        (datetime!(2026-05-04 14:00 +02:00), true),
        (datetime!(2026-05-04 08:00 +02:00), false),
        (datetime!(2026-05-04 23:30 -05:00), false), // Tuesday 04:30 UTC
    ];
    for (at, expected) in cases {
        let decision = connect(&member, at);
        assert_eq!(decision.allowed, expected, "member at {at}: {decision:?}");
        if !expected {
            assert_eq!(decision.reasons, ["members-office-hours"], "member at {at}");
        }
    }

    let operator = connect(&principal(Role::Operator), datetime!(2026-05-09 03:00 UTC));
    assert!(operator.allowed);
}

#[test]
fn production_label_example() {
    let policies = defaults_with(&default_example("production-staff-only"));
    let connect = |role, labels: &[(&str, &str)]| {
        authorize(
            &policies,
            &principal(role),
            Action::Connect,
            &Resource::Target(target(labels)),
            MONDAY_NOON,
        )
    };

    let member_prod = connect(Role::Member, &[("team", "web"), ("env", "prod")]);
    assert!(!member_prod.allowed);
    assert_eq!(member_prod.reasons, ["production-staff-only"]);
    assert!(connect(Role::Member, &[("env", "dev")]).allowed);
    assert!(connect(Role::Member, &[]).allowed);
    assert!(connect(Role::Operator, &[("env", "prod")]).allowed);
    assert!(connect(Role::Admin, &[("env", "prod")]).allowed);
}

#[test]
fn session_target_label_policy() {
    let policies = defaults_with(
        r#"
@id("no-clipboard-copy")
forbid (principal, action == RdpProxy::Action::"clipboard_copy", resource)
when { resource.target.labels.contains("clipboard=off") };
"#,
    );
    let member = principal(Role::Member);
    let locked = session_of(&member, target(&[("clipboard", "off")]));
    let open = session_of(&member, target(&[("clipboard", "on")]));

    let copy_locked = authorize(&policies, &member, Action::ClipboardCopy, &locked, MONDAY_NOON);
    assert!(!copy_locked.allowed);
    assert_eq!(copy_locked.reasons, ["no-clipboard-copy"]);
    assert!(authorize(&policies, &member, Action::ClipboardPaste, &locked, MONDAY_NOON).allowed);
    assert!(authorize(&policies, &member, Action::ClipboardCopy, &open, MONDAY_NOON).allowed);
}

#[test]
fn owner_attributes_and_session_state() {
    let policies = compile(
        r#"
@id("operators-watch-members")
permit (principal, action == RdpProxy::Action::"observe", resource)
when { principal.role == "operator" && resource.owner.role == "member" && resource.state == "active" };
"#,
    );
    let operator = principal(Role::Operator);
    let member = principal(Role::Member);
    let admin = principal(Role::Admin);

    let watch = |session: &Resource| authorize(&policies, &operator, Action::Observe, session, MONDAY_NOON);
    assert!(watch(&session_of(&member, target(&[]))).allowed);
    assert!(!watch(&session_of(&admin, target(&[]))).allowed);

    let Resource::Session(mut detached) = session_of(&member, target(&[])) else {
        unreachable!()
    };
    detached.state = "detached".to_owned();
    assert!(!watch(&Resource::Session(detached.clone())).allowed);

    // An owner who left the organisation has no role: the policy fails to evaluate.
    detached.state = "active".to_owned();
    detached.owner_role = None;
    let decision = watch(&Resource::Session(detached));
    assert!(!decision.allowed);
    assert_eq!(decision.errors.len(), 1, "{decision:?}");
    assert!(
        decision.errors[0].contains("operators-watch-members"),
        "{:?}",
        decision.errors
    );
}

#[test]
fn mismatched_resource_is_denied() {
    let policies = PolicySet::defaults();
    let admin = principal(Role::Admin);
    let cases = [
        (Action::Connect, session_of(&admin, target(&[]))),
        (Action::Takeover, Resource::Target(target(&[]))),
        (Action::ManageMembers, Resource::Target(target(&[]))),
        (Action::View, Resource::Org(Uuid::new_v4())),
    ];
    for (action, resource) in cases {
        let decision = authorize(&policies, &admin, action, &resource, MONDAY_NOON);
        assert!(!decision.allowed, "{}", action.as_str());
        assert!(decision.reasons.is_empty(), "{}", action.as_str());
        assert_eq!(decision.errors.len(), 1, "{}", action.as_str());
        assert!(
            decision.errors[0].contains(action.as_str()),
            "{}: {:?}",
            action.as_str(),
            decision.errors
        );
    }
}

#[test]
fn empty_policy_set_denies() {
    let policies = compile("// nothing is allowed\n");
    let decision = authorize(
        &policies,
        &principal(Role::Owner),
        Action::ManagePolicies,
        &Resource::Org(Uuid::new_v4()),
        MONDAY_NOON,
    );
    assert!(!decision.allowed);
    assert!(decision.reasons.is_empty());
}

#[test]
fn parse_error_position() {
    let text = r#"@id("a")
permit (principal, action, resource);

@id("b")
permit (principal, action resource);
"#;
    let errors = compile_errors(text);
    let first = &errors.problems[0];
    assert_eq!((first.line, first.column), (5, 27), "{:#?}", errors.problems);
    assert_eq!(errors.to_string(), first.to_string());
    assert!(errors.to_string().starts_with("line 5, column 27: "), "{errors}");
}

#[test]
fn parse_error_after_multibyte_characters() {
    let text = "// Zugriff für Mitglieder\n@id(\"é\") permit (principal, action, resource) when { principal.role == \"ü\" && };\n";
    let errors = compile_errors(text);
    let first = &errors.problems[0];
    assert_eq!(first.line, 2, "{:#?}", errors.problems);
    // The column counts characters: `@id("é")` is 8 characters but 9 bytes.
    let line = text.lines().nth(1).expect("second line");
    let byte_column = line.find('}').expect("closing brace");
    let character_column = line[..byte_column].chars().count() + 1;
    assert_eq!(first.column as usize, character_column, "{:#?}", errors.problems);
}

#[test]
fn validation_errors_position() {
    let text = r#"@id("department")
permit (principal, action, resource)
when { principal.department == "it" };

@id("fly")
permit (principal, action == RdpProxy::Action::"fly", resource);
"#;
    let errors = compile_errors(text);
    let lines: Vec<u32> = errors.problems.iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [3, 6], "{:#?}", errors.problems);
    let attribute = &errors.problems[0];
    assert_eq!(attribute.column, 8, "{attribute:?}");
    assert!(attribute.message.contains("department"), "{attribute:?}");
    // Messages name policies by their @id, not by the parser's generated id.
    assert!(
        errors.problems[1].message.starts_with("for policy `fly`, "),
        "{:?}",
        errors.problems[1]
    );
}

#[test]
fn validation_error_wrong_resource_attribute() {
    // Targets have labels, but sessions do not.
    let text = r#"@id("session-labels")
permit (principal, action == RdpProxy::Action::"view", resource)
when { resource.labels.contains("env=prod") };
"#;
    let errors = compile_errors(text);
    assert_eq!(errors.problems.len(), 1, "{:#?}", errors.problems);
    assert_eq!(errors.problems[0].line, 3);
}

#[test]
fn missing_id_rejected() {
    let text = r#"@id("first")
permit (principal, action == RdpProxy::Action::"list_targets", resource);

// No @id below.
@description("members list targets")
permit (principal, action == RdpProxy::Action::"list_targets", resource)
when { principal.role == "member" };

  forbid (principal, action, resource) when { principal.kind == "api_key" };
"#;
    let errors = compile_errors(text);
    let expected = [(5, 1), (9, 3)];
    let positions: Vec<(u32, u32)> = errors
        .problems
        .iter()
        .map(|problem| (problem.line, problem.column))
        .collect();
    assert_eq!(positions, expected, "{:#?}", errors.problems);
    for problem in &errors.problems {
        assert!(problem.message.contains("@id"), "{problem:?}");
    }
}

#[test]
fn duplicate_and_empty_id_rejected() {
    let text = r#"@id("same")
permit (principal, action == RdpProxy::Action::"list_targets", resource);
@id("same")
permit (principal, action == RdpProxy::Action::"read_audit", resource);
@id(" ")
permit (principal, action == RdpProxy::Action::"view", resource);
"#;
    let errors = compile_errors(text);
    assert_eq!(errors.problems.len(), 2, "{:#?}", errors.problems);
    assert_eq!(errors.problems[0].line, 3);
    assert!(
        errors.problems[0].message.contains("line 1"),
        "{:?}",
        errors.problems[0]
    );
    assert_eq!(errors.problems[1].line, 5);
}

#[test]
fn bad_limit_annotations_rejected() {
    let text = r#"@id("zero")
@idle_detach_minutes("0")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("words")
@max_session_minutes("eight hours")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("too-long")
@max_session_minutes("10081")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("signed")
@idle_detach_minutes("+5")
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("no-value")
@idle_detach_minutes
permit (principal, action == RdpProxy::Action::"connect", resource);

@id("on-forbid")
@idle_detach_minutes("10")
forbid (principal, action == RdpProxy::Action::"connect", resource);

@id("week")
@max_session_minutes("10080")
@idle_detach_minutes("1")
permit (principal, action == RdpProxy::Action::"connect", resource);
"#;
    let errors = compile_errors(text);
    let lines: Vec<u32> = errors.problems.iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [1, 5, 9, 13, 17, 21], "{:#?}", errors.problems);
    assert!(errors.problems[0].message.contains("idle_detach_minutes(\"0\")"));
    assert!(errors.problems[2].message.contains("10080"));
    assert!(errors.problems[5].message.contains("forbid"));
}

#[test]
fn template_rejected() {
    let text = r#"@id("template")
permit (principal == ?principal, action == RdpProxy::Action::"connect", resource);
"#;
    let errors = compile_errors(text);
    assert_eq!(errors.problems.len(), 1, "{:#?}", errors.problems);
    assert_eq!(errors.problems[0].line, 1);
    assert!(errors.problems[0].message.contains("template"));
}

#[test]
fn errors_serialize_as_json() {
    let errors = compile_errors("@id(\"x\") permit (principal, action, resource)");
    let json = serde_json::to_value(&errors).expect("serializes");
    let problem = &json["problems"][0];
    assert_eq!(problem["line"], 1);
    assert!(problem["column"].as_u64().is_some());
    assert!(problem["message"].as_str().is_some());
}

#[test]
fn problem_display() {
    let problem = PolicyProblem {
        line: 4,
        column: 9,
        message: "unexpected token".to_owned(),
    };
    assert_eq!(problem.to_string(), "line 4, column 9: unexpected token");
}

#[test]
fn decision_is_deterministic() {
    let policies = PolicySet::defaults();
    let member = principal(Role::Member);
    let resource = Resource::Target(target(&[]));
    let first: Decision = authorize(&policies, &member, Action::Connect, &resource, MONDAY_NOON);
    let second = authorize(&policies, &member, Action::Connect, &resource, MONDAY_NOON);
    assert_eq!(first.reasons, second.reasons);
    assert_eq!(first.limits, second.limits);
}

#[test]
fn policy_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicySet>();
    assert_send_sync::<Decision>();
    assert_send_sync::<PolicyErrors>();
}

#[test]
fn misspelt_annotation_is_refused() {
    let text = "@id(\"a\")\n@idle_detach_minute(\"5\")\npermit (principal, action, resource);\n";
    let errors = PolicySet::compile(text).unwrap_err();
    assert_eq!(errors.problems[0].line, 1, "{errors:?}");
    assert!(
        errors.problems[0]
            .message
            .contains("unknown annotation @idle_detach_minute"),
        "{errors:?}"
    );
    let described = "@id(\"a\")\n@description(\"everyone\")\npermit (principal, action, resource);\n";
    assert!(PolicySet::compile(described).is_ok());
}
