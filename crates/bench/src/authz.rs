//! Figure 5: the time `rdp_proxy_policy::authorize` takes with the default policies, beside
//! the round trip of a Redis PING over loopback as the cost of one cheap network request.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use rdp_proxy_core::access::Role;
use rdp_proxy_policy::{Action, PolicySet, Principal, PrincipalKind, Resource, SessionFacts, TargetFacts, authorize};
use rdp_proxy_testkit::Redis;
use redis::aio::ConnectionManager;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::report::{Row, TimeUnit, Timings, format_summary};

/// Decisions made before timing, so the policy model (built on first use) and CPU caches are warm.
const DECISION_WARM_UP: usize = 1_000;
/// Decisions timed per case.
const DECISIONS: usize = 10_000;
const PING_WARM_UP: usize = 100;
const PINGS: usize = 1_000;

pub struct AuthzResults {
    pub member_connect: Timings,
    pub operator_takeover: Timings,
    pub redis_ping: Timings,
}

/// Times the decisions on this thread, then starts Redis on loopback and times PINGs.
pub async fn run() -> Result<AuthzResults> {
    let (member_connect, operator_takeover) = tokio::task::block_in_place(time_decisions)?;

    let redis = tokio::task::block_in_place(Redis::start)?;
    let redis_ping = time_pings(&redis.url()).await;
    // Dropping the guard stops redis-server and waits for it.
    tokio::task::block_in_place(move || drop(redis));

    Ok(AuthzResults {
        member_connect,
        operator_takeover,
        redis_ping: redis_ping?,
    })
}

fn time_decisions() -> Result<(Timings, Timings)> {
    let policies = PolicySet::defaults();
    let now = OffsetDateTime::now_utc();
    let member = Principal {
        id: Uuid::new_v4(),
        name: "member".to_owned(),
        role: Role::Member,
        kind: PrincipalKind::User,
    };
    let operator = Principal {
        id: Uuid::new_v4(),
        name: "operator".to_owned(),
        role: Role::Operator,
        kind: PrincipalKind::User,
    };
    let target = TargetFacts {
        id: Uuid::new_v4(),
        name: "build-box".to_owned(),
        labels: vec![
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "web".to_owned()),
        ],
    };
    let session = Resource::Session(SessionFacts {
        id: Uuid::new_v4(),
        owner: member.id,
        owner_name: member.name.clone(),
        owner_role: Some(member.role),
        state: "detached".to_owned(),
        target: target.clone(),
    });
    let target = Resource::Target(target);

    let connect = || authorize(&policies, &member, Action::Connect, &target, now);
    let takeover = || authorize(&policies, &operator, Action::Takeover, &session, now);
    let connect_decision = connect();
    ensure!(
        connect_decision.allowed,
        "member connect was denied: {connect_decision:?}"
    );
    let takeover_decision = takeover();
    ensure!(
        takeover_decision.allowed,
        "operator takeover was denied: {takeover_decision:?}"
    );

    tracing::info!(decisions = DECISIONS, "figure 5: member connect");
    let member_connect = time_each(connect);
    tracing::info!(decisions = DECISIONS, "figure 5: operator takeover");
    let operator_takeover = time_each(takeover);
    Ok((member_connect, operator_takeover))
}

/// Runs `decide` [`DECISION_WARM_UP`] times, then times each of [`DECISIONS`] calls.
fn time_each<T>(mut decide: impl FnMut() -> T) -> Timings {
    for _ in 0..DECISION_WARM_UP {
        black_box(decide());
    }
    let mut samples = Vec::with_capacity(DECISIONS);
    for _ in 0..DECISIONS {
        let started = Instant::now();
        black_box(decide());
        samples.push(started.elapsed());
    }
    Timings::new(samples)
}

/// Times PING round trips through a `ConnectionManager`, the client the coordination crate
/// uses.
async fn time_pings(url: &str) -> Result<Timings> {
    let client = redis::Client::open(url)?;
    let mut connection = ConnectionManager::new(client)
        .await
        .with_context(|| format!("failed to connect to Redis at {url}"))?;
    tracing::info!(pings = PINGS, "figure 5: Redis PING");
    for _ in 0..PING_WARM_UP {
        ping(&mut connection).await?;
    }
    let mut samples = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = Instant::now();
        ping(&mut connection).await?;
        samples.push(started.elapsed());
    }
    Ok(Timings::new(samples))
}

/// Sends one PING and checks that the reply is PONG.
pub async fn ping(connection: &mut ConnectionManager) -> Result<()> {
    let reply: String = redis::cmd("PING").query_async(connection).await?;
    ensure!(reply == "PONG", "unexpected PING reply {reply:?}");
    Ok(())
}

pub fn print(results: &AuthzResults, rows: &mut Vec<Row>) {
    let ping = &results.redis_ping;
    println!("## 5. Authorisation decision with the default policies\n");
    println!(
        "Each case: {DECISIONS} decisions after {DECISION_WARM_UP} warm-up decisions, timed one by one on one thread with the policies compiled once. Baseline: {PINGS} Redis PINGs after {PING_WARM_UP} warm-up, over loopback through the redis crate's `ConnectionManager`, one at a time.\n"
    );
    let cases = [
        (
            "member connects to a target",
            "5. Authorisation: member connects to a target",
            &results.member_connect,
        ),
        (
            "operator takes over a member's session",
            "5. Authorisation: operator takes over a session",
            &results.operator_takeover,
        ),
    ];
    for (label, _, timings) in &cases {
        println!("- {label}: {}", timings.describe(TimeUnit::Micros));
    }
    println!("- baseline: Redis PING round trip: {}", ping.describe(TimeUnit::Micros));
    for (label, _, timings) in &cases {
        println!("- ratio {label} / Redis PING (p50): {}", timings.p50_ratio(ping));
    }
    println!();

    for (_, figure, timings) in cases {
        rows.push(Row {
            figure: figure.to_owned(),
            measured: format_summary(timings.summary(TimeUnit::Micros), 1, "µs"),
            baseline: format!(
                "Redis PING round trip: {}",
                format_summary(ping.summary(TimeUnit::Micros), 1, "µs")
            ),
            ratio: timings.median_ratio(ping),
            goal: "well under 100 µs per decision".to_owned(),
        });
    }
}
