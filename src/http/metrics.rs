//! `/metrics` in the Prometheus text format: the writer's group-commit counters, the actors
//! alive and the open WebSockets. Aggregates only, nothing personal. (The operations work will add request latencies,
//! sockets and pool figures beside these.)

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, get, web};

use crate::actors::writer::{BATCH_SIZE_BUCKETS, FLUSH_MS_BUCKETS};
use crate::sockets::SocketKind;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics);
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render(&state))
}

fn counter(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

pub fn render(state: &AppState) -> String {
    let writer = state.registry.writer();
    let m = writer.metrics();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    counter(
        &mut out,
        "nsi_writer_items_accepted_total",
        "Attempts and hint reveals handed to the writer's queue.",
        "counter",
        load(&m.items_accepted),
    );
    counter(
        &mut out,
        "nsi_writer_items_written_total",
        "Attempts and hint reveals committed by the writer.",
        "counter",
        load(&m.items_written),
    );
    counter(
        &mut out,
        "nsi_writer_rows_written_total",
        "Database rows inserted or updated by committed batches.",
        "counter",
        load(&m.rows_written),
    );
    counter(
        &mut out,
        "nsi_writer_commits_total",
        "Batches committed.",
        "counter",
        load(&m.commits),
    );
    counter(
        &mut out,
        "nsi_writer_failed_commits_total",
        "Batch commits that failed (each retry counts).",
        "counter",
        load(&m.failed_commits),
    );
    counter(
        &mut out,
        "nsi_writer_duplicates_total",
        "Resent attempts found already stored.",
        "counter",
        load(&m.duplicates),
    );
    counter(
        &mut out,
        "nsi_writer_rejected_queue_full_total",
        "Items refused because the write queue was full (answered 503).",
        "counter",
        load(&m.rejected_queue_full),
    );
    counter(
        &mut out,
        "nsi_writer_queue_depth",
        "Items waiting for the writer.",
        "gauge",
        writer.queue_depth(),
    );
    counter(
        &mut out,
        "nsi_writer_largest_batch",
        "Largest batch committed so far.",
        "gauge",
        load(&m.largest_batch),
    );

    let _ = writeln!(
        out,
        "# HELP nsi_writer_batch_size Items per committed batch.\n# TYPE nsi_writer_batch_size histogram"
    );
    let mut cumulative = 0;
    for (i, bound) in BATCH_SIZE_BUCKETS.iter().enumerate() {
        cumulative += load(&m.batch_size_buckets[i]);
        let _ = writeln!(
            out,
            "nsi_writer_batch_size_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += load(&m.batch_size_buckets[BATCH_SIZE_BUCKETS.len()]);
    let _ = writeln!(
        out,
        "nsi_writer_batch_size_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "nsi_writer_batch_size_sum {}", load(&m.items_written));
    let _ = writeln!(out, "nsi_writer_batch_size_count {}", load(&m.commits));

    let _ = writeln!(
        out,
        "# HELP nsi_writer_flush_seconds Time to write and commit one batch.\n# TYPE nsi_writer_flush_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, bound) in FLUSH_MS_BUCKETS.iter().enumerate() {
        cumulative += load(&m.flush_ms_buckets[i]);
        let _ = writeln!(
            out,
            "nsi_writer_flush_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1000.0
        );
    }
    cumulative += load(&m.flush_ms_buckets[FLUSH_MS_BUCKETS.len()]);
    let _ = writeln!(
        out,
        "nsi_writer_flush_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "nsi_writer_flush_seconds_sum {}",
        load(&m.flush_us_total) as f64 / 1e6
    );
    let _ = writeln!(out, "nsi_writer_flush_seconds_count {}", load(&m.commits));

    let (students, classrooms) = state.registry.counts();
    let _ = writeln!(
        out,
        "# HELP nsi_actors_alive Actors running on this instance.\n# TYPE nsi_actors_alive gauge"
    );
    let _ = writeln!(out, "nsi_actors_alive{{kind=\"student\"}} {students}");
    let _ = writeln!(out, "nsi_actors_alive{{kind=\"classroom\"}} {classrooms}");
    let (students, classrooms) = state.registry.reload_failures();
    let _ = writeln!(
        out,
        "# HELP nsi_actor_reload_failures_total Reloads of an actor's state from the database that failed (each retry counts).\n# TYPE nsi_actor_reload_failures_total counter"
    );
    let _ = writeln!(
        out,
        "nsi_actor_reload_failures_total{{kind=\"student\"}} {students}"
    );
    let _ = writeln!(
        out,
        "nsi_actor_reload_failures_total{{kind=\"classroom\"}} {classrooms}"
    );
    counter(
        &mut out,
        "nsi_classroom_reloads_queued_total",
        "Class reloads asked while one was running (each runs again after it).",
        "counter",
        state.registry.reloads_queued(),
    );
    let _ = writeln!(
        out,
        "# HELP nsi_websockets_open Open WebSockets on this instance.\n# TYPE nsi_websockets_open gauge"
    );
    let _ = writeln!(
        out,
        "nsi_websockets_open{{kind=\"student\"}} {}",
        state.ws.open_sockets(SocketKind::Student)
    );
    let _ = writeln!(
        out,
        "nsi_websockets_open{{kind=\"dashboard\"}} {}",
        state.ws.open_sockets(SocketKind::Dashboard)
    );
    out
}
