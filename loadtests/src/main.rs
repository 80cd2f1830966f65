//! nsi-live's load generator: goose scenarios over the school `nsi-live admin seed-load` wrote.
//! Usually run by `loadtests/run` (loadtests/README.md), which starts the server, seeds it, runs
//! this, checks the database and writes the reports.
//!
//! `nsi-loadtests SCENARIO --fixture FILE [--results FILE] [--period SECS] [--host2 URL]
//!  [goose options: --host URL --users N --increase-rate R --run-time T --report-file F …]`

mod catalogue;
mod fixture;
mod live;
mod tally;
mod ws;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use goose::config::GooseConfiguration;
use goose::metrics::GooseMetrics;
use goose::prelude::*;
use serde_json::json;

use crate::catalogue::{chapter, course_list, open_app, pick, sign_in, submit as portal_submit};
use crate::fixture::Fixture;
use crate::live::{connect_dashboard, connect_student, submit as socket_submit, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Catalogue,
    Classroom,
    SubmitBurst,
    TwoInstances,
    SignIn,
}

impl Kind {
    fn parse(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "catalogue" => Kind::Catalogue,
            "classroom" => Kind::Classroom,
            "submit-burst" => Kind::SubmitBurst,
            "two-instances" => Kind::TwoInstances,
            "signin" => Kind::SignIn,
            other => bail!(
                "unknown scenario {other:?}: catalogue, classroom, submit-burst, two-instances, signin"
            ),
        })
    }
}

pub struct Config {
    pub scenario: Kind,
    pub fixture: Fixture,
    pub host: String,
    pub host2: Option<String>,
    pub period: Duration,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn config() -> &'static Config {
    CONFIG.get().expect("configured before the users start")
}

static NEXT_STUDENT: AtomicUsize = AtomicUsize::new(0);
static NEXT_DASHBOARD: AtomicUsize = AtomicUsize::new(0);

/// The fixture student the next user plays (round the list when there are more users).
pub fn next_student() -> usize {
    NEXT_STUDENT.fetch_add(1, Ordering::Relaxed) % config().fixture.students.len()
}

/// The class whose dashboard the next dashboard user opens.
pub fn next_dashboard() -> usize {
    NEXT_DASHBOARD.fetch_add(1, Ordering::Relaxed) % config().fixture.classes.len()
}

struct Args {
    scenario: Kind,
    fixture: PathBuf,
    results: Option<PathBuf>,
    period: Duration,
    host2: Option<String>,
    goose: Vec<String>,
}

fn parse_args(raw: Vec<String>) -> anyhow::Result<Args> {
    let mut it = raw.into_iter();
    let scenario = Kind::parse(&it.next().context("usage: nsi-loadtests SCENARIO …")?)?;
    let (mut fixture, mut results, mut period, mut host2) = (None, None, 10.0, None);
    let mut goose = Vec::new();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--fixture" => fixture = Some(PathBuf::from(value("--fixture")?)),
            "--results" => results = Some(PathBuf::from(value("--results")?)),
            "--host2" => host2 = Some(value("--host2")?),
            "--period" => {
                period = value("--period")?
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p < 3600.0)
                    .context("--period: seconds, more than 0")?;
            }
            _ => goose.push(arg),
        }
    }
    Ok(Args {
        scenario,
        fixture: fixture.context("--fixture FILE is required")?,
        results,
        period: Duration::from_secs_f64(period),
        host2,
        goose,
    })
}

fn attack(scenario: Kind, period: Duration, goose: GooseAttack) -> anyhow::Result<GooseAttack> {
    Ok(match scenario {
        Kind::Catalogue => goose.register_scenario(
            scenario!("catalogue")
                .set_wait_time(Duration::from_secs(1), Duration::from_secs(3))?
                .register_transaction(transaction!(pick).set_on_start())
                .register_transaction(
                    transaction!(open_app)
                        .set_name("open the app")
                        .set_on_start(),
                )
                .register_transaction(
                    transaction!(course_list)
                        .set_name("course list")
                        .set_weight(3)?,
                )
                .register_transaction(transaction!(chapter).set_name("chapter").set_weight(2)?)
                .register_transaction(transaction!(portal_submit).set_name("submit")),
        ),
        Kind::SignIn => goose.register_scenario(
            scenario!("signin")
                .register_transaction(transaction!(pick).set_on_start())
                .register_transaction(transaction!(sign_in).set_name("sign in")),
        ),
        Kind::SubmitBurst => goose.register_scenario(
            scenario!("submit-burst")
                .register_transaction(transaction!(connect_student).set_on_start())
                .register_transaction(transaction!(socket_submit).set_name("submit")),
        ),
        Kind::Classroom | Kind::TwoInstances => {
            let c = config();
            let classes = c.fixture.classes.len();
            let students = c.fixture.students.len();
            // Dashboards first (weights reduce by their gcd: 1 dashboard, then its class).
            goose
                .set_scheduler(GooseScheduler::Serial)
                .register_scenario(
                    scenario!("dashboards")
                        .set_weight(classes)?
                        .register_transaction(transaction!(connect_dashboard).set_on_start())
                        .register_transaction(transaction!(watch).set_name("watch")),
                )
                .register_scenario(
                    scenario!("students")
                        .set_weight(students)?
                        .set_wait_time(period, period)?
                        .register_transaction(transaction!(connect_student).set_on_start())
                        .register_transaction(transaction!(socket_submit).set_name("submit")),
                )
        }
    })
}

fn summary(metrics: &GooseMetrics, resent: (u64, u64), undelivered: Vec<f64>) -> serde_json::Value {
    let secs = metrics.duration.max(1) as f64;
    let mut requests: Vec<_> = metrics.requests.iter().collect();
    requests.sort_by(|a, b| a.0.cmp(b.0));
    let requests: Vec<serde_json::Value> = requests
        .into_iter()
        .map(|(key, r)| {
            let ms = |p: f32| r.raw_data.percentile_us(p) as f64 / 1000.0;
            json!({
                "name": key,
                "count": r.success_count + r.fail_count,
                "fails": r.fail_count,
                "per_sec": (r.success_count + r.fail_count) as f64 / secs,
                "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
                "max_ms": r.raw_data.maximum_time_us as f64 / 1000.0,
            })
        })
        .collect();
    let fails: usize = metrics.requests.values().map(|r| r.fail_count).sum();
    let errors: Vec<serde_json::Value> = metrics
        .errors
        .values()
        .map(|e| json!({ "name": e.name, "error": e.error, "occurrences": e.occurrences }))
        .collect();
    json!({
        "users": metrics.maximum_users,
        "duration_secs": metrics.duration,
        "requests": requests,
        "failed_requests": fails,
        "errors": errors,
        "sent": tally::get(&tally::SENT),
        "acked": tally::get(&tally::ACKED) + resent.0,
        "acked_during_run": tally::get(&tally::ACKED),
        "acked_by_resend": resent.0,
        "unacked": resent.1,
        "dashboard_deltas": tally::get(&tally::DELTAS),
        "undelivered_ages_secs": undelivered,
        "dashboard_snapshots": tally::snapshots(),
        "dashboard_lagged": tally::get(&tally::LAGGED),
        "reconnects": tally::get(&tally::RECONNECTS),
        "signins": tally::get(&tally::SIGNINS),
        "generator_cpu_secs": own_cpu_secs(),
    })
}

/// This process's CPU time so far (user + system, from /proc/self/stat; Linux clock ticks are
/// 1/100 s), to tell a saturated generator from a saturated server.
fn own_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let fixture = Fixture::load(&args.fixture)?;
    let configuration = GooseConfiguration::parse_args_default(&args.goose)
        .map_err(|e| anyhow::anyhow!("goose options: {e}"))?;
    let host = configuration
        .host
        .clone()
        .context("--host URL (the server) is required")?;
    if args.scenario == Kind::TwoInstances && args.host2.is_none() {
        bail!("two-instances needs --host2 URL (the second server)");
    }
    CONFIG
        .set(Config {
            scenario: args.scenario,
            fixture,
            host: host.clone(),
            host2: args.host2,
            period: args.period,
        })
        .map_err(|_| anyhow::anyhow!("configured twice"))?;
    let goose = GooseAttack::initialize_with_config(configuration)?
        // One HTTP client for every user (bearer tokens, no cookies): 15,000 clients, each with
        // its own TLS set-up and pool, would cost the generator more than the server.
        .set_client_builder_without_cookies(
            goose::client::GooseClientBuilder::new()
                .without_cookies()
                .timeout(Duration::from_secs(60)),
        )?;
    let metrics = attack(args.scenario, args.period, goose)?
        .execute()
        .await
        .context("goose run")?;
    // Ages at the end of the run, before the resends (which may take a while).
    let undelivered = tally::undelivered_ages();
    let resent = tally::resend_unacked(&host, Duration::from_secs(120)).await;
    let out = summary(&metrics, resent, undelivered);
    eprintln!(
        "sent {} submissions, {} acknowledged ({} by a resend), {} unacknowledged; {} failed requests",
        out["sent"], out["acked"], out["acked_by_resend"], out["unacked"], out["failed_requests"]
    );
    if let Some(path) = args.results {
        std::fs::write(&path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
